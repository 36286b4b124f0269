//! Webhook deliveries and subscriptions as the stores keep them.
//!
//! A call that asks for a callback (or whose API key has a subscription that
//! matches it) is stored with one [`Delivery`] per target URL, in the same write
//! as the call itself, so a relay killed right after answering `202` still
//! delivers. A delivery is `waiting` while its call runs, `pending` once its
//! answer is known (the payload is frozen into it) until a receiver took it
//! (`delivered`), or `failed` once its attempts ran out. Any relay sharing the
//! store may send it: [`Queue::claim_deliveries`](super::Queue) leases due
//! deliveries (`next_at` passed, no live lease) to one replica at a time.
//!
//! The store never reads URLs or payloads: the webhooks module decides what is
//! sent, when, and how it is signed.

use time::OffsetDateTime;

/// The most deliveries one listing returns: a page of 1,000 and one more, to know
/// whether another page follows.
pub(crate) const MAX_PAGE: usize = 1001;

/// A delivery stored with its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewDelivery {
    /// The delivery id (`msg_…`), the `webhook-id` every attempt sends.
    pub(crate) id: String,
    /// Where it goes.
    pub(crate) url: String,
    /// The subscription that asked for it, if it was not the call's own callback.
    pub(crate) subscription: Option<String>,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    /// Its call has no final answer yet.
    Waiting,
    /// Its payload is known; not yet taken by the receiver.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Its attempts ran out (or it can no longer be signed or sent).
    Failed,
}

impl DeliveryState {
    /// The state's name in API bodies and stores.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The state named `name`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "waiting" => Some(Self::Waiting),
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// Whether it is still to be sent.
    pub(crate) fn is_open(self) -> bool {
        matches!(self, Self::Waiting | Self::Pending)
    }
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Its number in the store (ascending in storing order): the listing's cursor.
    pub(crate) seq: i64,
    /// The delivery id (`webhook-id`).
    pub(crate) id: String,
    /// The call whose answer it carries.
    pub(crate) call_id: String,
    /// The API key that owns the call (its secret signs the delivery).
    pub(crate) owner: Option<String>,
    /// The call's system.
    pub(crate) system: String,
    /// Where it goes.
    pub(crate) url: String,
    /// The subscription that asked for it, if any.
    pub(crate) subscription: Option<String>,
    /// Where it is.
    pub(crate) state: DeliveryState,
    /// Attempts to send it so far.
    pub(crate) attempts: u32,
    /// When it was stored (with its call).
    pub(crate) created_at: OffsetDateTime,
    /// When it is next due (checked for its call's answer, or sent).
    pub(crate) next_at: OffsetDateTime,
    /// When the relay stops trying (set once the payload is known, and again by
    /// a redelivery).
    pub(crate) give_up_at: Option<OffsetDateTime>,
    /// The latest attempt.
    pub(crate) last_attempt_at: Option<OffsetDateTime>,
    /// The receiver's HTTP status at the latest attempt.
    pub(crate) last_status: Option<u16>,
    /// Why the latest attempt failed, in the relay's words (never the
    /// receiver's body).
    pub(crate) last_error: Option<String>,
    /// When the receiver took it.
    pub(crate) delivered_at: Option<OffsetDateTime>,
    /// The JSON payload, frozen once the call's answer is known.
    pub(crate) payload: Option<String>,
}

impl Delivery {
    /// A new waiting delivery of call `call_id` (owned by `owner`, on `system`),
    /// stored at `now`.
    pub(crate) fn new(
        new: NewDelivery,
        call_id: &str,
        owner: Option<&str>,
        system: &str,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            seq: 0,
            id: new.id,
            call_id: call_id.to_owned(),
            owner: owner.map(str::to_owned),
            system: system.to_owned(),
            url: new.url,
            subscription: new.subscription,
            state: DeliveryState::Waiting,
            attempts: 0,
            created_at: now,
            next_at: now,
            give_up_at: None,
            last_attempt_at: None,
            last_status: None,
            last_error: None,
            delivered_at: None,
            payload: None,
        }
    }
}

/// Which deliveries a listing holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeliveryFilter {
    /// Of calls owned by this API key (`None`: every key's, for operators).
    pub(crate) owner: Option<String>,
    /// Of this call.
    pub(crate) call_id: Option<String>,
    /// In this state.
    pub(crate) state: Option<DeliveryState>,
    /// Stored after the delivery of this number (the cursor).
    pub(crate) after: Option<i64>,
    /// The most deliveries (at most [`MAX_PAGE`]).
    pub(crate) limit: usize,
}

impl DeliveryFilter {
    /// Whether `delivery` passes (for stores that filter in memory).
    pub(crate) fn matches(&self, delivery: &Delivery) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|o| delivery.owner.as_ref() == Some(o))
            && self.call_id.as_ref().is_none_or(|c| *c == delivery.call_id)
            && self.state.is_none_or(|s| s == delivery.state)
            && self.after.is_none_or(|after| delivery.seq > after)
    }

    /// The page size a store uses: the filter's limit, between 1 and [`MAX_PAGE`].
    pub(crate) fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}

/// A standing request of an API key to be told of each of its calls that ends
/// (Power Automate's webhook trigger subscribes so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// Its id (`sub_…`).
    pub(crate) id: String,
    /// The API key it belongs to.
    pub(crate) owner: String,
    /// Where the deliveries go.
    pub(crate) url: String,
    /// Only calls of this system (`None`: every system the key calls).
    pub(crate) system: Option<String>,
    /// When it was made.
    pub(crate) created_at: OffsetDateTime,
}
