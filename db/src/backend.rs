//! Which database a URL names, and the few places where the three dialects differ: placeholders,
//! row locks, the database clock, upserts. Every statement is written once with `?` placeholders;
//! [`Backend::sql`] rewrites them to `$1..$n` for PostgreSQL.

use sqlx::AssertSqlSafe;
use sqlx::any::{Any, AnyArguments};
use sqlx::query::{Query, QueryAs, QueryScalar};

use crate::Error;

/// A supported database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, the embedded default (a file in the data directory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 3] = [Self::Sqlite, Self::Postgres, Self::Mysql];

    /// The backend a database URL names, from its scheme.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::Mysql),
            _ => Err(Error::InvalidUrl {
                reason: format!("unsupported scheme {scheme:?}: use sqlite://, postgres:// or mysql://"),
            }),
        }
    }

    /// A short lowercase name (`sqlite`, `postgres`, `mysql`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }

    /// `sql` with its `?` placeholders in this backend's style.
    pub fn sql(self, sql: &str) -> String {
        match self {
            Self::Postgres => numbered_placeholders(sql),
            Self::Sqlite | Self::Mysql => sql.to_owned(),
        }
    }

    /// A query over `sql` (written with `?` placeholders).
    pub fn query(self, sql: &str) -> Query<'static, Any, AnyArguments> {
        sqlx::query(AssertSqlSafe(self.sql(sql)))
    }

    /// A query over `sql` with an `IN (...)` list of one placeholder per item (guids, keys):
    /// see [`Backend::keeps_prepared`].
    pub fn list_query(self, sql: &str) -> Query<'static, Any, AnyArguments> {
        self.query(sql).persistent(self.keeps_prepared(true))
    }

    /// A single-value [`Backend::list_query`].
    pub fn list_query_scalar<T>(self, sql: &str) -> QueryScalar<'static, Any, T, AnyArguments>
    where
        (T,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        self.query_scalar(sql).persistent(self.keeps_prepared(true))
    }

    /// The condition that `columns` (a key or a prefix of one) equal one of `n` tuples of
    /// placeholders, bound tuple after tuple, in the form each database both looks every tuple up
    /// in the index and plans in time linear in `n`. Run it with [`Backend::list_query`].
    ///
    /// - PostgreSQL: `(a, b) IN (SELECT * FROM (VALUES (?, ?), ...) AS keys)`, a semi-join. A
    ///   list of row values, or of `OR`ed equalities, becomes a `BitmapOr` of one index scan per
    ///   tuple, and planning that grows with the square of the list: 56 ms to plan 500 tuples
    ///   that then take 7 ms to run, against 0.7 ms to plan them as `VALUES` (measured;
    ///   docs/performance.md, ninth round).
    /// - SQLite: `(a = ? AND b = ?) OR ...`, one index search per tuple. The SQLite we link
    ///   searches for a list of row values too, but an older one (3.40, Debian 12's) scans the
    ///   whole table for it.
    /// - MySQL: `(a, b) IN ((?, ?), ...)`, a range over the index when the statement names its
    ///   table through [`Backend::by_primary_key`] (or is built by [`Backend::select_by_keys`] or
    ///   [`Backend::delete_by_keys`], which do).
    pub fn keys_in(self, columns: &[&str], n: usize) -> String {
        let tuple = format!("({})", placeholders(columns.len()));
        let names = columns.join(", ");
        match self {
            Self::Postgres => format!("({names}) IN (SELECT * FROM (VALUES {}) AS keys)", vec![tuple; n].join(", ")),
            Self::Mysql => format!("({names}) IN ({})", vec![tuple; n].join(", ")),
            Self::Sqlite => {
                let equal: Vec<String> = columns.iter().map(|c| format!("{c} = ?")).collect();
                vec![format!("({})", equal.join(" AND ")); n].join(" OR ")
            }
        }
    }

    /// `SELECT {columns} FROM {table}` of the rows whose `key` columns (the primary key or a
    /// prefix of it) equal one of `n` tuples of placeholders, bound tuple after tuple, each row
    /// locked `FOR UPDATE` when `lock`. It is kept prepared on every backend ([`Backend::query`]):
    /// the generic plan of the PostgreSQL form below is the same search per tuple (300 tuples
    /// against 250,000 rows: a nested loop of primary-key scans, 0.22 ms planned at bind and
    /// 1.0 ms run, where the unprepared statement was planned afresh each call: 0.3–0.7 ms), and
    /// planning it afresh was most of the gap a batch of claims left to raw SQL (0.47x against
    /// 0.63x, docs/performance.md, tenth round).
    ///
    /// On PostgreSQL every tuple is its own search of the index, in the order of the tuples (so
    /// rows are locked in the order the caller sorted them in), whatever the statistics say:
    /// `SELECT t.* FROM (VALUES ...) AS keys CROSS JOIN LATERAL (SELECT ... WHERE <key> =
    /// <tuple> OFFSET 0) AS t` (`OFFSET 0` keeps the planner from turning it into a join). As
    /// a condition ([`Backend::keys_in`]) the planner joined the tuples to a scan of the whole
    /// table below about 100,000 rows (its cost model prices an index search at four pages read
    /// from disk): 500 tuples against 50,000 rows took 15.9 ms that way, 3.0 ms searched
    /// (measured; docs/performance.md, ninth round). Elsewhere it is `WHERE <keys_in>`, on MySQL
    /// with the table named through [`Backend::by_primary_key`].
    pub fn select_by_keys(self, columns: &str, table: &str, key: &[&str], n: usize, lock: bool) -> String {
        let lock = if lock { self.for_update() } else { "" };
        match self {
            Self::Postgres => {
                let names: Vec<String> = (0..key.len()).map(|i| format!("k{i}")).collect();
                let tuple = format!("({})", placeholders(key.len()));
                let equal: Vec<String> = key.iter().zip(&names).map(|(c, k)| format!("{c} = keys.{k}")).collect();
                format!(
                    "SELECT t.* FROM (VALUES {}) AS keys ({}) CROSS JOIN LATERAL \
                     (SELECT {columns} FROM {table} WHERE {} OFFSET 0{lock}) AS t",
                    vec![tuple; n].join(", "),
                    names.join(", "),
                    equal.join(" AND ")
                )
            }
            Self::Sqlite | Self::Mysql => {
                format!("SELECT {columns} FROM {} WHERE {}{lock}", self.by_primary_key(table), self.keys_in(key, n))
            }
        }
    }

    /// `DELETE` of the rows of `table` whose `key` columns (the primary key or a prefix of it)
    /// equal one of `n` tuples of placeholders ([`Backend::keys_in`]), bound tuple after tuple. On
    /// MySQL in the multi-table form, the one that takes the index hint of
    /// [`Backend::by_primary_key`].
    pub fn delete_by_keys(self, table: &str, key: &[&str], n: usize) -> String {
        match self {
            Self::Mysql => format!("DELETE {table} FROM {} WHERE {}", self.by_primary_key(table), self.keys_in(key, n)),
            Self::Sqlite | Self::Postgres => format!("DELETE FROM {table} WHERE {}", self.keys_in(key, n)),
        }
    }

    /// `table` as a statement that finds its rows by a list of primary keys ([`Backend::keys_in`])
    /// names it. On MySQL that is `table FORCE INDEX (PRIMARY)`: for a list of more keys than
    /// `eq_range_index_dive_limit` (200) the optimizer estimates each key's rows from the
    /// index statistics, not from the index. InnoDB had not recounted `actual_lrps` at all
    /// during a seeding (no distinct keys on record while the table held 20,000 rows), so every
    /// key looked like the whole table and the list like many times it: each DesireLRPs batch
    /// read all of `actual_lrps` (a 100,000-LRP seeding read 9.7 million rows for nothing),
    /// each cell's StartActualLRPs read it with `FOR UPDATE`, which at REPEATABLE READ locks
    /// every row it reads, and so did the cells' re-asserts during the trials (measured with
    /// MariaDB 10.11's slow log and its plans; docs/performance.md, fifteenth round). With the
    /// hint the list is a range over the primary key whatever the statistics say.
    pub fn by_primary_key(self, table: &str) -> String {
        match self {
            Self::Mysql => format!("{table} FORCE INDEX (PRIMARY)"),
            Self::Sqlite | Self::Postgres => table.to_owned(),
        }
    }

    /// Whether a statement is kept prepared on its connection (`persistent`); `list`: it has an
    /// `IN (...)` list of placeholders. Every statement without a list is. One with a list is
    /// not on PostgreSQL: a kept statement gets a generic plan after five calls, made
    /// without the values, and for a long list that plan is often a scan that tests every row
    /// against every item (no hash, no index: 0.64 s for 500 guids against 50,000 rows where
    /// the primary key answers in 0.7 ms, measured; docs/performance.md, ninth round). It was
    /// most of DesireLRPs' time while a table grew. A statement that is not kept is planned for
    /// its values at each call: an index probe per item, or a scan with the list hashed. That
    /// costs one round trip more per statement. MySQL and SQLite plan every execution anyway.
    pub fn keeps_prepared(self, list: bool) -> bool {
        !list || self != Self::Postgres
    }

    /// A typed-row query over `sql` (written with `?` placeholders).
    pub fn query_as<T>(self, sql: &str) -> QueryAs<'static, Any, T, AnyArguments>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as(AssertSqlSafe(self.sql(sql)))
    }

    /// A single-value query over `sql` (written with `?` placeholders).
    pub fn query_scalar<T>(self, sql: &str) -> QueryScalar<'static, Any, T, AnyArguments>
    where
        (T,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_scalar(AssertSqlSafe(self.sql(sql)))
    }

    /// Suffix that locks the selected rows until the transaction ends. SQLite needs none: its
    /// write transactions start with `BEGIN IMMEDIATE` and so already exclude other writers.
    pub fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres | Self::Mysql => " FOR UPDATE",
        }
    }

    /// The lock a fenced write takes on its lease row before it commits ([`crate::Fence`]).
    /// On PostgreSQL, `FOR KEY SHARE`: it conflicts with a change of the row's owner or term (a
    /// steal, a release: both columns are in the `leases_holder` unique index, so changing them
    /// is a key update) but not with the holder's renewal, which changes only the expiry and the
    /// value. With `FOR SHARE`, a leader's renewal waited behind every fenced commit in flight,
    /// and under load (commits of seconds, a stream of new share lockers) it timed out twice and
    /// the leader stepped down. MySQL has no key-share lock: there it is the share lock.
    pub(crate) fn for_fence(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR KEY SHARE",
            Self::Mysql => " LOCK IN SHARE MODE",
        }
    }

    /// Suffix that share-locks the selected rows: a concurrent writer of those rows waits for us.
    pub fn for_share(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR SHARE",
            Self::Mysql => " LOCK IN SHARE MODE",
        }
    }

    /// An SQL expression for the database's clock in milliseconds since the Unix epoch. Leases
    /// use it so expiry never depends on host clocks agreeing.
    pub fn now_ms_sql(self) -> &'static str {
        match self {
            Self::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)",
            Self::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            Self::Mysql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
        }
    }

    /// The statement that opens a write transaction.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            // Take the write lock up front: a deferred transaction that reads and then writes can
            // fail with SQLITE_BUSY at the upgrade, where the busy timeout does not help.
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres | Self::Mysql => "BEGIN",
        }
    }
}

