//! `diego certs`: the cluster CA and the certificates it issues, as files ([`svc::certs`] makes
//! them). Nothing here talks to a BBS.
//!
//! - `diego certs init --dir D [--force]`: a new CA, `D/ca.pem` and `D/ca-key.pem`; refused when
//!   `D` already holds one, unless `--force`.
//! - `diego certs issue --dir D --role R [--name N] [--host H]... [--out DIR] [--days N]`: a key
//!   and certificate for `diego://R/N` signed by the CA in `D`, written as `<N>.pem` and
//!   `<N>-key.pem` (`<R>` for an unnamed bbs or auctioneer) in `DIR` (default `D`), replacing
//!   files already there (rotation); prints the two paths.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use svc::certs::{Ca, CertError, DEFAULT_VALIDITY_DAYS, Validity};
use svc::identity::{Identity, Role};

use crate::error::Error;
use crate::output::{Format, print, print_json};

/// `diego certs ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum CertsCommand {
    /// Create the cluster CA: DIR/ca.pem (every process trusts it) and DIR/ca-key.pem (0600).
    #[command(after_help = "Example: diego certs init --dir certs")]
    Init(InitArgs),
    /// Issue a key and certificate for one identity (diego://ROLE/NAME), signed by the CA in DIR.
    #[command(after_help = "Example: diego certs issue --dir certs --role cell --name cell-1 --host 10.0.0.5")]
    Issue(IssueArgs),
}

/// `diego certs init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The certificate directory (created, mode 0700, if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Replace a CA already in DIR. Certificates it issued stop verifying.
    #[arg(long)]
    pub force: bool,
}

/// `diego certs issue`.
#[derive(Debug, Clone, Args)]
pub struct IssueArgs {
    /// The directory holding the CA (ca.pem and ca-key.pem).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The identity's role: bbs, auctioneer, cell, operator or reader.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// The identity's name: the cell id for a cell, required for cell, operator and reader,
    /// optional for bbs and auctioneer.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// A DNS name or IP address the certificate is valid for (repeatable); servers need the
    /// names their clients dial.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Where to write the certificate and key (default: DIR). Existing files are replaced.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How many days the certificate is valid.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_VALIDITY_DAYS)]
    pub days: u32,
}

/// The files a command wrote, as `--json` prints them.
#[derive(Debug, Serialize)]
struct Written {
    cert: String,
    key: String,
}

/// Runs one `diego certs` command.
pub fn run(command: CertsCommand, format: Format) -> Result<(), Error> {
    match command {
        CertsCommand::Init(args) => init(&args, format),
        CertsCommand::Issue(args) => issue(&args, format),
    }
}

fn init(args: &InitArgs, format: Format) -> Result<(), Error> {
    let ca = Ca::generate()?;
    if args.force { ca.write(&args.dir) } else { ca.write_new(&args.dir) }?;
    let cert = args.dir.join(svc::certs::CA_CERT_FILE);
    let key = args.dir.join(svc::certs::CA_KEY_FILE);
    report(&cert, &key, format)
}

fn issue(args: &IssueArgs, format: Format) -> Result<(), Error> {
    let role: Role = args
        .role
        .parse()
        .map_err(|e: svc::identity::IdentityError| Error::InvalidFlag { flag: "--role", reason: e.to_string() })?;
    let identity = Identity::new(role, args.name.as_deref().unwrap_or_default())
        .map_err(|e| Error::InvalidFlag { flag: "--name", reason: e.to_string() })?;
    if args.days == 0 {
        return Err(Error::InvalidFlag {
            flag: "--days",
            reason: "a certificate must be valid for at least 1 day".into(),
        });
    }
    let ca = Ca::load(&args.dir)?;
    let issued = ca.issue(&identity, &args.hosts, Validity::Days(args.days))?;
    let out = args.out.as_deref().unwrap_or(&args.dir);
    let (cert, key) = issued.write(out, &svc::certs::file_stem(&identity))?;
    report(&cert, &key, format)
}

/// Prints the certificate's and the key's path, one per line (or as JSON).
fn report(cert: &Path, key: &Path, format: Format) -> Result<(), Error> {
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    match format {
        Format::Table => print(&format!("{cert}\n{key}")),
        Format::Json => print_json(&Written { cert, key }),
    }
}

impl From<CertError> for Error {
    fn from(error: CertError) -> Self {
        Error::Certs(error)
    }
}
