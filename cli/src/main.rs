//! `diego`: parses the command line, runs one subcommand on a single-threaded runtime, prints a
//! one-line error and exits with the code [`cli::error`] documents.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

svc::global_allocator!();

/// Operate a diego-rs cluster: desire and scale LRPs, run tasks, inspect cells and follow events.
#[derive(Debug, Parser)]
#[command(name = "diego", version, after_long_help = cli::AFTER_LONG_HELP)]
struct Cli {
    #[command(flatten)]
    global: cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The subcommands that talk to a BBS.
    #[command(flatten)]
    Bbs(cli::commands::BbsCommand),
    /// Start a whole cluster in this process: a BBS (SQLite), an auctioneer and N cells.
    Dev(cli::dev::DevArgs),
    /// Create the cluster CA and issue certificates for mutual TLS (files only; no BBS needed).
    #[command(subcommand)]
    Certs(cli::certs::CertsCommand),
    /// Run a command, or a shell on a terminal, inside a running instance (operators only).
    Ssh(cli::commands::ssh::SshArgs),
    /// Print a shell completion script: `diego completions bash > /etc/bash_completion.d/diego`.
    Completions(cli::commands::completions::CompletionsArgs),
}

fn main() -> ExitCode {
    svc::tune_memory();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Global flags a subcommand would silently ignore are refused, naming the flag.
    let ignored = match &cli.command {
        Command::Dev(_) => cli::DEV_IGNORES,
        Command::Certs(_) => cli::CERTS_IGNORE,
        Command::Completions(_) => cli::COMPLETIONS_IGNORE,
        Command::Bbs(_) | Command::Ssh(_) => &[],
    };
    if let Some((name, sub)) = matches.subcommand()
        && let Err(e) = cli::reject_given_flags(name, sub, ignored)
    {
        return fail(&e.to_string(), e.exit_code());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), 1),
    };
    // `diego ssh` exits with the remote command's exit code.
    if let Command::Ssh(args) = cli.command {
        return match runtime.block_on(cli::commands::ssh::run(args, &cli.global)) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(&e.to_string(), e.exit_code()),
        };
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bbs(command) => cli::commands::run(command, &cli.global).await,
            Command::Dev(args) => cli::dev::run(args, cli.global.insecure_plaintext).await,
            Command::Certs(command) => cli::certs::run(command, cli::output::Format::from_flag(cli.global.json)),
            Command::Completions(args) => cli::commands::completions::print(&args, &mut Cli::command()),
            // Run above, for its exit code.
            Command::Ssh(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string(), e.exit_code()),
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {message}");
    ExitCode::from(code)
}