/// The file a `sqlite:` URL names (`sqlite://path`, `sqlite:path`, with or without `?options`);
/// `None` for in-memory databases.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Rewrites `?` to `$1, $2, ...`, leaving quoted literals and identifiers alone.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0u32;
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '?' => {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                }
                _ => out.push(c),
            },
        }
    }
    out
}

/// `?, ?, ?` with `n` placeholders, for `IN (...)` lists.
pub fn placeholders(n: usize) -> String {
    let mut out = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('?');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            Backend::Postgres.sql("SELECT '?' FROM t WHERE a = ? AND b = \"?\" AND c IN (?, ?)"),
            "SELECT '?' FROM t WHERE a = $1 AND b = \"?\" AND c IN ($2, $3)"
        );
        assert_eq!(Backend::Mysql.sql("a = ?"), "a = ?");
        assert_eq!(Backend::Sqlite.sql("a = ?"), "a = ?");
    }

    #[test]
    fn url_schemes_pick_the_backend() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::from_url("postgresql://h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::from_url("mariadb://h/db").unwrap(), Backend::Mysql);
        let err = Backend::from_url("oracle://h").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme \"oracle\""), "{err}");
        assert!(Backend::from_url("nothing").is_err());
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_path("sqlite:///tmp/x.db?mode=rwc"), Some("/tmp/x.db".into()));
        assert_eq!(sqlite_path("sqlite://data/bbs.db"), Some("data/bbs.db".into()));
        assert_eq!(sqlite_path("sqlite:bbs.db"), Some("bbs.db".into()));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    #[test]
    fn placeholder_lists_have_the_right_length() {
        assert_eq!(placeholders(0), "");
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
