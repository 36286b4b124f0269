//! The agent's count of the credits it granted on one session, so that work beyond
//! them is refused as the protocol violation it is instead of being queued.
//!
//! # The accounting
//!
//! The relay may have sent, at any moment,
//!
//! ```text
//! granted = hello credits
//!         + credits of every `Credits` message the agent sent on this session
//!         − units delivered on this session
//!         + outcomes sent on this session for units delivered on this session
//! ```
//!
//! and never more: a `Work` that arrives when `granted` is 0 is a violation. An
//! outcome counts once per delivered unit (the relay keeps one entry per call id in
//! flight); an outcome re-sent for a unit of an earlier session returns nothing
//! (the relay did not send that unit on this session; the agent hands the slot back
//! with a `Credits` message instead).
//!
//! A `Work` for a call id already outstanding on this session (delivered, its
//! outcome not yet sent) is a violation too: a relay of protocol 2 never sends a
//! unit to the session that holds it. Once the outcome was sent the relay may send
//! the call again (it re-queues a unit that did not start before its deadline).
//!
//! After the agent sent `Drain`, outcomes return nothing (the relay drops its
//! credits when it reads the drain) and the agent sends no `Credits`; units the
//! relay sent before it read the drain still fit in `granted` (they are refused as
//! "not taken"), a flood does not.
//!
//! # Why an honest relay never trips it
//!
//! The relay takes a credit for every unit it sends and returns one only once it
//! has read and stored an outcome of a unit in flight on the session (and not
//! while draining): everything it counts, the agent counted first, when it queued
//! the message. So the relay's credits are never more than `granted`, however
//! outcomes, `Credits` and new work cross on the wire.
//!
//! Memory: `outstanding` holds at most `granted` call ids of at most
//! `checks::MAX_ID_BYTES` each; a refused unit allocates nothing here.

use std::collections::HashSet;

/// The credit ledger of one session; see the module docs.
#[derive(Debug)]
pub(crate) struct Credits {
    /// Units the relay may still send (`granted` in the module docs).
    available: u64,
    /// Call ids delivered on this session whose outcome has not been sent on it.
    outstanding: HashSet<String>,
    /// Whether the agent sent `Drain`.
    draining: bool,
}

impl Credits {
    /// The ledger after a hello that granted `hello` credits.
    pub(crate) fn new(hello: u32) -> Self {
        Self {
            available: u64::from(hello),
            outstanding: HashSet::new(),
            draining: false,
        }
    }

    /// The agent sent a `Credits` message granting `credits` more.
    pub(crate) fn granted(&mut self, credits: u32) {
        self.available = self.available.saturating_add(u64::from(credits));
    }

    /// The agent sent `Drain`: outcomes return nothing from now on.
    pub(crate) fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether the agent sent `Drain` (it then sends no `Credits`).
    pub(crate) fn draining(&self) -> bool {
        self.draining
    }

    /// A `Work` for `call_id` arrived: takes a credit for it.
    ///
    /// # Errors
    /// What the relay did wrong, for a `ProtocolError`: no credit left, or the call
    /// id is already outstanding on this session. Nothing is recorded then.
    pub(crate) fn deliver(&mut self, call_id: &str) -> Result<(), String> {
        if self.outstanding.contains(call_id) {
            return Err(format!(
                "unit {call_id} delivered again while outstanding on this session"
            ));
        }
        if self.available == 0 {
            return Err(format!(
                "unit {call_id} delivered beyond the granted credits ({} outstanding)",
                self.outstanding.len()
            ));
        }
        self.available -= 1;
        self.outstanding.insert(call_id.to_owned());
        Ok(())
    }

    /// The agent sent an outcome for `call_id`: returns its credit when the unit was
    /// delivered on this session (the first outcome only) and the agent is not
    /// draining.
    pub(crate) fn outcome_sent(&mut self, call_id: &str) {
        if self.outstanding.remove(call_id) && !self.draining {
            self.available = self.available.saturating_add(1);
        }
    }

    /// Units the relay may still send.
    #[cfg(test)]
    pub(crate) fn available(&self) -> u64 {
        self.available
    }

    /// How many delivered units await their outcome.
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_beyond_the_hello_credits_is_refused() {
        let mut credits = Credits::new(2);
        assert!(credits.deliver("c_1").is_ok());
        assert!(credits.deliver("c_2").is_ok());
        let refused = credits.deliver("c_3").unwrap_err();
        assert!(refused.contains("beyond the granted credits"), "{refused}");
        assert_eq!((credits.available(), credits.outstanding()), (0, 2));
    }

    #[test]
    fn outcomes_and_credits_messages_grant_more() {
        let mut credits = Credits::new(1);
        credits.deliver("c_1").unwrap();
        assert!(credits.deliver("c_2").is_err());
        credits.outcome_sent("c_1");
        credits.deliver("c_2").unwrap();
        credits.granted(1);
        credits.deliver("c_3").unwrap();
        assert!(credits.deliver("c_4").is_err());
    }

    #[test]
    fn an_outcome_returns_one_credit_for_a_unit_of_this_session_only() {
        let mut credits = Credits::new(1);
        credits.deliver("c_1").unwrap();
        credits.outcome_sent("c_1");
        credits.outcome_sent("c_1"); // sent again: nothing more
        credits.outcome_sent("c_old"); // a unit of an earlier session: nothing
        assert_eq!(credits.available(), 1);
    }

    #[test]
    fn a_call_id_outstanding_on_the_session_cannot_come_again() {
        let mut credits = Credits::new(5);
        credits.deliver("c_1").unwrap();
        let refused = credits.deliver("c_1").unwrap_err();
        assert!(refused.contains("again"), "{refused}");
        // Once its outcome went out the relay may send the call again (re-queued).
        credits.outcome_sent("c_1");
        credits.deliver("c_1").unwrap();
    }

    #[test]
    fn after_the_drain_units_in_flight_fit_but_outcomes_return_nothing() {
        let mut credits = Credits::new(3);
        credits.deliver("c_1").unwrap();
        credits.drain();
        // Sent by the relay before it read the drain: within the credits.
        credits.deliver("c_2").unwrap();
        credits.outcome_sent("c_1");
        credits.deliver("c_3").unwrap();
        assert!(credits.deliver("c_4").is_err(), "a flood after the drain");
    }
}
