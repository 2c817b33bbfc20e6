//! Decoding `tasks` rows. Decoders return the reason a row is unusable as a `String`; the caller
//! turns it into [`crate::Error::Corrupt`] or skips the row.

use proto::models::{CellId, DomainName, Task, TaskGuid, TaskState};
use proto::pb::models::v1 as pb;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::TaskSummary;
use crate::Keyring;
use crate::codec::open_proto;

/// Every column of a task row.
pub(super) const TASK_COLUMNS: &str = "guid, domain, created_at, updated_at, first_completed_at, state, cell_id, \
     result, failed, failure_reason, rejection_count, rejection_reason, task_definition";

/// A text column.
fn text(row: &AnyRow, name: &str) -> Result<String, String> {
    row.try_get::<String, _>(name).map_err(|e| format!("column {name}: {e}"))
}

/// An integer column that must fit `T`.
fn int<T: TryFrom<i64>>(row: &AnyRow, name: &str) -> Result<T, String> {
    let value = row.try_get::<i64, _>(name).map_err(|e| format!("column {name}: {e}"))?;
    T::try_from(value).map_err(|_| format!("column {name}: {value} is out of range"))
}

/// The plain columns shared by tasks and summaries.
fn decode_plain(row: &AnyRow) -> Result<TaskSummary, String> {
    let state = int::<i32>(row, "state")?;
    let cell_id = text(row, "cell_id")?;
    Ok(TaskSummary {
        task_guid: TaskGuid::parse(text(row, "guid")?).map_err(|e| e.to_string())?,
        domain: DomainName::parse(text(row, "domain")?).map_err(|e| e.to_string())?,
        state: TaskState::from_i32(state).ok_or_else(|| format!("unknown state {state}"))?,
        cell_id: if cell_id.is_empty() { None } else { Some(CellId::parse(cell_id).map_err(|e| e.to_string())?) },
        created_at: int(row, "created_at")?,
        updated_at: int(row, "updated_at")?,
        first_completed_at: int(row, "first_completed_at")?,
        rejection_count: int(row, "rejection_count")?,
    })
}

/// A task summary row.
pub(super) fn decode_summary(row: &AnyRow) -> Result<TaskSummary, String> {
    decode_plain(row)
}

/// A whole task row, its definition decrypted with `keys` and validated.
pub(super) fn decode_task(keys: &Keyring, row: &AnyRow) -> Result<Task, String> {
    let plain = decode_plain(row)?;
    let blob = row.try_get::<Vec<u8>, _>("task_definition").map_err(|e| format!("column task_definition: {e}"))?;
    let message: pb::TaskDefinition = open_proto(keys, &blob).map_err(|e| format!("task_definition: {e}"))?;
    let definition = proto::convert::task_definition_from_pb(message).map_err(|e| format!("task_definition: {e}"))?;
    Ok(Task {
        task_guid: plain.task_guid,
        domain: plain.domain,
        definition,
        created_at: plain.created_at,
        updated_at: plain.updated_at,
        first_completed_at: plain.first_completed_at,
        state: plain.state,
        cell_id: plain.cell_id,
        result: text(row, "result")?,
        failed: int::<i64>(row, "failed")? != 0,
        failure_reason: text(row, "failure_reason")?,
        rejection_count: plain.rejection_count,
        rejection_reason: text(row, "rejection_reason")?,
    })
}
