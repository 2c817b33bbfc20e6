//! `apply -f FILE [--prune] [--replace] [--dry-run] [--domain D]`: makes the cluster match a
//! state file (what `diego export` writes), as `kubectl apply` does: the file is read and checked
//! before connecting, the cluster is read, [`crate::plan::plan`] decides, and each step is
//! printed as a line of a diff (`+ lrp web`, `~ lrp api: instances 3 → 5`, `- lrp old`) once it
//! is done; `--dry-run` prints the same lines and changes nothing. Applying a file twice changes
//! nothing the second time.
//!
//! A desired LRP whose run info differs from the file's is left as it is (`! lrp ...`) and the
//! command exits 2 after the other steps, unless `--replace` removes it and desires it again
//! (its instances are all replaced at once). No capacity guard runs: apply restores a state.

use std::path::PathBuf;

use clap::Args;
use proto::pb::bbs::v1 as api;
use serde::Serialize;

use super::{export, validate};
use crate::client::Bbs;
use crate::error::Error;
use crate::output::{self, Format};
use crate::plan::{self, Options, Step};
use crate::state_file::{self, State};

/// `apply -f FILE [--prune] [--replace] [--dry-run] [--domain D]`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The state file, as `diego export` writes it (YAML, or JSON, which YAML reads too; a file
    /// named *.json is read as JSON); `-` reads standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Remove desired LRPs the file does not hold, within the file's domains (or --domain).
    #[arg(long)]
    pub prune: bool,
    /// Remove and desire again the LRPs whose run info differs from the file's (every instance
    /// is replaced at once) instead of leaving them as they are.
    #[arg(long)]
    pub replace: bool,
    /// Print what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply only this domain's entries of the file, and prune only this domain.
    #[arg(long, value_parser = validate::domain)]
    pub domain: Option<String>,
}

/// The JSON form of an apply's outcome.
#[derive(Debug, Serialize)]
struct Outcome {
    dry_run: bool,
    /// The diff lines of the steps carried out (with --dry-run: that would be).
    changes: Vec<String>,
    /// The diff lines of the LRPs left as they are.
    refused: Vec<String>,
}

/// Reads the state file before connecting: a bad file is a usage error even with no BBS.
pub fn load(args: &ApplyArgs) -> Result<State, Error> {
    state_file::load(&args.file)
}

/// Plans and (unless `--dry-run`) carries out the plan.
pub async fn apply(bbs: &Bbs, args: &ApplyArgs, file: &State, format: Format) -> Result<(), Error> {
    let current = export::current(bbs, args.domain.as_deref()).await?;
    let options = Options { prune: args.prune, replace: args.replace, domain: args.domain.clone() };
    let steps = plan::plan(&current, file, &options);
    let mut outcome = Outcome { dry_run: args.dry_run, changes: Vec::new(), refused: Vec::new() };
    for step in &steps {
        let line = step.line();
        if !step.changes_the_cluster() {
            outcome.refused.push(line.clone());
        } else if !args.dry_run {
            carry_out(bbs, step).await.map_err(|e| at_step(e, &line))?;
            outcome.changes.push(line.clone());
        } else {
            outcome.changes.push(line.clone());
        }
        if format == Format::Table {
            output::print(&line)?;
        }
    }
    match format {
        Format::Json => output::print_json(&outcome)?,
        Format::Table if steps.is_empty() => output::print("no changes: the cluster matches the file")?,
        Format::Table if args.dry_run => output::print("dry run: nothing was changed")?,
        Format::Table => {}
    }
    if outcome.refused.is_empty() {
        return Ok(());
    }
    Err(Error::ApplyRefused(format!(
        "{} desired lrp(s) left as they are: their run info differs from the file's, which needs a rolling \
         update (not supported yet); --replace removes and desires them again",
        outcome.refused.len()
    )))
}

/// Sends one step's requests.
async fn carry_out(bbs: &Bbs, step: &Step) -> Result<(), Error> {
    let desire = |lrp: &proto::pb::models::v1::DesiredLrp| api::DesireLrpRequest { desired_lrp: Some(lrp.clone()) };
    match step {
        Step::UpsertDomain { name, ttl, .. } => {
            bbs.unary(bbs.raw().upsert_domain(api::UpsertDomainRequest { domain: name.clone(), ttl: *ttl })).await?;
        }
        Step::DesireLrp(lrp) | Step::ReclaimLrp(lrp) => {
            bbs.unary(bbs.raw().desire_lrp(desire(lrp))).await?;
        }
        Step::UpdateLrp { guid, update, .. } => {
            let request = api::UpdateDesiredLrpRequest { process_guid: guid.clone(), update: Some((**update).clone()) };
            bbs.unary(bbs.raw().update_desired_lrp(request)).await?;
        }
        Step::ReplaceLrp { lrp, .. } => {
            let request = api::RemoveDesiredLrpRequest { process_guid: lrp.process_guid.clone() };
            bbs.unary(bbs.raw().remove_desired_lrp(request)).await?;
            bbs.unary(bbs.raw().desire_lrp(desire(lrp))).await?;
        }
        Step::RemoveLrp { guid } => {
            let request = api::RemoveDesiredLrpRequest { process_guid: guid.clone() };
            bbs.unary(bbs.raw().remove_desired_lrp(request)).await?;
        }
        Step::DesireTask(task) => {
            bbs.unary(bbs.raw().desire_task((**task).clone())).await?;
        }
        Step::RefuseLrp { .. } => {}
    }
    Ok(())
}

/// A refusal from the BBS, naming the step it refused (the steps before it were carried out;
/// applying the file again resumes).
fn at_step(error: Error, line: &str) -> Error {
    match error {
        Error::Refused { kind, message } => Error::Refused { kind, message: format!("{message} (at '{line}')") },
        other => other,
    }
}
