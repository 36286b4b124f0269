//! The simulator's persistent state in one SQLite file: the customer master
//! (`kna1`), the number ranges (`nriv`) and the committed TIDs (`tids`).
//!
//! Several simulators — in one process or in several — may open the same file:
//! the file runs in WAL mode with a busy timeout, and every write is one short
//! `BEGIN IMMEDIATE` transaction (number range draws, LUW commits), so writers
//! queue instead of failing. A commit writes the LUW's rows and, when given, the
//! unit's TID in the *same* transaction: either both are durable or neither is.
//!
//! Every method blocks on SQLite; callers run them on the blocking pool
//! (`tokio::task::spawn_blocking`), never directly on the async runtime.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::luw::Luw;
use super::record::{EXT_FIELDS, Record};
use super::seed;
use super::tables::KNA1;

/// Number range object of customer numbers (SAP: `DEBITOR`).
const NR_CUSTOMER: &str = "DEBITOR";
/// Number range object of address numbers (SAP: `ADRNR`).
const NR_ADDRESS: &str = "ADRNR";

/// How long a writer waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a commit with a TID found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TidCommit {
    /// The LUW's changes and the TID were stored together.
    Committed,
    /// The TID had been committed before: nothing was written again and the
    /// session's pending changes were dropped.
    AlreadyCommitted,
}

/// The SQLite state file.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating, migrating and seeding when new) the state file.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let mut store = Self {
            conn: Mutex::new(conn),
        };
        store.init()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn init(&mut self) -> rusqlite::Result<()> {
        let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cols: Vec<String> = columns()
            .map(|c| format!("{c} TEXT NOT NULL DEFAULT ''"))
            .collect();
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS kna1 ({}, PRIMARY KEY (KUNNR));
             CREATE TABLE IF NOT EXISTS nriv (object TEXT PRIMARY KEY, nrlevel INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS tids (tid TEXT PRIMARY KEY, committed_at TEXT NOT NULL);",
            cols.join(", ")
        ))?;
        let seeded: Option<i64> = tx
            .query_row(
                "SELECT nrlevel FROM nriv WHERE object = ?1",
                [NR_CUSTOMER],
                |r| r.get(0),
            )
            .optional()?;
        if seeded.is_none() {
            tx.execute(
                "INSERT INTO nriv (object, nrlevel) VALUES (?1, 100000)",
                [NR_CUSTOMER],
            )?;
            tx.execute(
                "INSERT INTO nriv (object, nrlevel) VALUES (?1, 22100)",
                [NR_ADDRESS],
            )?;
            for rec in seed::demo_customers() {
                insert(&tx, &rec)?;
            }
        }
        tx.commit()
    }

    /// The committed customer `kunnr`.
    pub(crate) fn customer(&self, kunnr: &str) -> rusqlite::Result<Option<Record>> {
        let conn = self.lock();
        let sql = format!("SELECT {} FROM kna1 WHERE KUNNR = ?1", column_list());
        conn.query_row(&sql, [kunnr], row_to_record).optional()
    }

    /// Every committed customer, ordered by KUNNR.
    pub(crate) fn customers(&self) -> rusqlite::Result<Vec<Record>> {
        let conn = self.lock();
        let sql = format!("SELECT {} FROM kna1 ORDER BY KUNNR", column_list());
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], row_to_record)?;
        rows.collect()
    }

    /// Draws the next customer number and address number from the number ranges,
    /// committed at once (a number whose LUW is rolled back is lost, as in SAP).
    pub(crate) fn next_numbers(&self) -> rusqlite::Result<(String, String)> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let draw = |object: &str| -> rusqlite::Result<i64> {
            tx.query_row(
                "UPDATE nriv SET nrlevel = nrlevel + 1 WHERE object = ?1 RETURNING nrlevel",
                [object],
                |r| r.get(0),
            )
        };
        let kunnr = draw(NR_CUSTOMER)?;
        let adrnr = draw(NR_ADDRESS)?;
        tx.commit()?;
        Ok((format!("{kunnr:010}"), format!("{adrnr:010}")))
    }

    /// Writes the LUW's changes — and `tid`, when given — in one transaction.
    /// With a TID that was committed before, writes nothing.
    pub(crate) fn commit(&self, luw: &Luw, tid: Option<&str>) -> rusqlite::Result<TidCommit> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(tid) = tid {
            let seen: Option<String> = tx
                .query_row("SELECT tid FROM tids WHERE tid = ?1", [tid], |r| r.get(0))
                .optional()?;
            if seen.is_some() {
                return Ok(TidCommit::AlreadyCommitted);
            }
        }
        for rec in luw.created.values() {
            insert(&tx, rec)?;
        }
        for (kunnr, delta) in &luw.changed {
            let sets: Vec<String> = delta
                .keys()
                .enumerate()
                .map(|(i, k)| format!("{k} = ?{}", i + 2))
                .collect();
            if sets.is_empty() {
                continue;
            }
            let sql = format!("UPDATE kna1 SET {} WHERE KUNNR = ?1", sets.join(", "));
            let values = std::iter::once(kunnr).chain(delta.values());
            tx.execute(&sql, params_from_iter(values))?;
        }
        if let Some(tid) = tid {
            tx.execute(
                "INSERT INTO tids (tid, committed_at) VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                params![tid],
            )?;
        }
        tx.commit()?;
        Ok(TidCommit::Committed)
    }

    /// Whether a unit with this TID was committed.
    pub(crate) fn tid_committed(&self, tid: &str) -> rusqlite::Result<bool> {
        let conn = self.lock();
        let seen: Option<String> = conn
            .query_row("SELECT tid FROM tids WHERE tid = ?1", [tid], |r| r.get(0))
            .optional()?;
        Ok(seen.is_some())
    }

    /// Forgets a committed TID (tRFC's confirm step): a later unit with it
    /// would be committed again. Returns whether it was recorded.
    pub(crate) fn forget_tid(&self, tid: &str) -> rusqlite::Result<bool> {
        let conn = self.lock();
        Ok(conn.execute("DELETE FROM tids WHERE tid = ?1", [tid])? > 0)
    }

    /// How many customers are stored (tests count duplicates with it).
    pub(crate) fn customer_count(&self) -> rusqlite::Result<u64> {
        let conn = self.lock();
        conn.query_row("SELECT COUNT(*) FROM kna1", [], |r| r.get(0))
    }
}

/// The stored columns: the `KNA1` fields, then the extra ones.
pub(crate) fn columns() -> impl Iterator<Item = &'static str> {
    KNA1.fields.iter().chain(EXT_FIELDS).map(|f| f.name)
}

fn column_list() -> String {
    columns().collect::<Vec<_>>().join(", ")
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let mut rec = Record::new();
    for (i, col) in columns().enumerate() {
        rec.insert(col.to_owned(), row.get::<_, String>(i)?);
    }
    Ok(rec)
}

fn insert(conn: &Connection, rec: &Record) -> rusqlite::Result<()> {
    let cols: Vec<&str> = columns().collect();
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT OR REPLACE INTO kna1 ({}) VALUES ({})",
        cols.join(", "),
        marks.join(", ")
    );
    let values = cols.iter().map(|c| rec.get(*c).map_or("", String::as_str));
    conn.execute(&sql, params_from_iter(values))?;
    Ok(())
}
