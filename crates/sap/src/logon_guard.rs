//! Never lock the SAP user: SAP locks a user after a few failed logons in a row
//! (`login/fails_to_user_lock`, 5 by default), and the RFC user is usually shared
//! by several integrations. A [`LogonGuard`] stands between a backend and its
//! password: once SAP refused a password, the backend stops logging on with it —
//! calls fail at once with `LOGON_FAILURE` saying why, without contacting SAP —
//! until the password source changes (the file or variable is read again before
//! every logon) or an operator calls [`LogonGuard::reset`]. A password SAP has not
//! accepted yet is tried by one logon at a time, so concurrent calls cannot spend
//! several attempts on it before the first answer arrives; once SAP accepted it,
//! logons run in parallel (should SAP's password change under a running agent, the
//! logons already under way when the first is refused may fail too).
//!
//! Concurrency: the state is a `std::sync::Mutex` never held across an `.await`;
//! the logon turn is a `tokio::sync::Mutex` held for one logon round trip.

// `RfcError` is what every backend call fails with; boxing it here would buy nothing.
#![allow(clippy::result_large_err)]

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
    state: Mutex<GuardState>,
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct GuardState {
    /// The password SAP refused, and why.
    refused: Option<Refused>,
    /// The password SAP last accepted.
    accepted: Option<Secret>,
}

/// A permission to attempt one logon with [`Attempt::password`]; report its end
/// with [`LogonGuard::succeeded`] or [`LogonGuard::failed`].
#[derive(Debug)]
pub struct Attempt<'a> {
    /// The password to log on with.
    pub password: Secret,
    _turn: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl LogonGuard {
    /// A guard reading its password from `source`.
    pub fn new(source: PasswordSource) -> Self {
        Self {
            source,
            state: Mutex::default(),
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
        let password = self
            .source
            .read()
            .map_err(|why| RfcError::new(ErrorGroup::LogonFailure, "PASSWORD_UNAVAILABLE", why))?;
        if self.check(&password)? {
            return Ok(Attempt {
                password,
                _turn: None,
            });
        }
        let turn = self.turn.lock().await;
        // Another logon may have been refused (or accepted) while we waited.
        let accepted = self.check(&password)?;
        Ok(Attempt {
            password,
            _turn: (!accepted).then_some(turn),
        })
    }

    /// Whether SAP accepted `password` before; an error when it refused it.
    fn check(&self, password: &Secret) -> Result<bool, RfcError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(before) = state.refused.as_ref() {
            if &before.password == password {
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
            state.refused = None;
        }
        Ok(state.accepted.as_ref() == Some(password))
    }

    /// The logon with `attempt`'s password succeeded.
    pub fn succeeded(&self, attempt: Attempt<'_>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.accepted = Some(attempt.password.clone());
        drop(state);
        drop(attempt);
    }

    /// The logon failed with `error`; a `LOGON_FAILURE` blocks the password.
    pub fn failed(&self, attempt: Attempt<'_>, error: &RfcError) {
        if error.group == ErrorGroup::LogonFailure {
            tracing::warn!(error = %error, "SAP refused the logon; no further logon with this password");
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.accepted = None;
            state.refused = Some(Refused {
                password: attempt.password.clone(),
                reason: error.message.clone(),
                since: OffsetDateTime::now_utc(),
            });
        }
        drop(attempt);
    }

    /// Lifts a block (an operator fixed the user in SAP).
    pub fn reset(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused = None;
    }

    /// Whether logons go through.
    pub fn state(&self) -> LogonState {
        match &self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused
        {
            None => LogonState::Open,
            Some(refused) => LogonState::Blocked {
                reason: refused.reason.clone(),
                since: refused.since.format(&Rfc3339).unwrap_or_default(),
            },
        }
    }
}
