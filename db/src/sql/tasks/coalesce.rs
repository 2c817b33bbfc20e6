//! Concurrent task writes coalesced ([`crate::coalesce`]): the DesireTask calls and the
//! lifecycle calls (start, reject, complete, cancel, fail, resolving, delete) that wait at the
//! same moment run as one transaction:
//!
//! 1. one locking read of the rows of every task of the batch (by key, sorted);
//! 2. each write, in the order it arrived, decided on its task as the batch's earlier writes
//!    left it: a desire of a task that exists is [`Error::Exists`]; a lifecycle call runs the
//!    same pure [`TaskCall::transition`](proto::lifecycle::task::TaskCall) the single call runs,
//!    and its refusal (or a missing task, [`Error::NotFound`]) is its alone;
//! 3. the net change of every task: one multi-row `DELETE`, an `UPDATE` per changed task, one
//!    multi-row `INSERT`;
//!
//! then the fence check and the commit. A task another writer inserted between the read and the
//! insert fails the batch on its key: its members then run again one per transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use proto::lifecycle::task::{TaskCall as Call, TaskVerdict};
use proto::models::{CellId, Task, TaskGuid, TaskState};

use super::TaskChange;
use super::rows::{TASK_COLUMNS, decode_task};
use crate::backend::placeholders;
use crate::{Error, Result, Tx};

/// Keys bound in one statement of the batch (the locking read, the delete).
const KEYS_PER_STATEMENT: usize = 500;

/// Rows of one multi-row insert: 200 × 14 = 2,800 placeholders.
const ROWS_PER_INSERT: usize = 200;

/// The task writes' kind of batch.
pub(crate) struct TaskWrites;

/// One task write.
pub(crate) enum TaskWrite {
    /// DesireTask: the new task, its sealed definition and the label of the key that sealed it.
    Desire { task: Box<Task>, sealed: Arc<[u8]>, key_label: Arc<str> },
    /// A lifecycle call of a task.
    Transition { guid: TaskGuid, call: Arc<Call>, now_ns: i64 },
}

impl TaskWrite {
    fn guid(&self) -> &str {
        match self {
            Self::Desire { task, .. } => task.task_guid.as_str(),
            Self::Transition { guid, .. } => guid.as_str(),
        }
    }
}

/// What a task write did: a desire stored its task; a lifecycle call made a change.
pub(crate) enum TaskOutcome {
    Desired,
    Changed(Box<TaskChange>),
}

impl crate::coalesce::Batch for TaskWrites {
    type Item = TaskWrite;
    type Output = TaskOutcome;
    const MIXED_OP: &'static str = "write tasks";

    fn body<'t>(
        tx: &'t mut Tx,
        op: &'static str,
        items: &'t [TaskWrite],
    ) -> BoxFuture<'t, Result<Vec<Result<TaskOutcome>>>> {
        Box::pin(batch_body(tx, op, items))
    }
}

/// The transaction body: steps 1 to 3 of the module docs.
async fn batch_body(tx: &mut Tx, op: &'static str, items: &[TaskWrite]) -> Result<Vec<Result<TaskOutcome>>> {
    let mut guids: Vec<&str> = items.iter().map(TaskWrite::guid).collect();
    guids.sort_unstable();
    guids.dedup();
    let locked = lock_tasks(tx, op, &guids).await?;
    // Every task a write changed, as the writes so far left it (`None`: deleted).
    let mut current: HashMap<&str, Option<Task>> = HashMap::new();
    // The sealed definition of each task desired in this batch, and those desired again after
    // the batch deleted them.
    let mut sealed: HashMap<&str, (&Arc<[u8]>, &Arc<str>)> = HashMap::new();
    let mut recreated: HashSet<&str> = HashSet::new();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let guid = item.guid();
        let now = match current.get(guid) {
            Some(task) => task.as_ref(),
            None => locked.get(guid),
        };
        match item {
            TaskWrite::Desire { task, sealed: blob, key_label } => {
                if now.is_some() {
                    results.push(Err(Error::Exists { what: "task", key: guid.to_owned() }));
                    continue;
                }
                if locked.contains_key(guid) {
                    recreated.insert(guid);
                }
                current.insert(guid, Some(Task::clone(task)));
                sealed.insert(guid, (blob, key_label));
                results.push(Ok(TaskOutcome::Desired));
            }
            TaskWrite::Transition { call, now_ns, .. } => {
                let Some(before) = now.cloned() else {
                    results.push(Err(Error::NotFound { what: "task", key: guid.to_owned() }));
                    continue;
                };
                let mut after = before.clone();
                let change = match call.transition(&mut after, *now_ns) {
                    Err(refusal) => {
                        results.push(Err(Error::refused(refusal.code, refusal.message)));
                        continue;
                    }
                    Ok(TaskVerdict::Unchanged) => {
                        TaskChange { after: Some(before.clone()), before, should_start: false }
                    }
                    Ok(TaskVerdict::Delete) => {
                        current.insert(guid, None);
                        TaskChange { before, after: None, should_start: false }
                    }
                    Ok(TaskVerdict::Write(state)) => {
                        current.insert(guid, Some(after.clone()));
                        let should_start = matches!(**call, Call::Start { .. }) && state == TaskState::Running;
                        TaskChange { before, after: Some(after), should_start }
                    }
                };
                results.push(Ok(TaskOutcome::Changed(Box::new(change))));
            }
        }
    }
    // The net change of every task, in key order.
    let (mut deletes, mut updates, mut inserts) = (Vec::new(), Vec::new(), Vec::new());
    for guid in &guids {
        let Some(after) = current.get(guid) else {
            continue;
        };
        let insert =
            |task: &Task| sealed.get(guid).map(|(blob, label)| (task.clone(), Arc::clone(blob), Arc::clone(label)));
        match (locked.get(*guid), after) {
            (Some(_), None) => deletes.push(*guid),
            (None, Some(task)) => inserts.extend(insert(task)),
            (Some(_), Some(task)) if recreated.contains(guid) => {
                deletes.push(*guid);
                inserts.extend(insert(task));
            }
            (Some(old), Some(task)) if old != task => updates.push(task),
            _ => {}
        }
    }
    for chunk in deletes.chunks(KEYS_PER_STATEMENT) {
        let sql = tx.backend.delete_by_keys("tasks", &["guid"], chunk.len());
        let mut stmt = tx.backend.list_query(&sql);
        for guid in chunk {
            stmt = stmt.bind((*guid).to_owned());
        }
        stmt.execute(tx.conn()).await.map_err(|e| Error::from_sqlx(op, "task", "batch", e))?;
    }
    for task in updates {
        update_task(tx, op, task).await?;
    }
    for chunk in inserts.chunks(ROWS_PER_INSERT) {
        insert_tasks(tx, op, chunk).await?;
    }
    Ok(results)
}

