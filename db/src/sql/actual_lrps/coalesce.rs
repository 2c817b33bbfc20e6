//! Concurrent index writes coalesced ([`crate::coalesce`]): the lifecycle calls
//! ([`Store::modify_index`]) that wait at the same moment run as one transaction:
//!
//! 1. one locking read of the rows of every index of the batch (sorted, so concurrent
//!    transactions lock in the same order; [`read_indices`]);
//! 2. each write, in the order it arrived, decided by its caller's callback (which runs on the
//!    caller's task and may borrow from it: the rows go there and back over a channel) on its
//!    index's rows as the batch's earlier writes left them, and planned ([`plan_index`]:
//!    modification tags, validation). A refused or invalid write changes nothing and fails
//!    alone;
//! 3. the net change of every index written with multi-row statements ([`write_rows`]);
//!
//! then the fence check and the commit. A batch of claims is five statements (`BEGIN`, the
//! read, one `UPDATE` per 200 changed rows, the fence check, `COMMIT`) for any number of
//! writes, where the savepoint batch took three per write.

use std::collections::BTreeMap;

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
    let none = IndexRows::default();
    // The rows of every index a write changed, as the batch's writes so far left them.
    let mut current: BTreeMap<Slot, IndexRows> = BTreeMap::new();
    let mut results = Vec::with_capacity(targets.len());
    for (process_guid, index, ask) in targets {
        let slot = (process_guid.clone(), *index);
        let before = current.get(&slot).or_else(|| locked.get(&slot)).unwrap_or(&none).clone();
        let (reply, answer) = oneshot::channel();
        // A caller that went away has no answer to give: its write is left out.
        if ask.unbounded_send((before.clone(), reply)).is_err() {
            results.push(Err(callback_gone(op)));
            continue;
        }
        let after = match answer.await {
            Ok(Ok(after)) => after,
            Ok(Err(refused)) => {
                results.push(Err(refused));
                continue;
            }
            Err(_) => {
                results.push(Err(callback_gone(op)));
                continue;
            }
        };
        match plan_index(process_guid, *index, &before, after) {
            Ok(stored) => {
                if stored != before {
                    current.insert(slot, stored.clone());
                }
                results.push(Ok((before, stored)));
            }
            Err(invalid) => results.push(Err(invalid)),
        }
    }
    // Sorted by index (the map's order), so concurrent batches write rows in the same order.
    let mut writes = RowWrites::default();
    for (slot, after) in &current {
        writes.add_diff(&slot.0, slot.1, locked.get(slot).unwrap_or(&none), after);
    }
    write_rows(tx, op, &writes).await?;
    Ok(results)
}
