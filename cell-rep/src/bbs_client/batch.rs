//! Reporting many running instances at once: `StartActualLRPs` in calls of at most
//! [`MAX_BATCH_ITEMS`] starts, and the fall-back to one `StartActualLRP` each on a BBS that does
//! not serve the batch call (an older version answers UNIMPLEMENTED). The gRPC client and the
//! fake both go through [`BatchSupport::start_actual_lrps`], so tests exercise these rules.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use proto::error::ErrorCode;
use proto::limits::MAX_BATCH_ITEMS;
use tokio::time::Instant;

use super::{BbsClient, BbsError, RunningLrp};

/// The batch call's name, as [`BbsError::call`] spells it.
pub(crate) const START_ACTUAL_LRPS: &str = "StartActualLRPs";

/// How long starts stay single calls after the BBS answered UNIMPLEMENTED, before the batch call
/// is tried again (the BBS may have been upgraded meanwhile).
const RETRY_BATCH_AFTER: Duration = Duration::from_secs(10 * 60);

/// What one `StartActualLRPs` call answered.
#[derive(Debug)]
pub(crate) enum BatchAnswer {
    /// One result per start, in request order.
    Results(Vec<Result<(), BbsError>>),
    /// The call failed as a whole: nothing was applied.
    Failed(BbsError),
    /// The BBS does not serve the call.
    Unimplemented,
}

/// Whether the BBS serves `StartActualLRPs`, as last seen: one per client.
#[derive(Debug, Default)]
pub(crate) struct BatchSupport {
    /// When the BBS last answered UNIMPLEMENTED.
    unimplemented_at: Mutex<Option<Instant>>,
}

impl BatchSupport {
    fn unimplemented_at(&self) -> MutexGuard<'_, Option<Instant>> {
        self.unimplemented_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether to try the batch call (false for a while after an UNIMPLEMENTED).
    pub(super) fn batch_worth_trying(&self) -> bool {
        self.unimplemented_at().is_none_or(|at| at.elapsed() >= RETRY_BATCH_AFTER)
    }

    fn remember_unimplemented(&self) {
        let previous = self.unimplemented_at().replace(Instant::now());
        if previous.is_none() {
            tracing::info!(
                retry_after = ?RETRY_BATCH_AFTER,
                "the bbs does not serve StartActualLRPs; reporting running instances one StartActualLRP each"
            );
        }
    }

    /// [`BbsClient::start_actual_lrps`] of `client`, whose one `StartActualLRPs` call of at most
    /// [`MAX_BATCH_ITEMS`] starts is `send`: the chunks go one after the other. The outer error
    /// is the first call's failure as a whole (nothing was reported); a later call's failure
    /// becomes the result of each start it and the rest of the chunks held. On UNIMPLEMENTED the
    /// starts not yet answered, and those of the next calls for [`RETRY_BATCH_AFTER`], are
    /// reported with one `StartActualLRP` each.
    pub(crate) async fn start_actual_lrps<'a, C, F, Fut>(
        &self,
        client: &C,
        lrps: &'a [RunningLrp],
        send: F,
    ) -> Result<Vec<Result<(), BbsError>>, BbsError>
    where
        C: BbsClient + ?Sized,
        F: Fn(&'a [RunningLrp]) -> Fut,
        Fut: Future<Output = BatchAnswer>,
    {
        if !self.batch_worth_trying() {
            return Ok(one_by_one(client, lrps).await);
        }
        let mut results = Vec::with_capacity(lrps.len());
        for chunk in lrps.chunks(MAX_BATCH_ITEMS) {
            match send(chunk).await {
                BatchAnswer::Results(answers) => results.extend(one_per_start(answers, chunk.len())),
                BatchAnswer::Failed(e) if results.is_empty() => return Err(e),
                BatchAnswer::Failed(e) => {
                    results.resize(lrps.len(), Err(e));
                    break;
                }
                BatchAnswer::Unimplemented => {
                    self.remember_unimplemented();
                    let rest = one_by_one(client, &lrps[results.len()..]).await;
                    results.extend(rest);
                    break;
                }
            }
        }
        Ok(results)
    }
}

/// One `StartActualLRP` per instance, concurrently, answers in order.
async fn one_by_one<C: BbsClient + ?Sized>(client: &C, lrps: &[RunningLrp]) -> Vec<Result<(), BbsError>> {
    futures::future::join_all(lrps.iter().map(|lrp| client.start_actual_lrp(lrp))).await
}

