//! Versioned schema migrations, one directory per backend (`db/migrations/<backend>/NNNN_name.sql`)
//! with the same version numbers. Each migration is idempotent (`IF NOT EXISTS`), so two servers
//! starting at once cannot break each other, and is recorded in `diego_schema_migrations`. A
//! database whose recorded version is newer than the newest this build knows is refused: a
//! downgraded server must not write to a schema it does not understand.

use sqlx::AnyPool;

use crate::{Backend, Error, Result};

/// One schema migration.
struct Migration {
    version: i64,
    description: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    mysql: &'static str,
}

/// A [`Migration`] from its version, description and file stem: the same stem under each
/// backend's directory, so a backend's file cannot be left out or misnamed.
macro_rules! migration {
    ($version:expr, $description:expr, $stem:literal) => {
        Migration {
            version: $version,
            description: $description,
            sqlite: include_str!(concat!("../migrations/sqlite/", $stem, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $stem, ".sql")),
            mysql: include_str!(concat!("../migrations/mysql/", $stem, ".sql")),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "init", "0001_init"),
    // The label of the key each row's run info / task definition is encrypted under ('' for
    // rows written unencrypted), so the re-encryption pass finds the rows not under the active
    // key through an index instead of reading every blob.
    migration!(2, "key labels", "0002_key_labels"),
    // The paged listings filter on one column and order by the primary key. With an index on
    // the filter column alone, PostgreSQL sorted a domain's desired LRPs on disk when the table
    // had no statistics, and once it had them its generic plan for the per-cell page walked the
    // whole primary key filtering `cell_id` (docs/performance.md). An index on the filter
    // column followed by the key serves both in key order.
    migration!(3, "listing indexes", "0003_listing_indexes"),
    // A lease's holder (key, owner, term) as a unique index, so that on PostgreSQL a change of
    // owner or term is a key update: the fence's `FOR KEY SHARE` then blocks a steal or a release
    // but not the holder's renewal (`Backend::for_fence`).
    migration!(4, "lease holder key", "0004_lease_holder"),
    // No statement filters or orders actual LRPs by `state` or `since` alone, yet every insert
    // and every change of state wrote both indices (and kept the change from being a
    // heap-only update on PostgreSQL).
    migration!(5, "drop unused actual lrp indexes", "0005_unused_actual_lrp_indexes"),
    // PostgreSQL compressed and moved out of line every desired LRP row above 2 KiB; the sealed
    // run info does not compress, so each insert paid for a failed compression and a TOAST row
    // (seeding 250,000 LRPs: 9,350/s with it, 10,398/s without; docs/performance.md, tenth
    // round). A no-op elsewhere.
    migration!(6, "desired lrp rows kept whole", "0006_desired_lrps_inline"),
    // Route maps are written as protobuf blobs, where the JSON form escaped every quote of every
    // route and its readers unescaped them, the largest cost of the streamed scheduling infos
    // (docs/performance.md, eleventh round). Rows written before stay JSON and are read as they
    // are; the version is recorded so that an older build, which cannot read the new blobs,
    // refuses the database.
    migration!(7, "route maps stored as protobuf", "0007_routes_protobuf"),
];

/// Whether `err` says a statement's column or index exists already, or that an index it drops
/// is gone already: MySQL duplicate column (1060) or key name (1061) or no such key (1091; MySQL
/// has no `DROP INDEX IF EXISTS`), PostgreSQL duplicate column (42701) or relation (42P07),
/// SQLite "duplicate column name".
fn already_applied(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else { return false };
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1060 | 1061 | 1091);
    }
    matches!(db.code().as_deref(), Some("42701" | "42P07")) || db.message().contains("duplicate column name")
}

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const CREATE_VERSIONS: &str = "CREATE TABLE IF NOT EXISTS diego_schema_migrations (\
     version BIGINT NOT NULL PRIMARY KEY, description VARCHAR(255) NOT NULL, applied_at_ms BIGINT NOT NULL)";

/// The highest applied schema version, 0 on an empty database.
pub async fn current_version(pool: &AnyPool, backend: Backend) -> Result<i64> {
    let op = "read schema version";
    backend
        .query_scalar::<i64>("SELECT COALESCE(MAX(version), 0) FROM diego_schema_migrations")
        .fetch_one(pool)
        .await
        .map_err(|e| Error::from_sqlx(op, "schema", "diego_schema_migrations", e))
}

/// Brings the schema up to [`latest_version`], or refuses a newer one.
pub async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    let op = "migrate";
    let sql_err = |e| Error::from_sqlx(op, "schema", "migrations", e);
    sqlx::raw_sql(CREATE_VERSIONS).execute(pool).await.map_err(sql_err)?;
    let found = current_version(pool, backend).await?;
    if found > latest_version() {
        return Err(Error::SchemaTooNew { found, known: latest_version() });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        let script = match backend {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
            Backend::Mysql => migration.mysql,
        };
        for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            match sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned())).execute(pool).await {
                Ok(_) => {}
                // A concurrent starter added the column or index first (SQLite and MySQL have no
                // `ADD COLUMN IF NOT EXISTS`).
                Err(e) if already_applied(&e) => {}
                Err(e) => return Err(sql_err(e)),
            }
        }
        let record = format!(
            "INSERT INTO diego_schema_migrations (version, description, applied_at_ms) VALUES (?, ?, {now})",
            now = backend.now_ms_sql()
        );
        let inserted = backend.query(&record).bind(migration.version).bind(migration.description).execute(pool).await;
        match inserted {
            Ok(_) => {}
            // A concurrent starter recorded the same version first; the schema is the same.
            Err(e) if matches!(crate::error::classify(&e), crate::error::SqlClass::Duplicate) => {}
            Err(e) => return Err(sql_err(e)),
        }
        tracing::info!(
            version = migration.version,
            description = migration.description,
            backend = backend.name(),
            "applied schema migration"
        );
    }
    Ok(())
}
