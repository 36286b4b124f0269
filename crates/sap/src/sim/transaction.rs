//! `BAPI_TRANSACTION_COMMIT` and `BAPI_TRANSACTION_ROLLBACK`: end the session's
//! logical unit of work.

use super::errors::storage_failure;
use super::session::Ctx;
use super::values::Input;
use crate::{Parameters, RfcError};

/// `BAPI_TRANSACTION_COMMIT`: writes the session's pending changes in one SQLite
/// transaction. The write is synchronous, so `WAIT = 'X'` and `WAIT = ' '` behave
/// alike (with `WAIT` blank a real system commits asynchronously; the changes are
/// then visible a moment later). `RETURN` (BAPIRET2) stays empty on success.
///
/// # Errors
/// `ABAP_RUNTIME_FAILURE` when the state file cannot be written; the pending
/// changes are kept.
pub(crate) fn commit(ctx: &mut Ctx<'_>, _: &Input) -> Result<Parameters, RfcError> {
    if !ctx.luw.is_empty() {
        ctx.store.commit(ctx.luw, None).map_err(storage_failure)?;
        ctx.luw.clear();
    }
    Ok(Parameters::new())
}

/// `BAPI_TRANSACTION_ROLLBACK`: discards the session's pending changes (numbers
/// already drawn stay used). `RETURN` (BAPIRET2) stays empty.
///
/// # Errors
/// None.
pub(crate) fn rollback(ctx: &mut Ctx<'_>, _: &Input) -> Result<Parameters, RfcError> {
    ctx.luw.clear();
    Ok(Parameters::new())
}