/// `answers` cut or padded to `starts` (a start the BBS left unanswered is an error worth
/// retrying).
fn one_per_start(mut answers: Vec<Result<(), BbsError>>, starts: usize) -> Vec<Result<(), BbsError>> {
    if answers.len() != starts {
        tracing::warn!(
            starts,
            answers = answers.len(),
            "the bbs answered StartActualLRPs with a wrong number of results"
        );
        let missing = BbsError::new(START_ACTUAL_LRPS, Some(ErrorCode::Unknown), "the bbs left this start unanswered");
        answers.resize(starts, Err(missing));
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{BbsCall, FakeBbs, running_lrp};

    fn lrps(n: usize) -> Vec<RunningLrp> {
        (0..n).map(|i| running_lrp("web", i32::try_from(i).expect("index"), "cell-1")).collect()
    }

    fn down() -> BbsError {
        BbsError::new(START_ACTUAL_LRPS, Some(ErrorCode::Unavailable), "down")
    }

    #[tokio::test]
    async fn starts_go_in_calls_of_at_most_the_limit_and_a_later_failure_fails_only_the_rest() {
        let (support, bbs, lrps) = (BatchSupport::default(), FakeBbs::new(), lrps(2 * MAX_BATCH_ITEMS + 1));
        let sizes = Mutex::new(Vec::new());
        let results = support
            .start_actual_lrps(&bbs, &lrps, |chunk| {
                let mut sizes = sizes.lock().expect("sizes");
                sizes.push(chunk.len());
                std::future::ready(match sizes.len() {
                    1 => BatchAnswer::Results(vec![Ok(()); chunk.len()]),
                    _ => BatchAnswer::Failed(down()),
                })
            })
            .await
            .expect("the first call was answered");
        assert_eq!(*sizes.lock().expect("sizes"), [MAX_BATCH_ITEMS, MAX_BATCH_ITEMS], "no call after a failed one");
        assert_eq!(results.len(), lrps.len());
        assert!(results[..MAX_BATCH_ITEMS].iter().all(Result::is_ok));
        assert!(results[MAX_BATCH_ITEMS..].iter().all(|r| r.as_ref().is_err_and(|e| e.is(ErrorCode::Unavailable))));
        assert!(bbs.calls().is_empty(), "no single call");
    }

    #[tokio::test]
    async fn a_first_call_that_fails_as_a_whole_is_the_outer_error() {
        let (support, bbs, lrps) = (BatchSupport::default(), FakeBbs::new(), lrps(3));
        let error = support
            .start_actual_lrps(&bbs, &lrps, |_| std::future::ready(BatchAnswer::Failed(down())))
            .await
            .expect_err("nothing was answered");
        assert!(error.is(ErrorCode::Unavailable));
        assert!(support.batch_worth_trying(), "a failure is not a missing call");
    }

    #[tokio::test]
    async fn after_an_unimplemented_the_starts_are_single_calls_until_the_batch_is_worth_a_retry() {
        let (support, bbs, lrps) = (BatchSupport::default(), FakeBbs::new(), lrps(3));
        let sent = Mutex::new(0);
        let send = |_: &[RunningLrp]| {
            *sent.lock().expect("sent") += 1;
            std::future::ready(BatchAnswer::Unimplemented)
        };
        let singles = |bbs: &FakeBbs| bbs.calls().iter().filter(|c| matches!(c, BbsCall::Start { .. })).count();

        let results = support.start_actual_lrps(&bbs, &lrps, send).await.expect("answered one by one");
        assert_eq!((results.len(), *sent.lock().expect("sent"), singles(&bbs)), (3, 1, 3));
        let results = support.start_actual_lrps(&bbs, &lrps, send).await.expect("answered one by one");
        assert_eq!((results.len(), *sent.lock().expect("sent"), singles(&bbs)), (3, 1, 6), "batch not tried again");

        *support.unimplemented_at() = Instant::now().checked_sub(RETRY_BATCH_AFTER);
        support.start_actual_lrps(&bbs, &lrps, send).await.expect("answered one by one");
        assert_eq!(*sent.lock().expect("sent"), 2, "tried again after a while");
    }

    #[test]
    fn a_short_answer_is_padded_with_retryable_errors_and_a_long_one_cut() {
        let padded = one_per_start(vec![Ok(())], 3);
        assert_eq!(padded.len(), 3);
        assert!(padded[0].is_ok());
        assert!(padded[1..].iter().all(|r| r.as_ref().is_err_and(|e| !crate::generator::is_definitive(e))));
        assert_eq!(one_per_start(vec![Ok(()), Ok(())], 1).len(), 1);
    }
}