/// Locks and decodes the rows of `guids` (sorted, unique) that exist.
async fn lock_tasks(tx: &mut Tx, op: &'static str, guids: &[&str]) -> Result<HashMap<String, Task>> {
    let mut out = HashMap::with_capacity(guids.len());
    let keys = tx.keys.clone();
    for chunk in guids.chunks(KEYS_PER_STATEMENT) {
        let sql = tx.backend.select_by_keys(TASK_COLUMNS, "tasks", &["guid"], chunk.len(), true);
        let mut query = tx.backend.query(&sql);
        for guid in chunk {
            query = query.bind((*guid).to_owned());
        }
        for row in query.fetch_all(tx.conn()).await.map_err(|e| Error::from_sqlx(op, "task", "batch", e))? {
            let task = decode_task(&keys, &row).map_err(|reason| Error::Corrupt {
                what: "task",
                key: sqlx::Row::try_get::<String, _>(&row, "guid").unwrap_or_default(),
                reason,
            })?;
            out.insert(task.task_guid.as_str().to_owned(), task);
        }
    }
    Ok(out)
}

/// The `UPDATE` of a task's mutable columns (the lifecycle's fields).
pub(super) async fn update_task(tx: &mut Tx, op: &'static str, task: &Task) -> Result<()> {
    tx.backend
        .query(
            "UPDATE tasks SET state = ?, cell_id = ?, updated_at = ?, first_completed_at = ?, result = ?, \
             failed = ?, failure_reason = ?, rejection_count = ?, rejection_reason = ? WHERE guid = ?",
        )
        .bind(i64::from(task.state.as_i32()))
        .bind(task.cell_id.as_ref().map_or("", CellId::as_str).to_owned())
        .bind(task.updated_at)
        .bind(task.first_completed_at)
        .bind(task.result.clone())
        .bind(i64::from(task.failed))
        .bind(task.failure_reason.clone())
        .bind(i64::from(task.rejection_count))
        .bind(task.rejection_reason.clone())
        .bind(task.task_guid.as_str())
        .execute(tx.conn())
        .await
        .map_err(|e| Error::from_sqlx(op, "task", task.task_guid.as_str(), e))?;
    Ok(())
}

/// A task to insert, its sealed definition and the label of the key that sealed it.
pub(super) type NewTask = (Task, Arc<[u8]>, Arc<str>);

/// One (multi-row) `INSERT` of whole tasks with their sealed definitions: a batch's, and a
/// single DesireTask's.
pub(super) async fn insert_tasks(tx: &mut Tx, op: &'static str, tasks: &[NewTask]) -> Result<()> {
    let row = format!("({})", placeholders(14));
    let sql = format!(
        "INSERT INTO tasks (guid, domain, created_at, updated_at, first_completed_at, state, cell_id, result, failed, \
         failure_reason, rejection_count, rejection_reason, task_definition, key_label) VALUES {}",
        vec![row; tasks.len()].join(", ")
    );
    let mut stmt = tx.backend.query(&sql);
    for (task, sealed, key_label) in tasks {
        stmt = stmt
            .bind(task.task_guid.as_str().to_owned())
            .bind(task.domain.as_str().to_owned())
            .bind(task.created_at)
            .bind(task.updated_at)
            .bind(task.first_completed_at)
            .bind(i64::from(task.state.as_i32()))
            .bind(task.cell_id.as_ref().map_or("", CellId::as_str).to_owned())
            .bind(task.result.clone())
            .bind(i64::from(task.failed))
            .bind(task.failure_reason.clone())
            .bind(i64::from(task.rejection_count))
            .bind(task.rejection_reason.clone())
            .bind(sealed.to_vec())
            .bind(key_label.to_string());
    }
    let key = tasks.first().map_or("batch", |(task, _, _)| task.task_guid.as_str());
    stmt.execute(tx.conn()).await.map_err(|e| Error::from_sqlx(op, "task", key, e))?;
    Ok(())
}
