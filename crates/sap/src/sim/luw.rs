//! The logical unit of work (LUW) of one session: the customer changes its BAPIs
//! made that are not committed yet.
//!
//! SAP BAPIs register their database changes for the update task; nothing reaches
//! the database before `BAPI_TRANSACTION_COMMIT` in the same session, and
//! `BAPI_TRANSACTION_ROLLBACK` (or closing the connection) throws them away. The
//! simulator keeps those pending changes here, in memory, per session:
//! - a created customer is kept whole (its number is already drawn from the number
//!   range, so a rolled-back number is lost, as in SAP);
//! - a changed customer is kept as a *delta* (the columns that changed), applied to
//!   the then-current row at commit, so two sessions changing different fields of
//!   the same customer do not undo each other.
//!
//! BAPI reads in the same session (`GETDETAIL2`, `GETLIST`, a change after a
//! create) see the session's own pending changes, as the BAPIs' buffers make them
//! visible on a real system; `RFC_READ_TABLE` (a plain database SELECT) does not.

use std::collections::BTreeMap;

use super::record::Record;

/// The pending changes of one session.
#[derive(Debug, Default)]
pub(crate) struct Luw {
    /// Customers created in this LUW, by KUNNR.
    pub(crate) created: BTreeMap<String, Record>,
    /// Column deltas for existing customers changed in this LUW, by KUNNR.
    pub(crate) changed: BTreeMap<String, Record>,
}

impl Luw {
    /// Whether there is nothing to commit.
    pub(crate) fn is_empty(&self) -> bool {
        self.created.is_empty() && self.changed.is_empty()
    }

    /// Forgets every pending change (rollback, commit done, connection lost).
    pub(crate) fn clear(&mut self) {
        self.created.clear();
        self.changed.clear();
    }

    /// The customer `kunnr` as this session sees it: the committed row `base`
    /// with this LUW's changes on top, or the record created in this LUW.
    pub(crate) fn overlay(&self, kunnr: &str, base: Option<Record>) -> Option<Record> {
        if let Some(created) = self.created.get(kunnr) {
            return Some(created.clone());
        }
        let mut rec = base?;
        if let Some(delta) = self.changed.get(kunnr) {
            rec.extend(delta.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Some(rec)
    }

    /// Records a new customer.
    pub(crate) fn create(&mut self, rec: Record) {
        let kunnr = rec.get("KUNNR").cloned().unwrap_or_default();
        self.created.insert(kunnr, rec);
    }

    /// Records the new state `after` of customer `kunnr` whose state before the
    /// change (as this session saw it) was `before`: only differing columns are kept.
    pub(crate) fn change(&mut self, kunnr: &str, before: &Record, after: Record) {
        if let Some(created) = self.created.get_mut(kunnr) {
            *created = after;
            return;
        }
        let delta = self.changed.entry(kunnr.to_owned()).or_default();
        for (k, v) in after {
            if before.get(&k) != Some(&v) {
                delta.insert(k, v);
            }
        }
    }

    /// Every customer visible to this session: `committed` (ordered by KUNNR) with
    /// this LUW's changes applied and its new customers merged in, ordered by KUNNR.
    pub(crate) fn overlay_all(&self, committed: Vec<Record>) -> Vec<Record> {
        let mut all: BTreeMap<String, Record> = committed
            .into_iter()
            .map(|r| (r.get("KUNNR").cloned().unwrap_or_default(), r))
            .collect();
        for (kunnr, delta) in &self.changed {
            if let Some(rec) = all.get_mut(kunnr) {
                rec.extend(delta.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        for (kunnr, rec) in &self.created {
            all.insert(kunnr.clone(), rec.clone());
        }
        all.into_values().collect()
    }
}
