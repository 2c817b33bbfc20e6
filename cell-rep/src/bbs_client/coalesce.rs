//! Start reports of one cell, coalesced: containers that turn RUNNING while an earlier report
//! is on the wire are reported together in the next `StartActualLRPs` call, instead of one
//! `StartActualLRP` each.
//!
//! No timer and no added latency: a report made while nothing is being sent goes out at once
//! (alone, as `StartActualLRP`, so a BBS without the batch call and a single start look as
//! before); the reports that arrive while a call is in flight wait for it and then go out as one
//! batch. A Perform of 40 instances on a cell whose containers all turn healthy together thus
//! costs a few calls, not 40. Each report still gets its own answer, and a batch never holds the
//! same instance twice (a second report of an instance waits for the next call), so the reports
//! of one instance reach the BBS in the order they were made.
//!
//! The sending runs in its own task: a caller that stops waiting never strands the reports of
//! the others, and a sender that panics drops its reports (their callers get an error and the
//! next pass reports again) and lets the next report start a new sender.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use proto::error::ErrorCode;
use tokio::sync::oneshot;

use super::{BbsClient, BbsError, RunningLrp};

/// A report waiting to be sent, and where its answer goes.
type Waiting = (RunningLrp, oneshot::Sender<Result<(), BbsError>>);

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Whether a sender task is running (it sends until `waiting` is empty).
    sending: bool,
}

/// The coalescer of one cell's start reports ([`StartReports::report`]).
pub struct StartReports {
    bbs: Arc<dyn BbsClient>,
    queue: Arc<Mutex<Queue>>,
}

impl std::fmt::Debug for StartReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartReports").field("waiting", &lock(&self.queue).waiting.len()).finish_non_exhaustive()
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

impl StartReports {
    /// Start reports to `bbs`.
    pub fn new(bbs: Arc<dyn BbsClient>) -> Self {
        Self { bbs, queue: Arc::default() }
    }

    /// Reports `lrp` running, together with the reports made meanwhile; its own answer. Must be
    /// called within a tokio runtime.
    pub async fn report(&self, lrp: RunningLrp) -> Result<(), BbsError> {
        let (answer, answered) = oneshot::channel();
        let start_sender = {
            let mut queue = lock(&self.queue);
            queue.waiting.push((lrp, answer));
            !std::mem::replace(&mut queue.sending, true)
        };
        if start_sender {
            tokio::spawn(send_all(Arc::clone(&self.bbs), Arc::clone(&self.queue)));
        }
        answered.await.unwrap_or_else(|_| {
            Err(BbsError::new(
                "StartActualLRP",
                Some(ErrorCode::Unknown),
                "the start report was dropped; retrying on the next pass",
            ))
        })
    }
}

/// Clears `sending` however the sender ends, so the next report starts a new one.
struct Sending(Arc<Mutex<Queue>>);

impl Drop for Sending {
    fn drop(&mut self) {
        let mut queue = lock(&self.0);
        queue.sending = false;
        // Only left here when the sender panicked: those callers get an error, not a hang.
        queue.waiting.clear();
    }
}

/// Sends what is waiting, batch after batch, until nothing is.
async fn send_all(bbs: Arc<dyn BbsClient>, queue: Arc<Mutex<Queue>>) {
    let _sending = Sending(Arc::clone(&queue));
    loop {
        let batch = {
            let mut queue = lock(&queue);
            if queue.waiting.is_empty() {
                return;
            }
            next_batch(&mut queue.waiting)
        };
        let (lrps, answers): (Vec<RunningLrp>, Vec<_>) = batch.into_iter().unzip();
        let results = match lrps.as_slice() {
            [lrp] => vec![bbs.start_actual_lrp(lrp).await],
            _ => match bbs.start_actual_lrps(&lrps).await {
                Ok(results) => results,
                Err(e) => vec![Err(e); lrps.len()],
            },
        };
        for (answer, result) in answers.into_iter().zip(results) {
            let _ = answer.send(result);
        }
    }
}

