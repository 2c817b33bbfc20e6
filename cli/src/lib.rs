//! The `diego` CLI: operator commands that talk to a BBS (desire, scale, list, events, tasks,
//! cells, domains), and `diego dev` (a whole cluster in one process, wired by its own module).
//!
//! - [`commands`]: the clap subcommands and their implementations, one module per group.
//! - [`client`]: the one connector to a BBS and the classification of failures.
//! - [`error`]: the error type and the exit codes scripts rely on.
//! - [`lrp_file`]: the JSON/YAML desired LRP file format.
//! - [`task_file`]: the JSON/YAML task file format of `desire-task --file`.
//! - [`state_file`]: the cluster state file of `diego export` and `diego apply -f`.
//! - [`plan`]: `diego apply`'s pure planner (the cluster and a state file in, steps out).
//! - [`certs`]: `diego certs init` and `diego certs issue`, the cluster CA and its certificates.
//! - [`output`] and [`views`]: tables for people, JSON for scripts.
//!
//! The binary `diego-demo-app` (`src/bin/diego-demo-app.rs`) is the demo program a cluster runs.

pub mod certs;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod demo_rootfs;
pub mod dev;
pub mod error;
pub mod lrp_file;
pub mod output;
pub mod plan;
pub mod state_file;
pub mod task_file;
pub mod views;

use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::error::Error;

/// The BBS address used when neither `--bbs-address` nor `DIEGO_BBS_ADDRESS` is set.
pub const DEFAULT_BBS_ADDRESS: &str = "127.0.0.1:8889";

/// The long help's closing text: the environment and the exit codes.
pub const AFTER_LONG_HELP: &str = "\
Environment:
  DIEGO_BBS_ADDRESS   the BBS address (host:port) when --bbs-address is not given
  DIEGO_TLS_CA, DIEGO_TLS_CERT, DIEGO_TLS_KEY
                      the cluster CA and this operator's certificate and key (PEM)
                      when --tls-ca, --tls-cert, --tls-key are not given; with none,
                      the files of a 'diego dev' run here are used (.diego-dev/tls/)

Exit codes:
  0  success
  1  the BBS refused the request; the Diego error type and message are printed,
     e.g. 'error: ResourceNotFound: desired lrp not found: nope'
  2  usage or invalid input: an unknown flag, a flag out of its range (the error
     names the flag), an unreadable, unwritable or invalid file (the error names
     the field), a malformed --bbs-address, a missing CA, a flag the subcommand
     does not use, more instances than the cluster can hold (unless --force), a
     change that needs a rolling update
  3  the BBS is unreachable, did not answer in time, or ended an event stream

Errors are one line on standard error, starting with 'error:'.";

/// Options every subcommand accepts (before or after the subcommand name).
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// The BBS gRPC address, host:port.
    #[arg(
        long,
        visible_alias = "bbs-url",
        env = "DIEGO_BBS_ADDRESS",
        default_value = DEFAULT_BBS_ADDRESS,
        global = true,
        value_name = "ADDR"
    )]
    pub bbs_address: String,
    /// Print JSON for scripts instead of tables (one object per line for `events`).
    #[arg(long, global = true)]
    pub json: bool,
    /// The cluster CA (PEM) [default: .diego-dev/tls/ca.pem, as `diego dev` made it here].
    #[arg(long, env = "DIEGO_TLS_CA", global = true, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// This operator's certificate (PEM) [default: .diego-dev/tls/operator.pem].
    #[arg(long, env = "DIEGO_TLS_CERT", global = true, value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// This operator's private key (PEM) [default: .diego-dev/tls/operator-key.pem].
    #[arg(long, env = "DIEGO_TLS_KEY", global = true, value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Plaintext gRPC with no certificate (a BBS run with --insecure-plaintext; `diego dev
    /// --insecure-plaintext` runs one). For experiments only.
    #[arg(long, global = true)]
    pub insecure_plaintext: bool,
}

/// A global flag: its clap id and how it is spelt.
pub type GlobalFlag = (&'static str, &'static str);

/// The global flags `diego dev` does not use: it starts its own cluster and prints no JSON.
pub const DEV_IGNORES: &[GlobalFlag] = &[
    ("bbs_address", "--bbs-address"),
    ("json", "--json"),
    ("tls_ca", "--tls-ca"),
    ("tls_cert", "--tls-cert"),
    ("tls_key", "--tls-key"),
];

/// The global flags `diego certs` does not use: it writes files and talks to no BBS.
pub const CERTS_IGNORE: &[GlobalFlag] = &[
    ("bbs_address", "--bbs-address"),
    ("tls_ca", "--tls-ca"),
    ("tls_cert", "--tls-cert"),
    ("tls_key", "--tls-key"),
    ("insecure_plaintext", "--insecure-plaintext"),
];

/// The global flags `diego completions` does not use: all of them.
pub const COMPLETIONS_IGNORE: &[GlobalFlag] = &[
    ("bbs_address", "--bbs-address"),
    ("json", "--json"),
    ("tls_ca", "--tls-ca"),
    ("tls_cert", "--tls-cert"),
    ("tls_key", "--tls-key"),
    ("insecure_plaintext", "--insecure-plaintext"),
];

/// Refuses the flags of `ignored` that were given on the command line of `subcommand` (`sub`
/// are its matches, where global flags land): values from the environment or defaults are not
/// the user's choice for this command and pass.
pub fn reject_given_flags(subcommand: &str, sub: &ArgMatches, ignored: &[GlobalFlag]) -> Result<(), Error> {
    for (id, flag) in ignored {
        if sub.value_source(id) == Some(ValueSource::CommandLine) {
            return Err(Error::InvalidFlag {
                flag,
                reason: format!("'diego {subcommand}' does not use it; leave it out"),
            });
        }
    }
    Ok(())
}
