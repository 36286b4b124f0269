//! [`UnavailableSystem`]: a configured system whose backend could not be set up
//! (the NW RFC library is not installed, for instance). The agent still starts
//! and serves its other systems; every call to this one fails at once with the
//! reason, without contacting SAP.

use async_trait::async_trait;

use crate::{ErrorGroup, RfcError, SapConnection, SapSystem};

/// A system that answers every connection attempt with why it is unavailable.
#[derive(Debug, Clone)]
pub struct UnavailableSystem {
    key: String,
    reason: String,
}

impl UnavailableSystem {
    /// A system unavailable for `reason`, reported under error `key`
    /// (`NWRFC_UNAVAILABLE`).
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Why the system is unavailable.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[async_trait]
impl SapSystem for UnavailableSystem {
    async fn connect(&self) -> Result<Box<dyn SapConnection>, RfcError> {
        Err(RfcError::new(
            ErrorGroup::CommunicationFailure,
            self.key.clone(),
            self.reason.clone(),
        ))
    }
}
