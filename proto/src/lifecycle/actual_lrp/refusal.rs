//! [`Refusal`]: why a lifecycle call changed nothing, with the Diego error code it is answered
//! with and a message naming the row. Every `apply_*` function of this module fails with it.

use crate::error::ErrorCode;
use crate::lifecycle::actual_lrp::rows::{key_match, presence_name, row_key};
use crate::lifecycle::actual_lrp::table::{Command, KeyMatch, Verdict, decide};
use crate::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpKey, Presence, ProcessGuid};

/// What errors call these records (the db crate's `Error::NotFound { what, .. }`).
pub const WHAT: &str = "actual lrp";

/// A lifecycle call refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The row the call addresses does not exist (ResourceNotFound).
    #[error("actual lrp not found: {key}")]
    NotFound {
        /// The row looked for, e.g. `web index 3 (suspect)`.
        key: String,
    },
    /// A transition rule or the instance-key fence refused the call.
    #[error("{message}")]
    Refused {
        /// The Diego error type.
        code: ErrorCode,
        /// What was refused: the command, the row's process guid, index, presence and state, and
        /// the instance keys involved.
        message: String,
    },
}

impl Refusal {
    /// The Diego error type the call is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound { .. } => ErrorCode::ResourceNotFound,
            Self::Refused { code, .. } => *code,
        }
    }

    /// No row of `presence` at (process guid, index).
    pub fn not_found(process_guid: &ProcessGuid, index: i32, presence: Presence) -> Self {
        Self::NotFound { key: row_key(process_guid.as_str(), index, presence) }
    }

    /// No row of the index carries `instance_key` (the evacuation calls).
    pub fn no_instance(key: &ActualLrpKey, instance_key: &ActualLrpInstanceKey) -> Self {
        Self::NotFound {
            key: format!(
                "{} index {} with instance {} on cell {}",
                key.process_guid, key.index, instance_key.instance_guid, instance_key.cell_id
            ),
        }
    }

    /// `cmd` refused on `row` with `code`; `why` is appended to the message as it is.
    pub fn refused(
        code: ErrorCode,
        cmd: Command,
        row: &ActualLrp,
        requested: Option<&ActualLrpInstanceKey>,
        why: &str,
    ) -> Self {
        let held = match &row.instance_key {
            Some(k) => format!(" held by instance {} on cell {}", k.instance_guid, k.cell_id),
            None => String::new(),
        };
        let by = match requested {
            Some(k) => format!(" (requested by instance {} on cell {})", k.instance_guid, k.cell_id),
            None => String::new(),
        };
        Self::Refused {
            code,
            message: format!(
                "cannot {} actual lrp {} index {}: {} row is {}{held}{by}{why}",
                verb(cmd),
                row.key.process_guid,
                row.key.index,
                presence_name(row.presence),
                row.state.as_str(),
            ),
        }
    }

    /// A verdict the table never gives for `cmd` on this row's presence: a bug, reported as
    /// InvalidStateTransition rather than a panic.
    pub fn unexpected(cmd: Command, row: &ActualLrp, verdict: Verdict) -> Self {
        Self::refused(ErrorCode::InvalidStateTransition, cmd, row, None, &format!(" (unexpected verdict {verdict:?})"))
    }
}

/// Asks the transition table what `cmd` by `requested` does to `row`. A call without an instance
/// key (RemoveActualLRP without one, the internal calls) matches any key.
pub fn judge(cmd: Command, row: &ActualLrp, requested: Option<&ActualLrpInstanceKey>) -> Result<Verdict, Refusal> {
    let km = requested.map_or(KeyMatch::Same, |k| key_match(row, k));
    decide(row.state, row.presence, km, cmd).map_err(|code| Refusal::refused(code, cmd, row, requested, ""))
}

/// The verb of refusal messages.
fn verb(cmd: Command) -> &'static str {
    match cmd {
        Command::Claim => "claim",
        Command::Start => "start",
        Command::Crash => "crash",
        Command::Fail => "fail",
        Command::Remove => "remove",
        Command::Unclaim => "unclaim",
        Command::Retire => "retire",
        Command::Suspect => "suspect",
        Command::Promote => "promote",
    }
}
