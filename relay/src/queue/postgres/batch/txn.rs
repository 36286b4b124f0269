//! A batch's transaction on its pooled connection: why it failed ([`Failed`]),
//! and the guard that keeps a connection left mid-transaction out of the pool
//! ([`Open`]).

use super::super::super::QueueError;
use super::Conn;

/// Why a batch did not commit.
pub(super) struct Failed {
    pub(super) error: QueueError,
    /// Whether running its changes one by one may help: a statement failed on a
    /// connection that is still up. Not when the database is unreachable (each
    /// change would wait for it in turn), nor when the commit itself failed (the
    /// batch may have committed).
    pub(super) split: bool,
}

impl Failed {
    pub(super) fn statement(error: QueueError) -> Self {
        Self { error, split: true }
    }

    pub(super) fn commit(error: QueueError) -> Self {
        Self {
            error,
            split: false,
        }
    }
}

/// A statement's result, its failure as a [`Failed::statement`].
pub(super) fn stage<T>(result: Result<T, QueueError>) -> Result<T, Failed> {
    result.map_err(Failed::statement)
}

/// A pooled connection inside the transaction its batch opened. Unless the
/// batch ends through [`Open::committed`] or [`Open::roll_back`] (a panic, a
/// dropped future), the connection leaves the pool when this is dropped: closing
/// it rolls the transaction back, and no later user gets it mid-transaction.
pub(super) struct Open(pub(super) Option<Conn>);

impl Open {
    pub(super) fn conn(&self) -> Option<&Conn> {
        self.0.as_ref()
    }

    /// The transaction committed: the connection is free for other statements
    /// (and goes back to the pool when dropped).
    pub(super) fn committed(mut self) -> Option<Conn> {
        self.0.take()
    }

    /// Ends the transaction (a no-op, with a warning from the server, when the
    /// pipelined `COMMIT` ended it already); a connection that cannot leaves the
    /// pool.
    pub(super) async fn roll_back(mut self) {
        if let Some(conn) = self.0.take()
            && conn.batch_execute("ROLLBACK").await.is_err()
        {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}
