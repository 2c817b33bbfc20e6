//! `diego ssh GUID[/INDEX] [-t|-T] [-- COMMAND...]`: a command, or an interactive shell on a
//! terminal, inside a running instance (issue 18).
//!
//! The BBS says where the instance runs (its running actual LRP's cell) and where that cell's
//! rep listens (the cell presence); the CLI then calls the rep's `Exec/Run` with its own TLS
//! identity (operators only), pipes its standard streams through ([`session`]) and exits with
//! the command's exit code. With no command and a terminal on standard input it asks for a
//! terminal and puts the local one in raw mode, restored on every way out ([`terminal`]).

pub mod session;
pub mod terminal;

use std::time::Duration;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1::{ExecStart, TerminalSize};
use svc::connect::ChannelOptions;
use svc::identity::Role;
use tonic::transport::Channel;

use crate::GlobalArgs;
use crate::client::Bbs;
use crate::error::Error;

/// How long connecting to the rep may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `diego ssh`'s arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  diego ssh web            # a shell in index 0 of web\n  \
                        diego ssh web/2 -- cat /proc/1/cmdline\n  echo hi | diego ssh web -- cat")]
pub struct SshArgs {
    /// The desired LRP's process guid, and optionally `/INDEX` (default 0).
    pub target: String,
    /// Ask for a terminal (default: when no command is given and standard input is a terminal).
    #[arg(short = 't', long = "tty", conflicts_with = "no_tty")]
    pub tty: bool,
    /// Never ask for a terminal.
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,
    /// The command and its arguments, after `--`; the container's shell when none.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Splits `GUID[/INDEX]`.
pub fn parse_target(target: &str) -> Result<(String, i32), Error> {
    let invalid = |reason: String| Error::InvalidFlag { flag: "GUID[/INDEX]", reason };
    let (guid, index) = match target.rsplit_once('/') {
        Some((guid, index)) => {
            let index = index.parse::<i32>().ok().filter(|i| *i >= 0);
            let index = index.ok_or_else(|| invalid(format!("{target:?}: the index must be a number from 0")))?;
            (guid, index)
        }
        None => (target, 0),
    };
    if guid.is_empty() {
        return Err(invalid(format!("{target:?}: name a process guid")));
    }
    Ok((guid.to_owned(), index))
}

/// Where an instance runs: its cell's rep address and its instance guid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The rep's gRPC address (`host:port`).
    pub rep_address: String,
    /// The cell.
    pub cell_id: String,
    /// The instance (container) guid.
    pub instance_guid: String,
}

fn not_found(message: String) -> Error {
    Error::Refused { kind: "ResourceNotFound".into(), message }
}

/// Finds the running instance `guid/index` and its cell's rep, through the BBS.
pub async fn locate(bbs: &Bbs, guid: &str, index: i32) -> Result<Located, Error> {
    let request = api::ActualLrPsRequest { process_guid: guid.to_owned(), index: Some(index), ..Default::default() };
    let instances = bbs.all(request, |mut c, r| async move { c.actual_lr_ps(r).await }).await?;
    let running = instances
        .iter()
        .find(|a| a.state == pb::ActualLrpState::Running as i32 && a.presence == pb::Presence::Ordinary as i32);
    let running = running.or_else(|| instances.iter().find(|a| a.state == pb::ActualLrpState::Running as i32));
    let Some(instance) = running else {
        let desired = bbs
            .unary(
                bbs.raw()
                    .desired_lrp_by_process_guid(api::DesiredLrpByProcessGuidRequest { process_guid: guid.to_owned() }),
            )
            .await;
        return Err(match desired {
            Err(Error::Refused { kind, .. }) if kind == "ResourceNotFound" => {
                not_found(format!("no desired lrp {guid:?}; see 'diego lrps'"))
            }
            Err(other) => other,
            Ok(_) => {
                let state = instances.first().map_or("not started", |a| state_name(a.state));
                not_found(format!("index {index} of {guid} is not running ({state}); see 'diego lrp {guid}'"))
            }
        });
    };
    let key = instance.actual_lrp_instance_key.clone().unwrap_or_default();
    let cells = bbs.all(api::CellsRequest::default(), |mut c, r| async move { c.cells(r).await }).await?;
    let cell = cells.iter().find(|c| c.cell_id == key.cell_id);
    let cell = cell.ok_or_else(|| Error::Refused {
        kind: "Unavailable".into(),
        message: format!("cell {} of {guid}/{index} has no presence", key.cell_id),
    })?;
    Ok(Located { rep_address: cell.rep_address.clone(), cell_id: key.cell_id, instance_guid: key.instance_guid })
}

fn state_name(state: i32) -> &'static str {
    match pb::ActualLrpState::try_from(state) {
        Ok(pb::ActualLrpState::Unclaimed) => "unclaimed",
        Ok(pb::ActualLrpState::Claimed) => "claimed",
        Ok(pb::ActualLrpState::Running) => "running",
        Ok(pb::ActualLrpState::Crashed) => "crashed",
        _ => "unknown",
    }
}

/// A channel to the rep at `address`, checked to be a cell, with `security`.
pub async fn connect_rep(address: &str, security: svc::tls::Security) -> Result<Channel, Error> {
    let options = ChannelOptions { timeout: None, ..ChannelOptions::new(CONNECT_TIMEOUT, security) }.expect(Role::Cell);
    svc::connect::connect(address, &options).await.map_err(|e| Error::Refused {
        kind: "Unavailable".into(),
        message: format!("cannot reach the cell's rep at {address}: {}", crate::error::root_cause(&e)),
    })
}

/// Runs `diego ssh`; the command's exit code.
pub async fn run(args: SshArgs, global: &GlobalArgs) -> Result<u8, Error> {
    let (guid, index) = parse_target(&args.target)?;
    let security = crate::client::security(global)?;
    let bbs = Bbs::connect(&global.bbs_address, security.clone()).await?;
    let located = locate(&bbs, &guid, index).await?;
    let tty = args.tty || (!args.no_tty && args.command.is_empty() && terminal::stdin_is_terminal());
    let start = ExecStart {
        process_guid: guid,
        index,
        instance_guid: located.instance_guid.clone(),
        command: args.command,
        tty,
        size: terminal::size().map(|(columns, rows)| TerminalSize { columns: columns.into(), rows: rows.into() }),
        term: std::env::var("TERM").unwrap_or_default(),
    };
    let channel = connect_rep(&located.rep_address, security).await?;
    // Raw mode only while the session runs; the guard restores the terminal on every return.
    let raw = if tty { terminal::RawMode::enter() } else { None };
    let resizes = if tty { terminal::resizes() } else { None };
    let stdin = session::stdin_chunks();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let code = session::exec(channel, &located.rep_address, start, stdin, resizes, &mut stdout, &mut stderr).await;
    drop(raw);
    Ok(exit_byte(code?))
}

/// A remote exit code as a process exit code: 0-255 as is, anything else 255.
pub fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_a_guid_and_an_optional_index() {
        assert_eq!(parse_target("web").unwrap(), ("web".to_owned(), 0));
        assert_eq!(parse_target("web/3").unwrap(), ("web".to_owned(), 3));
        assert!(parse_target("web/x").is_err());
        assert!(parse_target("web/-1").is_err());
        assert!(parse_target("/1").is_err());
        assert!(parse_target("").is_err());
    }

    #[test]
    fn exit_codes_fit_a_byte() {
        assert_eq!(exit_byte(0), 0);
        assert_eq!(exit_byte(137), 137);
        assert_eq!(exit_byte(-1), 255);
        assert_eq!(exit_byte(300), 255);
    }
}
