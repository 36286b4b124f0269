//! Never lock the SAP user: SAP locks a user after a few failed logons in a row
//! (`login/fails_to_user_lock`, 5 by default), and the RFC user is usually shared
//! by several integrations. A [`LogonGuard`] stands between a backend and its
//! password: once SAP refused a password, the backend stops logging on with it —
//! calls fail at once with `LOGON_FAILURE` saying why, without contacting SAP —
//! until the password source changes (the file or variable is read again before
//! every logon) or an operator calls [`LogonGuard::reset`]. Logons are also made
//! one at a time, so concurrent calls cannot spend several attempts on one bad
//! password before the first answer arrives.
//!
//! Concurrency: the state is a `std::sync::Mutex` never held across an `.await`;
//! the logon turn is a `tokio::sync::Mutex` held for one logon round trip.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use sapbridge_proto::Secret;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{ErrorGroup, RfcError};

/// Where a backend's password comes from. Read again before every logon.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    /// A file holding the password (a trailing newline is ignored).
    File(PathBuf),
    /// An environment variable holding the password.
    Env(String),
    /// A fixed value (tests, and callers that read the password themselves).
    Value(Secret),
}

impl PasswordSource {
    /// Reads the password. The error names the source, never the value.
    ///
    /// # Errors
    /// A message when the file or variable cannot be read or is empty.
    pub fn read(&self) -> Result<Secret, String> {
        let value = match self {
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("password file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            Self::Env(var) => std::env::var(var)
                .map_err(|_| format!("environment variable {var} with the password is not set"))?,
            Self::Value(secret) => secret.expose().to_owned(),
        };
        if value.is_empty() {
            return Err("the SAP password is empty".into());
        }
        Ok(Secret::new(value))
    }

    /// The source in words, for messages (`password file /etc/x`).
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("the password file {}", path.display()),
            Self::Env(var) => format!("the environment variable {var}"),
            Self::Value(_) => "the configured password".into(),
        }
    }
}

/// Whether the guard lets logons through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogonState {
    /// Logons go through.
    Open,
    /// SAP refused the password; no logon is attempted with it.
    Blocked {
        /// SAP's answer to the refused logon.
        reason: String,
        /// When it was refused (RFC 3339).
        since: String,
    },
}

#[derive(Debug)]
struct Refused {
    password: Secret,
    reason: String,
    since: OffsetDateTime,
}

/// The guard of one system's logons (see the module docs).
#[derive(Debug)]
pub struct LogonGuard {
    source: PasswordSource,
    refused: Mutex<Option<Refused>>,
    turn: tokio::sync::Mutex<()>,
}

/// A permission to attempt one logon with [`Attempt::password`]; report its end
/// with [`LogonGuard::succeeded`] or [`LogonGuard::failed`].
#[derive(Debug)]
pub struct Attempt<'a> {
    /// The password to log on with.
    pub password: Secret,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl LogonGuard {
    /// A guard reading its password from `source`.
    pub fn new(source: PasswordSource) -> Self {
        Self {
            source,
            refused: Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Waits for this system's logon turn, reads the password and answers whether
    /// a logon may be attempted with it.
    ///
    /// # Errors
    /// `LOGON_FAILURE` without contacting SAP: the password cannot be read, or SAP
    /// refused this same password before (the message says when and why).
    pub async fn attempt(&self) -> Result<Attempt<'_>, RfcError> {
        let turn = self.turn.lock().await;
        let password = self
            .source
            .read()
            .map_err(|why| RfcError::new(ErrorGroup::LogonFailure, "PASSWORD_UNAVAILABLE", why))?;
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(before) = refused.as_ref() {
            if before.password == password {
                return Err(RfcError::new(
                    ErrorGroup::LogonFailure,
                    "LOGON_BLOCKED",
                    format!(
                        "not logging on to SAP: it refused this password at {} ({}); sapbridge \
                         stops logging on with it so that SAP does not lock the user. Correct \
                         {} (it is read again before the next logon) or reset the block",
                        before.since.format(&Rfc3339).unwrap_or_default(),
                        before.reason,
                        self.source.describe()
                    ),
                ));
            }
            tracing::info!("the SAP password changed since SAP refused it; logging on again");
            *refused = None;
        }
        drop(refused);
        Ok(Attempt {
            password,
            _turn: turn,
        })
    }

    /// The logon with `attempt`'s password succeeded.
    pub fn succeeded(&self, attempt: Attempt<'_>) {
        drop(attempt);
    }

    /// The logon failed with `error`; a `LOGON_FAILURE` blocks the password.
    pub fn failed(&self, attempt: Attempt<'_>, error: &RfcError) {
        if error.group == ErrorGroup::LogonFailure {
            tracing::warn!(error = %error, "SAP refused the logon; no further logon with this password");
            *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(Refused {
                password: attempt.password.clone(),
                reason: error.message.clone(),
                since: OffsetDateTime::now_utc(),
            });
        }
        drop(attempt);
    }

    /// Lifts a block (an operator fixed the user in SAP).
    pub fn reset(&self) {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether logons go through.
    pub fn state(&self) -> LogonState {
        match &*self.refused.lock().unwrap_or_else(PoisonError::into_inner) {
            None => LogonState::Open,
            Some(refused) => LogonState::Blocked {
                reason: refused.reason.clone(),
                since: refused.since.format(&Rfc3339).unwrap_or_default(),
            },
        }
    }
}
