//! The actual LRP lifecycle calls (bbs.md 3.1, 3.2, 3.4) on top of [`Store::modify_index`].
//!
//! Each call is one `apply_*` function of [`proto::lifecycle::actual_lrp`] (which picks the row a
//! request addresses, asks the transition table and sets the fields) run by
//! [`Store::modify_index`] on the locked rows of the index, so it re-runs cleanly when
//! the transaction is retried; a [`Refusal`] becomes the matching [`Error`] here.
//!
//! The batch of starts (StartActualLRPs, a rep's bulk report) is in [`bulk`]: the same
//! `apply_start`, many indices in one transaction.

mod bulk;

pub use bulk::StartOutcome;

use proto::lifecycle::actual_lrp::{
    CrashOutcome, Refusal, StartInfo, apply_claim, apply_crash, apply_delete, apply_fail, apply_promote, apply_remove,
    apply_start, apply_suspect_and_replace, apply_unclaim,
};
use proto::lifecycle::crash::CrashPolicy;
use proto::models::{ActualLrpInstanceKey, ActualLrpKey, Presence, ProcessGuid};

use super::index::IndexChange;
use super::row::WHAT;
use crate::{Error, Result, Store};

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound { key } => Error::NotFound { what: WHAT, key },
            Refusal::Refused { code, message } => Error::Refused { code, message },
        }
    }
}

/// Runs one pure lifecycle function inside [`Store::modify_index`], its refusal as an [`Error`].
fn lift<T>(result: std::result::Result<T, Refusal>) -> Result<T> {
    result.map_err(Error::from)
}

impl Store {
    /// ClaimActualLRP: a rep reserved a container for the instance. The ordinary row becomes
    /// CLAIMED by `instance_key`; its placement error and net info are cleared.
    ///
    /// - CLAIMED by the same key: success, nothing written.
    /// - The suspect row carries `instance_key`: success, silently ignored.
    /// - Refused ([`ErrorCode::ActualLrpCannotBeClaimed`]) when the row is held by another key
    ///   or CRASHED.
    /// - No ordinary row: [`Error::NotFound`].
    pub async fn claim_actual_lrp(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        instance_key: &ActualLrpInstanceKey,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        self.modify_index("claim actual lrp", process_guid, index, |rows| {
            lift(apply_claim(rows, process_guid, index, instance_key, now_ns))
        })
        .await
    }

    /// StartActualLRP: the instance's container is healthy. The ordinary row becomes RUNNING
    /// with `instance_key` and everything in `start`; the placement error is cleared.
    ///
    /// - No ordinary row: a RUNNING one is created.
    /// - RUNNING by the same key with every field equal (the rep's periodic re-assert): nothing
    ///   is written; this case is answered from an unlocked read without a write transaction.
    /// - Once the ordinary row is RUNNING, the EVACUATING and SUSPECT rows of the index are
    ///   deleted in the same transaction.
    /// - The suspect row carries `instance_key`: success, silently ignored.
    /// - Refused ([`ErrorCode::ActualLrpCannotBeStarted`]) when the row is RUNNING or CRASHED
    ///   under another key; UNCLAIMED and CLAIMED rows accept any key (bbs.md 3.1).
    /// - An empty net info address is [`Error::Invalid`].
    pub async fn start_actual_lrp(
        &self,
        key: &ActualLrpKey,
        instance_key: &ActualLrpInstanceKey,
        start: &StartInfo,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        // Fast path for the re-assert: if applying the start to the current rows changes
        // nothing, answer without locking. A concurrent writer makes this the same as the
        // re-assert having arrived just before it.
        let current = self.actual_lrp_index(&key.process_guid, key.index).await?;
        let mut probe = current.clone();
        if apply_start(&mut probe, key, instance_key, start, now_ns).is_ok() && probe == current {
            return Ok(IndexChange { value: (), before: current.clone(), after: current });
        }
        self.modify_index("start actual lrp", &key.process_guid, key.index, |rows| {
            lift(apply_start(rows, key, instance_key, start, now_ns))
        })
        .await
    }

