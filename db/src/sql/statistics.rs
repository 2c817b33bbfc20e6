//! The planner's statistics of the store's tables. The BBS's listings and lookups are planned
//! from them: a table PostgreSQL has never analyzed (a server with `autovacuum` off, or rows
//! written faster than autovacuum catches up) gets plans that sort on disk or walk the wrong
//! index (docs/performance.md, "The database's plans"). The convergence leader refreshes them
//! when the tables' sizes have changed a lot ([`statistics_stale`]).

use crate::{Backend, Error, Result, Store};

/// Smallest change in row count that makes statistics stale: below it, plans do not change.
const MIN_CHANGED_ROWS: usize = 1_000;

/// Whether statistics taken at `analyzed` rows are stale at `rows`: never taken (and the
/// tables hold more than a trivial number of rows), or the count moved by at least a tenth and
/// at least [`MIN_CHANGED_ROWS`].
pub fn statistics_stale(analyzed: Option<usize>, rows: usize) -> bool {
    let Some(analyzed) = analyzed else { return rows >= MIN_CHANGED_ROWS };
    let changed = rows.abs_diff(analyzed);
    changed >= MIN_CHANGED_ROWS && changed.saturating_mul(10) >= analyzed.max(1)
}

impl Store {
    /// Refreshes the planner's statistics of the LRP and task tables: `ANALYZE` on PostgreSQL,
    /// `PRAGMA optimize` on SQLite. MySQL's InnoDB recalculates its persistent statistics by
    /// itself, in the background, after a tenth of a table changed, so nothing is sent there.
    /// It can lag far behind a fast-growing table (a whole 20,000-LRP seeding with none on
    /// record), so the lookups by lists of keys do not depend on them
    /// ([`Backend::by_primary_key`](crate::Backend::by_primary_key)).
    pub async fn refresh_statistics(&self) -> Result<()> {
        let sql = match self.backend {
            Backend::Postgres => "ANALYZE desired_lrps, actual_lrps, tasks",
            Backend::Sqlite => "PRAGMA optimize",
            Backend::Mysql => return Ok(()),
        };
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| Error::from_sqlx("refresh statistics", "schema", "tables", e))
    }
}

#[cfg(test)]
mod tests {
    use super::statistics_stale;

    #[test]
    fn statistics_are_refreshed_when_the_tables_grew_or_shrank_by_a_tenth() {
        // Never taken: only once there is something to plan for.
        assert!(!statistics_stale(None, 999));
        assert!(statistics_stale(None, 1_000));
        // A tenth, and at least a thousand rows.
        assert!(!statistics_stale(Some(100_000), 109_999));
        assert!(statistics_stale(Some(100_000), 110_000));
        assert!(statistics_stale(Some(100_000), 90_000));
        assert!(!statistics_stale(Some(2_000), 2_900));
        assert!(statistics_stale(Some(2_000), 3_000));
        // Seeded from empty, then emptied again.
        assert!(statistics_stale(Some(0), 50_000));
        assert!(statistics_stale(Some(50_000), 0));
    }
}