/// The longest prefix of `waiting` with no instance twice, taken out of it.
fn next_batch(waiting: &mut Vec<Waiting>) -> Vec<Waiting> {
    let mut seen = HashSet::with_capacity(waiting.len());
    let end = waiting
        .iter()
        .position(|(lrp, _)| !seen.insert((lrp.key.process_guid.clone(), lrp.key.index)))
        .unwrap_or(waiting.len());
    let rest = waiting.split_off(end);
    std::mem::replace(waiting, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{BbsCall, FakeBbs, running_lrp};

    fn instances(calls: &[BbsCall]) -> Vec<Vec<String>> {
        calls
            .iter()
            .filter_map(|c| match c {
                BbsCall::Start { lrp, .. } => Some(vec![format!("{}/{}", lrp.process_guid, lrp.index)]),
                BbsCall::StartBatch(lrps) => {
                    Some(lrps.iter().map(|l| format!("{}/{}", l.process_guid, l.index)).collect())
                }
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_lone_report_goes_out_at_once_as_a_single_start() {
        let bbs = Arc::new(FakeBbs::new());
        let reports = StartReports::new(bbs.clone());
        reports.report(running_lrp("web", 0, "cell-1")).await.expect("started");
        assert_eq!(instances(&bbs.calls()), vec![vec!["web/0".to_owned()]]);
        assert!(matches!(bbs.calls()[..], [BbsCall::Start { .. }]), "{:?}", bbs.calls());
    }

    /// Reports web/0 while starts are held, then `later` (indices of `web`, or other guids) while
    /// web/0 is in flight, then releases the starts: the first answer and the later ones.
    async fn one_in_flight_then(
        bbs: &Arc<FakeBbs>,
        later: &[(&str, i32)],
    ) -> (Result<(), BbsError>, Vec<Result<(), BbsError>>) {
        bbs.hold_starts(true);
        let reports = StartReports::new(bbs.clone());
        let first = reports.report(running_lrp("web", 0, "cell-1"));
        let rest = async {
            bbs.wait_until(|b| b.calls().len() == 1).await;
            let later = futures::future::join_all(
                later.iter().map(|(guid, i)| reports.report(running_lrp(guid, *i, "cell-1"))),
            );
            let release = async {
                tokio::task::yield_now().await;
                bbs.hold_starts(false);
            };
            tokio::join!(later, release).0
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), async { tokio::join!(first, rest) })
            .await
            .expect("every report answered")
    }

    #[tokio::test]
    async fn reports_made_while_one_is_in_flight_go_out_together_each_with_its_answer() {
        let bbs = Arc::new(FakeBbs::new());
        let later: Vec<(&str, i32)> = (1..10).map(|i| ("web", i)).collect();
        let (first, rest) = one_in_flight_then(&bbs, &later).await;
        assert!(first.is_ok() && rest.iter().all(Result::is_ok), "{first:?} {rest:?}");
        let calls = instances(&bbs.calls());
        let nine: Vec<String> = (1..10).map(|i| format!("web/{i}")).collect();
        assert_eq!(calls, vec![vec!["web/0".to_owned()], nine], "one alone, then the nine that waited");
        assert!(matches!(bbs.calls()[1], BbsCall::StartBatch(_)));
    }

    #[tokio::test]
    async fn the_same_instance_twice_waits_for_the_next_call_and_a_failed_batch_fails_each_report() {
        let bbs = Arc::new(FakeBbs::new());
        bbs.fail("StartActualLRPs", ErrorCode::Unavailable);
        let (first, rest) = one_in_flight_then(&bbs, &[("web", 1), ("web", 2), ("web", 1), ("web", 3)]).await;
        assert!(first.is_ok(), "{first:?}");
        assert!(rest.iter().all(|r| r.as_ref().is_err_and(|e| e.is(ErrorCode::Unavailable))), "{rest:?}");
        let calls = instances(&bbs.calls());
        assert_eq!(
            calls,
            vec![
                vec!["web/0".to_owned()],
                vec!["web/1".to_owned(), "web/2".to_owned()],
                vec!["web/1".to_owned(), "web/3".to_owned()],
            ],
            "web/1's second report goes in the call after its first"
        );
    }
}
