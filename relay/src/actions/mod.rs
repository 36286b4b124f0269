//! High-level actions — customers, table reads, function metadata — built on the
//! same calls as plain function calls: the same queue, wait, `Prefer`,
//! `Idempotency-Key` and 202-polling machinery.
//!
//! An action runs as a *chain* of units: most need one, some need a follow-up that
//! depends on the first answer (a table read that hit `DATA_BUFFER_EXCEEDED` is split
//! after the table's layout is known; a function interface is followed by the
//! fields of the structures it references). Every unit is an ordinary stored call
//! whose [`CallKind::Action`](crate::queue::CallKind) carries its [`Step`], stored
//! as versioned data (see `stored.rs`): what the step needs to turn the unit's
//! results into either the answer or the next unit.
//!
//! Each action is pure: a function from the request to its first [`ActionUnit`]
//! (or an [`ActionError`]), and for each step a function from its finished call to
//! what comes [`Next`]: the [`Answer`], a value the HTTP layer renders, or the next
//! unit. The [`Chain`] stores the units and walks from one to the next.
//!
//! # Layout
//! - `customers/`, `tables/`, `metadata/`: the actions, each with its steps (and
//!   `metadata/` with the cache of function interfaces).
//! - `chain.rs`: the driver; `outcome.rs`: reading a final call; `error.rs`:
//!   [`ActionError`]; `stored.rs`: how steps are stored.

mod chain;
pub(crate) mod customers;
mod error;
pub(crate) mod metadata;
mod outcome;
mod stored;
pub(crate) mod tables;

use std::sync::Arc;

use sapbridge_proto::{CommitPolicy, FunctionCall};
use serde_json::Value;

pub(crate) use chain::{Chain, ChainError, Progress};
pub(crate) use error::{ActionError, TableRefusal};
pub(crate) use stored::step_name;

use crate::queue::CallRecord;

/// A step of an action: what its stored call needs to read its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `POST /v1/systems/{system}/customers`.
    CustomerCreate(customers::CreateStep),
    /// `PATCH /v1/systems/{system}/customers/{customer}`.
    CustomerChange(customers::ChangeStep),
    /// `GET /v1/systems/{system}/customers/{customer}`.
    CustomerGet(customers::GetStep),
    /// `GET /v1/systems/{system}/customers?…`.
    CustomerSearch(customers::SearchStep),
    /// `GET …/tables/{table}` and `POST …/tables/{table}/query`.
    TableRead(tables::ReadStep),
    /// `GET /v1/systems/{system}/functions/{function}`.
    FunctionInterface(metadata::InterfaceStep),
    /// `GET /v1/systems/{system}/functions?search=`.
    FunctionSearch(metadata::SearchStep),
    /// `GET /v1/systems/{system}/tables/{table}/fields`.
    TableLayout(tables::layout::LayoutStep),
}

impl Step {
    /// The action's name in call bodies (`customer.create`, `table.read`, ...).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::CustomerCreate(_) => "customer.create",
            Self::CustomerChange(_) => "customer.change",
            Self::CustomerGet(_) => "customer.get",
            Self::CustomerSearch(_) => "customer.search",
            Self::TableRead(_) => "table.read",
            Self::FunctionInterface(_) => "function.interface",
            Self::FunctionSearch(_) => "function.search",
            Self::TableLayout(_) => "table.layout",
        }
    }

    /// What comes after this step, whose call `record` is final.
    ///
    /// # Errors
    /// Why the action has no answer.
    pub(crate) fn next(&self, record: &CallRecord) -> Result<Next, ActionError> {
        match self {
            Self::CustomerCreate(s) => customers::create_done(s, record),
            Self::CustomerChange(s) => customers::change_done(s, record),
            Self::CustomerGet(s) => customers::get_done(s, record),
            Self::CustomerSearch(s) => customers::search_done(s, record),
            Self::TableRead(s) => tables::read_done(s, record),
            Self::FunctionInterface(s) => metadata::interface_done(s, record),
            Self::FunctionSearch(s) => metadata::search_done(s, record),
            Self::TableLayout(s) => tables::layout::layout_done(s, record),
        }
    }
}

/// A unit of work of an action: its step, its calls and its commit policy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActionUnit {
    /// The step it is.
    pub(crate) step: Step,
    /// Its calls.
    pub(crate) calls: Vec<FunctionCall>,
    /// What happens after them.
    pub(crate) commit: CommitPolicy,
}

/// What a step makes of its final call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// The action's answer.
    Done(Answer),
    /// The action needs another unit.
    Then(ActionUnit),
}

/// An action's answer, as a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// The resource asked for.
    Found(Value),
    /// What the action created, and where it lives now (a relative URL).
    Created {
        /// Its path below the relay (`/v1/systems/{system}/customers/{n}`).
        location: String,
        /// The resource.
        body: Value,
    },
    /// A function's interface (the chain keeps it in the metadata cache).
    Interface(Arc<metadata::FunctionInterface>),
}

/// The longest repository name SAP has (function module, table, field).
pub(crate) const MAX_SAP_NAME: usize = 30;

/// A repository name as SAP spells it (function module, table, field): trimmed and
/// upper-cased, 1 to [`MAX_SAP_NAME`] characters of `A-Z 0-9 _ /`; `None` when it
/// is not one.
pub(crate) fn sap_name(raw: &str) -> Option<String> {
    let name = raw.trim().to_ascii_uppercase();
    let valid = !name.is_empty()
        && name.len() <= MAX_SAP_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/');
    valid.then_some(name)
}
