//! Concurrent index writes coalesced ([`crate::coalesce`]): the lifecycle calls
//! ([`Store::modify_index`]) that wait at the same moment run as one transaction:
//!
//! 1. one locking read of the rows of every index of the batch (sorted, so concurrent
//!    transactions lock in the same order; [`read_indices`]);
//! 2. each write decided by its caller's callback (which runs on the caller's task and may
//!    borrow from it: the rows go there and back over a channel) on its index's rows as the
//!    batch's earlier writes of that index left them, and planned ([`plan_index`]: modification
//!    tags, validation). The writes of one index are asked in the order they arrived, one after
//!    the other; the writes of different indices all at once, so a batch waits for its callers'
//!    tasks to be scheduled once, not once per write (under load each wait is a turn of a busy
//!    runtime, and the batch holds its row locks meanwhile). A refused or invalid write changes
//!    nothing and fails alone;
//! 3. the net change of every index written with multi-row statements ([`write_rows`]);
//!
//! then the fence check and the commit. A batch of claims is five statements (`BEGIN`, the
//! read, one `UPDATE` per 200 changed rows, the fence check, `COMMIT`) for any number of
//! writes, where the savepoint batch took three per write.

use std::collections::{BTreeMap, HashMap};

use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use proto::models::ProcessGuid;

use super::index::{Apply, IndexRows, RowWrites, Slot, callback_gone, plan_index, read_indices};
use super::multi_row::write_rows;
use crate::{Result, Tx};

/// The index writes' kind of batch.
pub(crate) struct IndexWrites;

/// One index write: the index, and the channel to its caller's callback.
pub(crate) type IndexWrite = (ProcessGuid, i32, mpsc::UnboundedSender<Apply>);

impl crate::coalesce::Batch for IndexWrites {
    type Item = IndexWrite;
    type Output = (IndexRows, IndexRows);
    const MIXED_OP: &'static str = "write actual lrp indices";

    fn body<'t>(
        tx: &'t mut Tx,
        op: &'static str,
        items: &'t [IndexWrite],
    ) -> BoxFuture<'t, Result<Vec<Result<(IndexRows, IndexRows)>>>> {
        Box::pin(batch_body(tx, op, items))
    }
}

