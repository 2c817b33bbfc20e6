//! The subcommands that talk to a BBS, one module per group, and [`run`], which validates local
//! input (files, flags) before connecting, so a bad file is reported as such (exit 2) even when
//! no BBS is running.

pub mod cells;
pub mod domains;
pub mod events;
pub mod lrp;
pub mod lrps;
pub mod tasks;

use clap::Subcommand;

use crate::GlobalArgs;
use crate::client::Bbs;
use crate::error::Error;
use crate::output::Format;

/// Every subcommand that talks to a BBS.
#[derive(Debug, Clone, Subcommand)]
pub enum BbsCommand {
    /// Desire an LRP from a JSON/YAML file (--file) or from flags (--guid, --command, ...).
    #[command(after_help = "Example: diego desire-lrp --guid web --command 'exec ./server' --instances 3 --port 8080")]
    DesireLrp(lrps::DesireLrpArgs),
    /// Change the number of instances of a desired LRP.
    Scale(lrps::ScaleArgs),
    /// Remove a desired LRP; its instances are stopped.
    RemoveLrp(lrps::LrpGuidArg),
    /// Stop one instance; convergence starts a replacement while the LRP is desired.
    Retire(lrps::RetireArgs),
    /// List desired LRPs with running/desired instance counts.
    Lrps(lrps::ListArgs),
    /// Show a desired LRP, its indices per state, and each instance's state, cell, address,
    /// crashes and errors (the first 100 instances; --all shows every one).
    Lrp(lrp::ShowArgs),
    /// Desire a one-off task running a shell command.
    DesireTask(tasks::DesireTaskArgs),
    /// List tasks.
    Tasks(tasks::ListArgs),
    /// Show one task.
    Task(tasks::TaskGuidArg),
    /// Cancel a task.
    CancelTask(tasks::TaskGuidArg),
    /// List live cells with capacity and use (memory, disk, containers).
    Cells,
    /// List fresh domains.
    Domains,
    /// Mark a domain fresh, optionally for a limited time.
    UpsertDomain(domains::UpsertDomainArgs),
    /// Follow the event stream, one line per event (LRP events, or task events with --tasks).
    Events(events::EventsArgs),
}

/// Runs one command against the BBS named by `global`.
pub async fn run(command: BbsCommand, global: &GlobalArgs) -> Result<(), Error> {
    let format = Format::from_flag(global.json);
    // Requests built from local input are built before connecting: a bad file or flag is
    // refused (exit 2) even when no BBS is running.
    let connect = || async { Bbs::connect(&global.bbs_address, crate::client::security(global)?).await };
    match command {
        BbsCommand::DesireLrp(args) => {
            let lrp = args.build()?;
            lrps::desire(&connect().await?, lrp, format).await
        }
        BbsCommand::Scale(args) => lrps::scale(&connect().await?, &args, format).await,
        BbsCommand::RemoveLrp(args) => lrps::remove(&connect().await?, &args, format).await,
        BbsCommand::Retire(args) => lrps::retire(&connect().await?, &args, format).await,
        BbsCommand::Lrps(args) => lrps::list(&connect().await?, &args, format).await,
        BbsCommand::Lrp(args) => lrp::show(&connect().await?, &args, format).await,
        BbsCommand::DesireTask(args) => {
            let request = args.build()?;
            tasks::desire(&connect().await?, request, format).await
        }
        BbsCommand::Tasks(args) => tasks::list(&connect().await?, &args, format).await,
        BbsCommand::Task(args) => tasks::show(&connect().await?, &args, format).await,
        BbsCommand::CancelTask(args) => tasks::cancel(&connect().await?, &args, format).await,
        BbsCommand::Cells => cells::list(&connect().await?, format).await,
        BbsCommand::Domains => domains::list(&connect().await?, format).await,
        BbsCommand::UpsertDomain(args) => domains::upsert(&connect().await?, &args, format).await,
        BbsCommand::Events(args) => events::follow(&connect().await?, &args, format).await,
    }
}
