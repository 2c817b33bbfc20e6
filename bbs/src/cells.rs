//! Live cells: the presences reps keep in Locket (leases of type PRESENCE whose value is the
//! cell's [`CellPresence`] as JSON). Unexpired only, judged by database time.

use db::Store;
use db::sql::leases::{Lease, LeaseType};
use proto::models::CellPresence;

/// Every live cell; presences whose value cannot be parsed are skipped with a warning.
pub async fn live_cells(store: &Store) -> Result<Vec<CellPresence>, db::Error> {
    let leases = store.fetch_leases(LeaseType::Presence).await?;
    Ok(leases.iter().filter_map(parse_presence).collect())
}

/// The rep address of `cell_id`, if it is live.
pub async fn rep_address(store: &Store, cell_id: &str) -> Result<Option<String>, db::Error> {
    match store.fetch_lease(cell_id).await {
        Ok(lease) if lease.lease_type == LeaseType::Presence => Ok(parse_presence(&lease).map(|p| p.rep_address)),
        Ok(_) | Err(db::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses a presence lease's value.
pub fn parse_presence(lease: &Lease) -> Option<CellPresence> {
    match serde_json::from_str::<CellPresence>(&lease.value) {
        Ok(presence) => Some(presence),
        Err(e) => {
            tracing::warn!(cell_id = %lease.key, error = %e, "ignoring a cell presence that cannot be parsed");
            None
        }
    }
}
