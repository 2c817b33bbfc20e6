//! Checks of a whole action tree before any of its processes starts, so a container that could
//! never run fails once with a reason users can act on instead of failing at every spawn:
//!
//! - every run action's resolved command line and environment (the order of [`run::run_env`])
//!   must be accepted by `execve` (see [`crate::runtime::exec_limits`]);
//! - with a `max_pids`, the processes the tree starts at once must fit it: a parallel or
//!   codependent action starts all its children together, a serial one one at a time.

use proto::pb::models::v1 as pb;

use super::{StepContext, run};
use crate::runtime::exec_limits::{ExecLimits, check_exec};

/// The first run action in `action`'s tree whose process cannot be exec'd, as its reason.
pub fn check_exec_tree(ctx: &StepContext, action: &pb::Action, limits: ExecLimits) -> Result<(), String> {
    use pb::action::Action as A;
    match &action.action {
        None | Some(A::DownloadAction(_) | A::UploadAction(_)) => Ok(()),
        Some(A::RunAction(r)) => check_exec(&r.path, &r.args, &run::run_env(ctx, r), limits).map_err(|e| e.to_string()),
        Some(A::TimeoutAction(t)) => t.action.as_deref().map_or(Ok(()), |c| check_exec_tree(ctx, c, limits)),
        Some(A::TryAction(t)) => t.action.as_deref().map_or(Ok(()), |c| check_exec_tree(ctx, c, limits)),
        Some(A::EmitProgressAction(e)) => e.action.as_deref().map_or(Ok(()), |c| check_exec_tree(ctx, c, limits)),
        Some(A::ParallelAction(p)) => p.actions.iter().try_for_each(|c| check_exec_tree(ctx, c, limits)),
        Some(A::SerialAction(s)) => s.actions.iter().try_for_each(|c| check_exec_tree(ctx, c, limits)),
        Some(A::CodependentAction(c)) => c.actions.iter().try_for_each(|c| check_exec_tree(ctx, c, limits)),
    }
}

/// How many processes `action` runs at the same time at most: one per run action, summed over
/// parallel and codependent children, the largest child of a serial action.
pub fn concurrent_processes(action: &pb::Action) -> usize {
    use pb::action::Action as A;
    match &action.action {
        None | Some(A::DownloadAction(_) | A::UploadAction(_)) => 0,
        Some(A::RunAction(_)) => 1,
        Some(A::TimeoutAction(t)) => t.action.as_deref().map_or(0, concurrent_processes),
        Some(A::TryAction(t)) => t.action.as_deref().map_or(0, concurrent_processes),
        Some(A::EmitProgressAction(e)) => e.action.as_deref().map_or(0, concurrent_processes),
        Some(A::ParallelAction(p)) => p.actions.iter().map(concurrent_processes).sum(),
        Some(A::CodependentAction(c)) => c.actions.iter().map(concurrent_processes).sum(),
        Some(A::SerialAction(s)) => s.actions.iter().map(concurrent_processes).max().unwrap_or(0),
    }
}

/// Refuses `needed` processes at once in a container limited to `max_pids` (0 = unlimited).
pub fn check_pids(needed: usize, max_pids: i32) -> Result<(), String> {
    match usize::try_from(max_pids) {
        Ok(max) if max > 0 && needed > max => {
            Err(format!("refusing to start {needed} processes at once: more than max_pids {max_pids}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::build;

    #[test]
    fn concurrency_sums_parallel_children_and_takes_the_largest_serial_step() {
        let run = || build::run("/bin/true", &[]);
        assert_eq!(concurrent_processes(&run()), 1);
        assert_eq!(concurrent_processes(&build::parallel((0..200).map(|_| run()).collect())), 200);
        assert_eq!(concurrent_processes(&build::codependent(vec![run(), run()])), 2);
        let serial = build::serial(vec![run(), build::parallel(vec![run(), run(), run()]), run()]);
        assert_eq!(concurrent_processes(&serial), 3);
        let wrapped =
            build::timeout(build::try_(build::emit_progress(build::parallel(vec![run(), run()]), "", "", "")), 1);
        assert_eq!(concurrent_processes(&wrapped), 2);
        assert_eq!(concurrent_processes(&build::download("file:///x", "/tmp/x", None)), 0);
    }

    #[test]
    fn pids_beyond_the_limit_are_refused() {
        assert_eq!(check_pids(200, 0), Ok(()));
        assert_eq!(check_pids(10, 10), Ok(()));
        assert_eq!(check_pids(200, 10), Err("refusing to start 200 processes at once: more than max_pids 10".into()));
    }
}
