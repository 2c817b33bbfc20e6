//! The subcommands that talk to a BBS, one module per group, and [`run`], which validates local
//! input (files, flags) before connecting, so a bad file is reported as such (exit 2) even when
//! no BBS is running.

pub mod apply;
pub mod capacity;
pub mod cells;
pub mod completions;
pub mod domains;
pub mod events;
pub mod export;
pub mod logs;
pub mod lrp;
pub mod lrps;
pub mod ssh;
pub mod status;
pub mod tasks;
pub mod update;
pub mod validate;

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
    /// Change a desired LRP in place: instances, routes, annotation (run info changes need a
    /// rolling update and are refused).
    #[command(after_help = "Example: diego update-lrp web --instances 5 --route web.example.com:8080")]
    UpdateLrp(update::UpdateLrpArgs),
    /// Remove a desired LRP; its instances are stopped.
    RemoveLrp(lrps::LrpGuidArg),
    /// Stop one instance; convergence starts a replacement while the LRP is desired.
    Retire(lrps::RetireArgs),
    /// List desired LRPs with running/desired instance counts.
    Lrps(lrps::ListArgs),
    /// Show a desired LRP, its indices per state, and each instance's state, cell, address,
    /// crashes and errors (the first 100 instances; --all shows every one).
    Lrp(lrp::ShowArgs),
    /// Print an LRP's (or with --task a task's) application logs from the cells; -f follows.
    #[command(after_help = "Example: diego logs web --index 0 --recent=20 -f")]
    Logs(logs::LogsArgs),
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
    /// One screen on the cluster: BBS leader, auctioneer, cells, LRPs, tasks, placement errors.
    Status(status::StatusArgs),
    /// Print every desired LRP, fresh domain and pending task as one YAML document (JSON with
    /// --json), the state file `diego apply -f` reads.
    #[command(after_help = "Example: diego export > state.yaml")]
    Export(export::ExportArgs),
    /// Make the cluster match a state file (from `diego export`): desire what is missing, update
    /// what differs, remove the rest with --prune; prints a diff (+ added, ~ updated, - removed).
    #[command(after_help = "Example: diego apply -f state.yaml --prune --dry-run")]
    Apply(apply::ApplyArgs),
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
            let bbs = connect().await?;
            let need = capacity::Need { memory_mb: i64::from(lrp.memory_mb), disk_mb: i64::from(lrp.disk_mb) };
            let warning = capacity::guard(&bbs, &lrp.process_guid, need, lrp.instances, args.force).await?;
            lrps::desire(&bbs, lrp, format).await?;
            capacity::warn(warning);
            Ok(())
        }
        BbsCommand::Scale(args) => {
            let bbs = connect().await?;
            let need = capacity::need_of(&bbs, &args.guid).await?;
            let warning = capacity::guard(&bbs, &args.guid, need, args.instances, args.force).await?;
            lrps::scale(&bbs, &args, format).await?;
            capacity::warn(warning);
            Ok(())
        }
        BbsCommand::UpdateLrp(args) => {
            let file = update::load(&args)?;
            update::update(&connect().await?, &args, file, format).await
        }
        BbsCommand::RemoveLrp(args) => lrps::remove(&connect().await?, &args, format).await,
        BbsCommand::Retire(args) => lrps::retire(&connect().await?, &args, format).await,
        BbsCommand::Lrps(args) => lrps::list(&connect().await?, &args, format).await,
        BbsCommand::Lrp(args) => lrp::show(&connect().await?, &args, format).await,
        BbsCommand::Logs(args) => {
            let security = crate::client::security(global)?;
            let bbs = Bbs::connect(&global.bbs_address, security.clone()).await?;
            logs::run(&bbs, security, &args, format).await
        }
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
        BbsCommand::Status(args) => status::show(&connect().await?, &args, format).await,
        BbsCommand::Export(args) => export::export(&connect().await?, &args, format).await,
        BbsCommand::Apply(args) => {
            let file = apply::load(&args)?;
            apply::apply(&connect().await?, &args, &file, format).await
        }
    }
}
