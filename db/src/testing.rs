//! Test harness (feature `testing`): a fresh, uniquely named database per test on any backend,
//! dropped when the test ends, even when it panics.
//!
//! - SQLite: always available, a file in the temp directory.
//! - PostgreSQL: when `DIEGO_TEST_POSTGRES_URL` names a server (any database on it; the harness
//!   creates `diego_test_<random>` next to it).
//! - MySQL / MariaDB: when `DIEGO_TEST_MYSQL_URL` does.
//!
//! When `DIEGO_TEST_REQUIRE_BACKENDS` is set (CI sets it), a missing URL fails the test instead
//! of skipping it, so a suite can never pass by not running.

pub mod fixtures;
pub mod inspect;
pub mod write_bench;

use crate::{Backend, Keyring, Store, StoreOptions};

/// The env var naming the PostgreSQL test server.
pub const POSTGRES_URL_VAR: &str = "DIEGO_TEST_POSTGRES_URL";
/// The env var naming the MySQL / MariaDB test server.
pub const MYSQL_URL_VAR: &str = "DIEGO_TEST_MYSQL_URL";
/// When set, every backend must be available.
pub const REQUIRE_VAR: &str = "DIEGO_TEST_REQUIRE_BACKENDS";

/// The label of [`test_keys`]' one key.
pub const TEST_KEY_LABEL: &str = "test-key";

/// The keyring of [`TestDb::create`]'s stores: one fixed key, [`TEST_KEY_LABEL`], active.
pub fn test_keys() -> Keyring {
    test_keyring(TEST_KEY_LABEL, &[TEST_KEY_LABEL])
}

/// A keyring whose `active` label encrypts and all of whose `labels` decrypt; each label's key
/// is derived from the label itself, so two keyrings naming a label agree on its key.
pub fn test_keyring(active: &str, labels: &[&str]) -> Keyring {
    match Keyring::new(active, labels.iter().map(|l| ((*l).to_owned(), test_key(l)))) {
        Ok(keys) => keys,
        Err(e) => panic!("test keyring: {e}"),
    }
}

/// The key [`test_keyring`] gives `label`: derived from the label itself.
fn test_key(label: &str) -> [u8; crate::crypto::KEY_LEN] {
    let mut key = [0u8; crate::crypto::KEY_LEN];
    for (i, byte) in label.bytes().cycle().take(key.len()).enumerate() {
        key[i] = byte.wrapping_add(i as u8);
    }
    key
}

/// A key file (the BBS's `label=<64 hex digits>` format) holding [`test_keys`], in the temp
/// directory, for a test that starts a whole BBS on a server database. Without one, the BBS
/// generates its key file in its data directory (the test's working directory, the crate's
/// source tree), and each BBS of one database must find the same keys there.
pub fn test_key_file() -> std::path::PathBuf {
    let hex: String = test_key(TEST_KEY_LABEL).iter().map(|b| format!("{b:02x}")).collect();
    let text = format!("active={TEST_KEY_LABEL}\n{TEST_KEY_LABEL}={hex}\n");
    let path = std::env::temp_dir().join("diego-rs-test.keys");
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return path;
    }
    // Written aside and renamed into place: a test reading it meanwhile sees the whole file.
    let aside = path.with_extension(format!("keys.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = std::fs::write(&aside, &text).and_then(|()| std::fs::rename(&aside, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&aside);
        panic!("test key file {}: {e}", path.display());
    }
    path
}

/// A database created for one test.
pub struct TestDb {
    /// The store on the test database (migrated).
    pub store: Store,
    /// The URL of the test database.
    pub url: String,
    backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Server { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh database on `backend`, or `None` (with a message on stderr) when the backend's
    /// URL is not configured. Panics when it is configured but unusable, or when
    /// `DIEGO_TEST_REQUIRE_BACKENDS` is set and it is not configured.
    /// The store encrypts with [`test_keys`], so every suite runs over sealed blobs.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        Self::create_with(backend, StoreOptions { keys: test_keys(), ..StoreOptions::default() }).await
    }

    /// Like [`TestDb::create`] with explicit store options.
    pub async fn create_with(backend: Backend, options: StoreOptions) -> Option<TestDb> {
        sqlx::any::install_default_drivers();
        let name = format!("diego_test_{}", uuid::Uuid::new_v4().simple());
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                (format!("sqlite://{}?mode=rwc", path.display()), Cleanup::File(path))
            }
            Backend::Postgres | Backend::Mysql => {
                let var = if backend == Backend::Postgres { POSTGRES_URL_VAR } else { MYSQL_URL_VAR };
                let admin_url = match std::env::var(var) {
                    Ok(url) if !url.is_empty() => url,
                    _ => {
                        assert!(
                            std::env::var_os(REQUIRE_VAR).is_none(),
                            "{var} is not set but {REQUIRE_VAR} requires the {} suite to run",
                            backend.name()
                        );
                        eprintln!("skipping {} test: {var} is not set", backend.name());
                        return None;
                    }
                };
                server_exec(&admin_url, &format!("CREATE DATABASE {name}")).await;
                (with_database(&admin_url, &name), Cleanup::Server { admin_url, name })
            }
        };
        let store = match Store::connect(&url, options).await {
            Ok(store) => store,
            Err(e) => panic!("cannot open test database {url}: {e}"),
        };
        Some(TestDb { store, url, backend, cleanup })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let store = self.store.clone();
        match &self.cleanup {
            Cleanup::File(path) => {
                let path = path.clone();
                // Closing the pool needs a runtime; do it on a helper thread so Drop works
                // inside and outside of one.
                let _ = std::thread::spawn(move || {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        rt.block_on(store.close());
                    }
                    // `.keys`: the key file a BBS generates next to its SQLite database.
                    for suffix in ["", "-wal", "-shm", ".keys"] {
                        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                    }
                })
                .join();
            }
            Cleanup::Server { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        rt.block_on(async {
                            store.close().await;
                            let drop_sql = if admin_url.starts_with("postgres") {
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                            } else {
                                format!("DROP DATABASE IF EXISTS {name}")
                            };
                            server_exec(&admin_url, &drop_sql).await;
                        });
                    }
                })
                .join();
            }
        }
    }
}

/// Runs one administrative statement on the server at `admin_url`.
async fn server_exec(admin_url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = match sqlx::AnyConnection::connect(admin_url).await {
        Ok(conn) => conn,
        Err(e) => panic!("cannot reach test database server {admin_url}: {e}"),
    };
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await {
        panic!("{sql} on {admin_url} failed: {e}");
    }
    let _ = conn.close().await;
}

/// `url` with its database path replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_replace_the_url_path() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("mysql://root@127.0.0.1:3306", "x"), "mysql://root@127.0.0.1:3306/x");
        assert_eq!(with_database("postgres://h/db?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
    }
}
