//! Domain commands: `domains` and `upsert-domain`.

use clap::Args;
use proto::pb::bbs::v1 as api;

use super::validate;
use crate::client::Bbs;
use crate::error::Error;
use crate::output::{self, Format, Table};

/// `upsert-domain NAME [--ttl SECONDS]`.
#[derive(Debug, Clone, Args)]
pub struct UpsertDomainArgs {
    /// The domain.
    #[arg(value_parser = validate::domain)]
    pub name: String,
    /// Seconds until the domain goes stale [0..=31622400, a year]; 0 means it never expires.
    #[arg(long, default_value_t = 0, value_name = "SECONDS", value_parser = validate::ttl, allow_negative_numbers = true)]
    pub ttl: u32,
}

/// Lists the fresh domains.
pub async fn list(bbs: &Bbs, format: Format) -> Result<(), Error> {
    let domains = super::export::domains(bbs).await?;
    if format == Format::Json {
        return output::print_json(&domains.into_iter().map(|(name, _)| name).collect::<Vec<_>>());
    }
    let mut table = Table::new(&["DOMAIN", "EXPIRES"]);
    for (domain, ttl) in domains {
        let expires = if ttl == 0 { "never".to_owned() } else { format!("in {ttl} s") };
        table.row(vec![domain, expires]);
    }
    output::print(&table.render())
}

/// Marks a domain fresh.
pub async fn upsert(bbs: &Bbs, args: &UpsertDomainArgs, format: Format) -> Result<(), Error> {
    bbs.unary(bbs.raw().upsert_domain(api::UpsertDomainRequest { domain: args.name.clone(), ttl: args.ttl })).await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({ "domain": args.name, "ttl": args.ttl })),
        Format::Table if args.ttl == 0 => output::print(&format!("domain {} is fresh and never expires", args.name)),
        Format::Table => output::print(&format!("domain {} is fresh for {} s", args.name, args.ttl)),
    }
}
