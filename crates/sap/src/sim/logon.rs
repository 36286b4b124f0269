//! Logons to the simulated system and SAP's user lock: after
//! [`FAILS_TO_USER_LOCK`] failed logons in a row (profile parameter
//! `login/fails_to_user_lock`, 5 by default) the user is locked, and stays locked
//! — even for the right password — until an administrator resets it. A successful
//! logon resets the count. Tests use it to prove that no sequence of calls through
//! a backend locks the user.
//!
//! Concurrency: one `std::sync::Mutex` around the counters, never held across an
//! `.await`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::{ErrorGroup, RfcError};

/// The user of the simulated system, for backends that log on (NW RFC stub).
pub const SIM_USER: &str = "SIMUSER";
/// Its password.
pub const SIM_PASSWORD: &str = "sim-secret";
/// Failed logons in a row that lock a user (`login/fails_to_user_lock`).
pub const FAILS_TO_USER_LOCK: u32 = 5;

/// Why a logon was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogonRefused {
    /// Wrong user or password; `failures` in a row so far.
    WrongPassword {
        /// Failed logons in a row, this one included.
        failures: u32,
    },
    /// The user is locked.
    Locked,
}

impl LogonRefused {
    /// The error SAP answers, in PyRFC's terms (`LOGON_FAILURE`, SAP's texts).
    pub fn to_rfc_error(self) -> RfcError {
        match self {
            Self::WrongPassword { .. } => RfcError::new(
                ErrorGroup::LogonFailure,
                "RFC_LOGON_FAILURE",
                "Name or password is incorrect (repeat logon)",
            ),
            Self::Locked => RfcError::new(
                ErrorGroup::LogonFailure,
                "RFC_LOGON_FAILURE",
                "User is locked. Please notify the person responsible",
            ),
        }
    }
}

/// Failed-logon counters and locks, per user (upper case, as SAP compares them).
#[derive(Debug, Default)]
pub struct UserLocks {
    failures: Mutex<HashMap<String, u32>>,
}

impl UserLocks {
    /// Records a logon attempt of `user` whose password was right or wrong.
    ///
    /// # Errors
    /// [`LogonRefused`] for a wrong password or a locked user.
    pub fn logon(&self, user: &str, password_ok: bool) -> Result<(), LogonRefused> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(user.to_ascii_uppercase()).or_insert(0);
        if *count >= FAILS_TO_USER_LOCK {
            return Err(LogonRefused::Locked);
        }
        if password_ok {
            *count = 0;
            return Ok(());
        }
        *count += 1;
        Err(LogonRefused::WrongPassword { failures: *count })
    }

    /// Failed logons of `user` in a row.
    pub fn failures(&self, user: &str) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures
            .get(&user.to_ascii_uppercase())
            .copied()
            .unwrap_or(0)
    }

    /// Whether `user` is locked.
    pub fn is_locked(&self, user: &str) -> bool {
        self.failures(user) >= FAILS_TO_USER_LOCK
    }

    /// Unlocks `user` and clears its count (transaction SU01's "unlock").
    pub fn reset(&self, user: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(&user.to_ascii_uppercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_user_until_reset() {
        let locks = UserLocks::default();
        assert_eq!(
            locks.logon("u", false),
            Err(LogonRefused::WrongPassword { failures: 1 })
        );
        assert_eq!(locks.logon("U", true), Ok(()));
        for n in 1..=FAILS_TO_USER_LOCK {
            assert_eq!(
                locks.logon("u", false),
                Err(LogonRefused::WrongPassword { failures: n })
            );
        }
        assert!(locks.is_locked("U"));
        assert_eq!(locks.logon("u", true), Err(LogonRefused::Locked));
        locks.reset("u");
        assert_eq!(locks.logon("u", true), Ok(()));
    }
}