/// The transaction body: steps 1 to 3 of the module docs. One entry per member of `targets`.
async fn batch_body(
    tx: &mut Tx,
    op: &'static str,
    targets: &[(ProcessGuid, i32, mpsc::UnboundedSender<Apply>)],
) -> Result<Vec<Result<(IndexRows, IndexRows)>>> {
    let mut pairs: Vec<(&str, i32)> = targets.iter().map(|(guid, index, _)| (guid.as_str(), *index)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let locked = read_indices(tx, op, &pairs).await?;
    let (current, results) = decide_all(op, targets, &locked).await;
    let none = IndexRows::default();
    // Sorted by index (the map's order), so concurrent batches write rows in the same order.
    let mut writes = RowWrites::default();
    for (slot, after) in &current {
        writes.add_diff(&slot.0, slot.1, locked.get(slot).unwrap_or(&none), after);
    }
    write_rows(tx, op, &writes).await?;
    Ok(results)
}

/// Step 2 of the module docs: every member of `targets` decided on the rows `locked` read. The
/// rows of every index a write changed, as the batch's writes left them, and one outcome per
/// member, in order.
async fn decide_all(
    op: &'static str,
    targets: &[IndexWrite],
    locked: &HashMap<Slot, IndexRows>,
) -> (BTreeMap<Slot, IndexRows>, Vec<Result<(IndexRows, IndexRows)>>) {
    // The members of each index, in the order they arrived.
    let mut members: BTreeMap<Slot, Vec<usize>> = BTreeMap::new();
    for (i, (process_guid, index, _)) in targets.iter().enumerate() {
        members.entry((process_guid.clone(), *index)).or_default().push(i);
    }
    let none = IndexRows::default();
    let decided = futures::future::join_all(members.into_iter().map(|(slot, members)| {
        let none = &none;
        async move {
            // The index's rows as its writes so far left them.
            let mut rows = locked.get(&slot).unwrap_or(none).clone();
            let mut changed = false;
            let mut outcomes = Vec::with_capacity(members.len());
            for i in members {
                let (process_guid, index, ask) = &targets[i];
                let outcome = decide(op, process_guid, *index, ask, &rows).await;
                if let Ok((_, stored)) = &outcome
                    && *stored != rows
                {
                    rows = stored.clone();
                    changed = true;
                }
                outcomes.push((i, outcome));
            }
            (slot, changed.then_some(rows), outcomes)
        }
    }))
    .await;
    // The rows of every index a write changed, as the batch's writes left them.
    let mut current: BTreeMap<Slot, IndexRows> = BTreeMap::new();
    // Every member is in exactly one index's outcomes: back in arrival order.
    let mut results = Vec::with_capacity(targets.len());
    for (slot, rows, outcomes) in decided {
        if let Some(rows) = rows {
            current.insert(slot, rows);
        }
        results.extend(outcomes);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    (current, results.into_iter().map(|(_, outcome)| outcome).collect())
}

/// One write decided on its index's rows `before`: its caller's callback asked over `ask`, and
/// the answer planned; `(before, stored)`, or why it was refused.
async fn decide(
    op: &'static str,
    process_guid: &ProcessGuid,
    index: i32,
    ask: &mpsc::UnboundedSender<Apply>,
    before: &IndexRows,
) -> Result<(IndexRows, IndexRows)> {
    let (reply, answer) = oneshot::channel();
    // A caller that went away has no answer to give: its write is left out.
    if ask.unbounded_send((before.clone(), reply)).is_err() {
        return Err(callback_gone(op));
    }
    let after = answer.await.map_err(|_| callback_gone(op))??;
    let stored = plan_index(process_guid, index, before, after)?;
    Ok((before.clone(), stored))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use proto::models::{ActualLrp, ActualLrpKey, DomainName};

    use super::*;

    fn guid(s: &str) -> ProcessGuid {
        ProcessGuid::parse(s).unwrap()
    }

    /// Two writes of different indices in one batch: the second is asked before the first has
    /// answered (each answer here waits for both asks; asked one after the other they would wait
    /// for each other for ever).
    #[tokio::test]
    async fn writes_of_different_indices_are_asked_at_once() {
        let ((first, mut asked_first), (second, mut asked_second)) =
            (mpsc::unbounded::<Apply>(), mpsc::unbounded::<Apply>());
        let targets = vec![(guid("web"), 0, first), (guid("web"), 1, second)];
        let locked = HashMap::new();
        let answers = async {
            let (rows_first, reply_first) = asked_first.next().await.unwrap();
            let (rows_second, reply_second) = asked_second.next().await.unwrap();
            reply_second.send(Ok(rows_second)).unwrap();
            reply_first.send(Ok(rows_first)).unwrap();
        };
        let both = async { tokio::join!(decide_all("test", &targets, &locked), answers) };
        let ((current, results), ()) =
            tokio::time::timeout(Duration::from_secs(5), both).await.expect("the second write was never asked");
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(current.is_empty(), "nothing changed: {current:?}");
    }

    /// Two writes of one index in one batch: the second is asked only after the first answered,
    /// on the rows the first left, and the index's rows are the second's.
    #[tokio::test]
    async fn writes_of_one_index_are_asked_in_turn() {
        let ((first, mut asked_first), (second, mut asked_second)) =
            (mpsc::unbounded::<Apply>(), mpsc::unbounded::<Apply>());
        let targets = vec![(guid("web"), 0, first), (guid("web"), 0, second)];
        let locked = HashMap::new();
        let answers = async {
            let (rows, reply) = asked_first.next().await.unwrap();
            assert_eq!(rows, IndexRows::default());
            assert!(asked_second.try_recv().is_err(), "the second write was asked before the first answered");
            let key = ActualLrpKey { process_guid: guid("web"), index: 0, domain: DomainName::parse("d").unwrap() };
            let created = IndexRows { ordinary: Some(ActualLrp::new_unclaimed(key, "", 7)), ..Default::default() };
            reply.send(Ok(created)).unwrap();
            let (rows, reply) = asked_second.next().await.unwrap();
            let row = rows.ordinary.clone().expect("the second write sees the first's row");
            reply.send(Ok(rows)).unwrap();
            row
        };
        let both = async { tokio::join!(decide_all("test", &targets, &locked), answers) };
        let ((current, results), row) = tokio::time::timeout(Duration::from_secs(5), both).await.unwrap();
        let (before, after) = results[1].as_ref().unwrap();
        assert_eq!(before.ordinary.as_ref(), Some(&row));
        assert_eq!(after, before, "the second write changed nothing");
        assert_eq!(current[&(guid("web"), 0)].ordinary.as_ref(), Some(&row));
    }
}