    /// CrashActualLRP (bbs.md 3.2): the instance's container exited.
    ///
    /// On the ordinary row: the crash count becomes `policy.next_crash_count(..)`, the instance
    /// key and net info are cleared, the reason is stored (truncated to 1024 characters) and
    /// `since = now_ns`; the state is UNCLAIMED when `policy.restart_immediately(count)` (the
    /// caller auctions it, `restart_now`), CRASHED otherwise.
    ///
    /// A crash reported by the suspect row's instance deletes the suspect row, with no restart.
    /// Refused ([`ErrorCode::ActualLrpCannotBeCrashed`]) unless the row is CLAIMED or RUNNING by
    /// `instance_key`. No ordinary row: [`Error::NotFound`].
    pub async fn crash_actual_lrp(
        &self,
        key: &ActualLrpKey,
        instance_key: &ActualLrpInstanceKey,
        reason: &str,
        policy: &CrashPolicy,
        now_ns: i64,
    ) -> Result<IndexChange<CrashOutcome>> {
        self.modify_index("crash actual lrp", &key.process_guid, key.index, |rows| {
            lift(apply_crash(rows, key, instance_key, reason, policy, now_ns))
        })
        .await
    }

    /// FailActualLRP: the auctioneer could not place the instance. Only an UNCLAIMED ordinary
    /// row accepts it: the placement error is stored (truncated to 1024 characters) and `since`
    /// bumped, which restarts the stale-unclaimed timer. Otherwise refused
    /// ([`ErrorCode::ActualLrpCannotBeFailed`]); no ordinary row: [`Error::NotFound`].
    pub async fn fail_actual_lrp(
        &self,
        key: &ActualLrpKey,
        placement_error: &str,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        self.modify_index("fail actual lrp", &key.process_guid, key.index, |rows| {
            lift(apply_fail(rows, key, placement_error, now_ns))
        })
        .await
    }

    /// RemoveActualLRP: deletes the ordinary row. With an instance key, only when the row
    /// carries that key (refused with [`ErrorCode::ActualLrpCannotBeRemoved`] otherwise, an
    /// UNCLAIMED or CRASHED row included); without one, whatever its state. No ordinary row:
    /// [`Error::NotFound`].
    pub async fn remove_actual_lrp(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        instance_key: Option<&ActualLrpInstanceKey>,
    ) -> Result<IndexChange<()>> {
        self.modify_index("remove actual lrp", process_guid, index, |rows| {
            lift(apply_remove(rows, process_guid, index, instance_key))
        })
        .await
    }

    /// Internal unclaim (evacuation, convergence): the ordinary row goes back to UNCLAIMED with
    /// its instance key and net info cleared and `since = now_ns`; the crash count is kept. An
    /// UNCLAIMED row is left as it is. No ordinary row: [`Error::NotFound`].
    pub async fn unclaim_actual_lrp(&self, key: &ActualLrpKey, now_ns: i64) -> Result<IndexChange<()>> {
        self.modify_index("unclaim actual lrp", &key.process_guid, key.index, |rows| {
            lift(apply_unclaim(rows, key, now_ns)).map(|_| ())
        })
        .await
    }

    /// Deletes the row with `presence` unconditionally (retirement of rows with no container,
    /// convergence clean-ups). No such row: [`Error::NotFound`].
    pub async fn delete_actual_lrp(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        presence: Presence,
    ) -> Result<IndexChange<()>> {
        self.modify_index("delete actual lrp", process_guid, index, |rows| {
            lift(apply_delete(rows, process_guid, index, presence))
        })
        .await
    }

    /// Convergence found the ordinary row's cell missing (bbs.md 3.4): the RUNNING or CLAIMED
    /// ordinary row moves to presence SUSPECT (keeping its state, instance key and net info),
    /// and a new UNCLAIMED ordinary row with a fresh epoch replaces it, in one transaction. The
    /// caller requests the replacement's auction.
    ///
    /// Refused with [`ErrorCode::InvalidStateTransition`] when the ordinary row is UNCLAIMED or
    /// CRASHED, or when the index already has a suspect row (then the ordinary row is itself
    /// the replacement; the caller unclaims it instead). No ordinary row: [`Error::NotFound`].
    pub async fn suspect_and_replace(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        self.modify_index("suspect actual lrp", process_guid, index, |rows| {
            lift(apply_suspect_and_replace(rows, process_guid, index, now_ns))
        })
        .await
    }

    /// The suspect's cell came back (bbs.md 3.4, promote): the ordinary replacement is deleted
    /// whatever its state, and the SUSPECT row becomes ORDINARY (state, instance key and `since`
    /// kept: a presence move is not a state write, so `now_ns` is not stored). No suspect row:
    /// [`Error::NotFound`].
    pub async fn promote_suspect(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        let _ = now_ns;
        self.modify_index("promote suspect actual lrp", process_guid, index, |rows| {
            lift(apply_promote(rows, process_guid, index))
        })
        .await
    }
}
