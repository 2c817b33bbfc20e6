//! Seeding through the BBS's batch calls (`--seed-batch N`, N > 1): the operator desires the LRPs
//! N at a time with `DesireLRPs`, then every cell reports its own instances RUNNING with
//! `StartActualLRPs` over its own connection (as the role table requires under TLS), at most N
//! per call. `seed_workers` calls run at once in each phase. An item refused inside a batch
//! counts as one failed LRP, a failed call as all of its items.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prost::Message;
use proto::pb::bbs::v1 as api;

use super::ops;
use crate::generator::{self, Placement};
use crate::stats::Recorder;
use crate::target::Clients;

/// Largest encoded size of one batch request: under the 4 MiB every server accepts by default,
/// with room for the framing.
const MAX_BATCH_BYTES: usize = 3 * 1024 * 1024;

/// What the batched seeding did: LRPs whose desire or start failed.
pub(super) struct Failed(pub usize);

/// Seeds LRPs `0..desired_lrps` of `placement` in batches of at most `seed_batch` items.
pub(super) async fn seed(
    config: &crate::config::Config,
    placement: &Arc<Placement>,
    clients: &Clients,
    recorder: &Recorder,
    bar: &indicatif::ProgressBar,
) -> Failed {
    let (seed, total, workers) = (config.seed, config.desired_lrps, config.seed_workers);
    let batch = config.seed_batch.clamp(1, proto::limits::MAX_BATCH_ITEMS);
    // Phase 1: the desires, `batch` consecutive LRPs per call (fewer when the bytes run out).
    let desires = chunks(total, batch, |i| generator::desired_lrp(seed, i).encoded_len() + 8);
    let failed = Arc::new(AtomicUsize::new(0));
    let desired_ok: Arc<Vec<AtomicUsize>> = Arc::new((0..total).map(|_| AtomicUsize::new(0)).collect());
    run_all(desires, workers, |chunk| {
        let (clients, recorder, failed, desired_ok) =
            (clients.clone(), recorder.clone(), failed.clone(), desired_ok.clone());
        async move {
            let request = api::DesireLrPsRequest {
                desired_lrps: chunk.iter().map(|&i| generator::desired_lrp(seed, i)).collect(),
            };
            match recorder.time(ops::SEED_DESIRE_BATCH, clients.bbs().desire_lr_ps(request)).await {
                Ok(response) => {
                    for (&i, result) in chunk.iter().zip(&response.into_inner().results) {
                        match &result.error {
                            None => desired_ok[i].store(1, Ordering::Relaxed),
                            Some(e) => {
                                recorder.fail(ops::SEED_DESIRE_ITEM, format!("{}: {}", e.r#type, e.message));
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(lrps = chunk.len(), error = %e, "seeding: DesireLRPs failed");
                    failed.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            }
        }
    })
    .await;

    // Phase 2: per cell, its desired LRPs started over its own connection.
    let mut starts: Vec<(usize, Vec<usize>)> = Vec::new();
    for (cell, lrps) in placement.lrps_of.iter().enumerate() {
        let desired: Vec<usize> =
            lrps.iter().copied().filter(|&i| i < total && desired_ok[i].load(Ordering::Relaxed) == 1).collect();
        starts.extend(desired.chunks(batch).map(|chunk| (cell, chunk.to_vec())));
    }
    run_all(starts, workers, |(cell, chunk)| {
        let (clients, recorder, failed, placement, bar) =
            (clients.clone(), recorder.clone(), failed.clone(), placement.clone(), bar.clone());
        async move {
            let starts =
                chunk.iter().map(|&i| generator::start_request(i, cell, &placement.instance_guid[i])).collect();
            let request = api::StartActualLrPsRequest { starts };
            match recorder.time(ops::SEED_START_BATCH, clients.cell(cell).start_actual_lr_ps(request)).await {
                Ok(response) => {
                    for result in &response.into_inner().results {
                        if let Some(e) = &result.error {
                            recorder.fail(ops::SEED_START_ITEM, format!("{}: {}", e.r#type, e.message));
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(cell, lrps = chunk.len(), error = %e, "seeding: StartActualLRPs failed");
                    failed.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            }
            bar.inc(chunk.len() as u64);
        }
    })
    .await;
    Failed(failed.load(Ordering::Relaxed))
}

/// `0..total` cut into runs of at most `batch` items and [`MAX_BATCH_BYTES`] (by `size`; a
/// run has at least one item).
fn chunks(total: usize, batch: usize, size: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let (mut current, mut bytes) = (Vec::new(), 0);
    for i in 0..total {
        let item = size(i);
        if !current.is_empty() && (current.len() == batch || bytes + item > MAX_BATCH_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += item;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Runs `work` on every job, `workers` at a time.
async fn run_all<J, F, Fut>(jobs: Vec<J>, workers: usize, work: F)
where
    F: Fn(J) -> Fut,
    Fut: Future<Output = ()>,
{
    use futures::StreamExt;
    futures::stream::iter(jobs).for_each_concurrent(workers.max(1), work).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stop_at_the_count_or_the_bytes() {
        assert_eq!(chunks(5, 2, |_| 10), [vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(chunks(3, 10, |_| MAX_BATCH_BYTES / 2), [vec![0, 1], vec![2]]);
        assert_eq!(chunks(2, 10, |_| MAX_BATCH_BYTES * 2), [vec![0], vec![1]], "an oversized item goes alone");
        assert!(chunks(0, 10, |_| 1).is_empty());
    }
}
