//! Webhook subscriptions as new calls meet them: every relay keeps the
//! subscriptions of all keys in memory, read from the store again when they are
//! older than [`FRESH_FOR`] (so a subscription made on another replica counts
//! within seconds) and at once after a change made here.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ids::new_id;
use crate::queue::{NewCall, NewDelivery, Queue, QueueError, Subscription};

/// How long the subscriptions read from the store are used.
const FRESH_FOR: Duration = Duration::from_secs(2);

/// The subscriptions of the moment.
#[derive(Debug, Default)]
pub(crate) struct Subscribed {
    read: Mutex<Option<(Instant, Arc<Vec<Subscription>>)>>,
}

impl Subscribed {
    /// Forgets what was read: the next call reads the store.
    pub(crate) fn changed(&self) {
        *self.read.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    async fn all(&self, queue: &dyn Queue) -> Result<Arc<Vec<Subscription>>, QueueError> {
        if let Some((at, subs)) = &*self.read.lock().unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < FRESH_FOR
        {
            return Ok(Arc::clone(subs));
        }
        let subs = Arc::new(queue.subscriptions(None).await?);
        *self.read.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), Arc::clone(&subs)));
        Ok(subs)
    }

    /// Adds a delivery to `call` for each subscription of its owner that covers
    /// its system.
    pub(crate) async fn add_to(
        &self,
        queue: &dyn Queue,
        call: &mut NewCall,
    ) -> Result<(), QueueError> {
        let Some(owner) = call.owner.as_deref() else {
            return Ok(());
        };
        let subs = self.all(queue).await?;
        for sub in subs
            .iter()
            .filter(|s| s.owner == owner && s.system.as_ref().is_none_or(|sys| *sys == call.system))
        {
            call.webhooks.push(NewDelivery {
                id: new_id("msg_"),
                url: sub.url.clone(),
                subscription: Some(sub.id.clone()),
            });
        }
        Ok(())
    }
}
