//! When a session flushes its socket. Both sides' session loops only queue what
//! they write (units, acks, outcomes, pass-through frames) and flush the queued
//! frames with one socket write when nothing else is ready, or after
//! [`TURNS_PER_FLUSH`] busy turns at most, so a steady stream of incoming frames
//! cannot hold them back. Under load the frames of many turns share one write: on
//! loopback each write also pays for the receiver's TCP work. An idle loop flushes
//! in the same turn it queued, so a lone frame is not delayed.

/// The most turns of a session loop whose frames wait for one flush.
pub const TURNS_PER_FLUSH: u32 = 16;

/// Frames queued on a session's socket but not flushed yet.
#[derive(Debug, Default)]
pub struct Outbox {
    dirty: bool,
    turns: u32,
}

impl Outbox {
    /// Something (`true`) or nothing was queued this turn.
    pub fn fed(&mut self, something: bool) {
        self.dirty |= something;
    }

    /// Whether queued frames wait for a flush.
    #[must_use]
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Starts a turn of the loop; `true` when the queued frames must be flushed
    /// before it ([`TURNS_PER_FLUSH`] turns went by with frames waiting).
    pub fn turn(&mut self) -> bool {
        if !self.dirty {
            return false;
        }
        self.turns += 1;
        self.turns > TURNS_PER_FLUSH
    }

    /// The queued frames were flushed.
    pub fn flushed(&mut self) {
        self.dirty = false;
        self.turns = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_flushes_after_a_bounded_number_of_turns() {
        let mut outbox = Outbox::default();
        assert!(!outbox.turn(), "nothing queued, nothing to flush");
        outbox.fed(false);
        assert!(!outbox.dirty());
        outbox.fed(true);
        let mut turns = 0;
        while !outbox.turn() {
            turns += 1;
            assert!(turns <= TURNS_PER_FLUSH, "never due");
        }
        assert_eq!(turns, TURNS_PER_FLUSH);
        outbox.flushed();
        assert!(!outbox.dirty());
        assert!(!outbox.turn());
    }
}
