//! Encryption at rest for the BBS (docs/security.md, "Encryption at rest"): where the keys come
//! from, and the leader's background pass that re-encrypts rows not under the active key.
//!
//! Keys come from, in this order: the file `encryption_keys_file`; the environment variable
//! [`KEYS_ENV`]; or, when neither is set, a key file the BBS generates on first start (mode
//! 0600) next to its SQLite database (`<database file>.keys`), or `<data_dir>/bbs.keys` for
//! PostgreSQL and MySQL. Never from the database. The text format (file and variable alike):
//!
//! ```text
//! # comments and blank lines are ignored; in the variable, ',' and ';' also separate entries
//! active=key-2026        # optional: the label new rows are encrypted under (default: the first key)
//! key-2026=<64 hex digits: 256-bit key>
//! key-2025=<64 hex digits>   # older keys: still decrypt, and their rows are re-encrypted
//! diego-key=passphrase:<text> # a Diego passphrase: the key is its SHA-256 (no '#'; in the
//!                             # variable, no ',' or ';' either)
//! ```
//!
//! The re-encryption pass ([`spawn_reencryption`]) runs while this BBS leads: it re-seals the
//! rows not under the active key a bounded batch per transaction, pausing between batches, and
//! reports progress as metrics and log lines. It is resumable by construction: a new pass finds
//! the rows still left through their `key_label` column.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use db::crypto::{KEY_LEN, generate_key, passphrase_key, validate_label};
use db::sql::encryption::SealedTable;
use db::{Keyring, Store};
use tokio_util::sync::CancellationToken;

use crate::config::BbsConfig;
use crate::leader::Leadership;

/// The environment variable that may hold the keys (same format as the key file).
pub const KEYS_ENV: &str = "DIEGO_ENCRYPTION_KEYS";

/// How long after a finished pass the leader looks again for rows not under the active key
/// (rows a standby with older keys might have written during a rolling deploy).
const RECHECK_INTERVAL: Duration = Duration::from_secs(300);

/// Where the keys in use came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The configured key file.
    File(PathBuf),
    /// The [`KEYS_ENV`] variable.
    Env,
    /// The key file this BBS generated (now or on an earlier start).
    Generated(PathBuf),
}

/// Parses the key text: `label=<hex key>` entries and an optional `active=<label>`, separated by
/// newlines (and, when `separators_too`, by `,` or `;`). Returns the keyring, or why not.
pub fn parse_keys(text: &str, separators_too: bool, override_active: &str) -> Result<Keyring, String> {
    let mut active = None;
    let mut keys = Vec::new();
    let entries = text.split(|c| c == '\n' || (separators_too && (c == ',' || c == ';')));
    for (n, entry) in entries.enumerate() {
        let entry = entry.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let (name, value) =
            entry.split_once('=').ok_or_else(|| format!("entry {}: expected label=<hex key>", n + 1))?;
        let (name, value) = (name.trim(), value.trim());
        if name == "active" {
            active = Some(value.to_owned());
            continue;
        }
        validate_label(name).map_err(|e| e.to_string())?;
        let key = match value.strip_prefix("passphrase:") {
            Some(passphrase) if !passphrase.is_empty() => passphrase_key(passphrase),
            Some(_) => return Err(format!("key {name:?}: empty passphrase")),
            None => decode_hex_key(value).map_err(|reason| format!("key {name:?}: {reason}"))?,
        };
        keys.push((name.to_owned(), key));
    }
    let active = if override_active.is_empty() { active } else { Some(override_active.to_owned()) };
    let active = active.or_else(|| keys.first().map(|(label, _)| label.clone())).ok_or("no keys given")?;
    Keyring::new(&active, keys).map_err(|e| e.to_string())
}

/// A 256-bit key from 64 hex digits.
fn decode_hex_key(hex: &str) -> Result<[u8; KEY_LEN], String> {
    if hex.len() != KEY_LEN * 2 || !hex.is_ascii() {
        return Err(format!("must be {} hex digits (a 256-bit key)", KEY_LEN * 2));
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| "is not hex".to_owned())?;
    }
    Ok(key)
}

/// The text of a generated key file holding one key, `label`.
fn key_file_text(label: &str, key: &[u8; KEY_LEN]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "# diego-rs BBS encryption keys, generated on first start. Keep this file secret and backed\n\
         # up: rows encrypted under a key cannot be read without it. Every BBS of one database needs\n\
         # the same keys. Format: label=<64 hex digits>; active=<label> names the key new rows use.\n\
         active={label}\n{label}={hex}\n"
    )
}

/// Where the generated key file of `config` lives: next to its SQLite database, else in its
/// data directory.
pub fn default_key_file(config: &BbsConfig) -> PathBuf {
    match db::backend::sqlite_path(&config.effective_database_url()) {
        Some(database) => PathBuf::from(format!("{}.keys", database.display())),
        None => config.data_dir.join("bbs.keys"),
    }
}

/// The keyring `config` names: from its key file, else from `env` (the value of [`KEYS_ENV`]),
/// else from the generated key file, which is created (mode 0600) when it does not exist.
pub fn load_keys(config: &BbsConfig, env: Option<&str>) -> Result<(Keyring, KeySource), String> {
    let active = config.encryption_active_key_label.as_str();
    if !config.encryption_keys_file.as_os_str().is_empty() {
        let path = &config.encryption_keys_file;
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let keys = parse_keys(&text, false, active).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok((keys, KeySource::File(path.clone())));
    }
    if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
        let keys = parse_keys(text, true, active).map_err(|e| format!("{KEYS_ENV}: {e}"))?;
        return Ok((keys, KeySource::Env));
    }
    let path = default_key_file(config);
    let text = read_or_generate(&path)?;
    let keys = parse_keys(&text, false, active).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((keys, KeySource::Generated(path)))
}

/// The text of the key file `path`, generating it first when it does not exist. Two BBS
/// starting at once agree: the file appears whole (written aside, then linked into place) and
/// the one that loses the race reads the winner's.
fn read_or_generate(path: &Path) -> Result<String, String> {
    let io = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let label = format!("generated-{}", &id[..8]);
    let aside = PathBuf::from(format!("{}.{id}.tmp", path.display()));
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    let written = file.open(&aside).and_then(|mut f| {
        std::io::Write::write_all(&mut f, key_file_text(&label, &generate_key()).as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => {
            tracing::warn!(
                path = %path.display(),
                label,
                "generated an encryption key file: back it up, and give every BBS of this database the same keys"
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("write", e)),
    }
    std::fs::read_to_string(path).map_err(|e| io("read", e))
}

/// The background re-encryption settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReencryptOptions {
    /// Rows per transaction.
    pub batch_size: usize,
    /// Pause between two batches.
    pub pause: Duration,
    /// How long after a finished pass to look again.
    pub recheck: Duration,
}

impl ReencryptOptions {
    /// The settings of `config`.
    pub fn from_config(config: &BbsConfig) -> Self {
        Self {
            batch_size: config.encryption_batch_size,
            pause: config.encryption_batch_pause,
            recheck: RECHECK_INTERVAL,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Rows re-sealed under the active key.
    pub resealed: u64,
    /// Rows left that this BBS cannot re-seal (their key is unknown to it).
    pub unreadable: u64,
    /// Whether the pass went through every table (false: leadership lost, stopped, or a
    /// database error; the next pass resumes).
    pub complete: bool,
}

/// Runs [`reencrypt_pass`] whenever this BBS becomes the leader and every `recheck` while it
/// leads, until `stop`.
pub fn spawn_reencryption(
    leadership: Arc<Leadership>,
    options: ReencryptOptions,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = leadership.subscribe();
        loop {
            if leadership.is_leader() {
                let writer = || leadership.writer().ok();
                reencrypt_pass(&writer, options, &stop).await;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(options.recheck) => {}
            }
        }
    })
}

/// One pass: re-seals, a batch per transaction, every row not under the active key that this
/// BBS can read. `writer` hands out the store to write with before each batch (the fenced
/// leader's store; `None` once this BBS no longer leads, which ends the pass). Sets the gauges
/// `bbs_encryption_rows_remaining` and `bbs_encryption_rows_unknown_key` and counts
/// `bbs_encryption_rows_resealed_total`; logs each batch and the end.
pub async fn reencrypt_pass(
    writer: &(dyn Fn() -> Option<Store> + Send + Sync),
    options: ReencryptOptions,
    stop: &CancellationToken,
) -> PassReport {
    let mut report = PassReport::default();
    let Some(store) = writer() else { return report };
    let Some(active) = store.keys().active_label().map(str::to_owned) else { return report };
    let mut remaining = 0u64;
    let mut unknown = 0u64;
    for table in SealedTable::ALL {
        let counts = match store.key_label_counts(table).await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count rows per encryption key");
                return report;
            }
        };
        for (label, n) in counts.into_iter().filter(|(label, _)| *label != active) {
            remaining += n;
            if !label.is_empty() && !store.keys().has_label(&label) {
                unknown += n;
                tracing::error!(
                    table = table.name(),
                    label,
                    rows = n,
                    "rows are encrypted under a key this bbs does not have: configure that key (every bbs of \
                     one database needs the same keys); until then these rows are unreadable"
                );
            }
        }
    }
    metrics::gauge!("bbs_encryption_rows_remaining").set(remaining as f64);
    metrics::gauge!("bbs_encryption_rows_unknown_key").set(unknown as f64);
    if remaining == unknown {
        report.unreadable = unknown;
        report.complete = true;
        return report;
    }
    tracing::info!(rows = remaining - unknown, active, "re-encrypting rows under the active encryption key");
    for table in SealedTable::ALL {
        let mut after: Option<String> = None;
        loop {
            if stop.is_cancelled() {
                return report;
            }
            let Some(store) = writer() else { return report };
            let batch = match store.reseal_batch(table, after.as_deref(), options.batch_size).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(table = table.name(), error = %e, "re-encryption batch failed; retrying later");
                    return report;
                }
            };
            let resealed = batch.resealed as u64;
            report.resealed += resealed;
            report.unreadable += batch.unreadable.len() as u64;
            remaining = remaining.saturating_sub(resealed);
            metrics::counter!("bbs_encryption_rows_resealed_total").increment(resealed);
            metrics::gauge!("bbs_encryption_rows_remaining").set(remaining as f64);
            for (key, reason) in &batch.unreadable {
                tracing::warn!(table = table.name(), key, reason, "cannot re-encrypt row");
            }
            tracing::info!(table = table.name(), resealed, remaining, "re-encrypted a batch");
            match batch.resume_after {
                Some(next) => after = Some(next),
                None => break,
            }
            // Small batches with a pause between them: API writes never queue behind the pass.
            tokio::select! {
                _ = stop.cancelled() => return report,
                _ = tokio::time::sleep(options.pause) => {}
            }
        }
    }
    report.complete = true;
    tracing::info!(resealed = report.resealed, unreadable = report.unreadable, active, "re-encryption pass done");
    report
}

#[cfg(test)]
mod tests {
    use db::testing::{TestDb, test_keyring};
    use db::{Backend, StoreOptions};

    use super::*;

    const HEX_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const HEX_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn key_text_names_the_active_key_or_defaults_to_the_first() {
        let keys =
            parse_keys(&format!("# keys\nold={HEX_A}\n\nnew = {HEX_B}  # rotated\nactive=new\n"), false, "").unwrap();
        assert_eq!(keys.active_label(), Some("new"));
        assert_eq!(keys.labels().collect::<Vec<_>>(), ["new", "old"]);
        let keys = parse_keys(&format!("first={HEX_A}\nsecond={HEX_B}"), false, "").unwrap();
        assert_eq!(keys.active_label(), Some("first"));
        let keys = parse_keys(&format!("first={HEX_A};second={HEX_B}"), true, "second").unwrap();
        assert_eq!(keys.active_label(), Some("second"), "the configured label wins");
        // A passphrase key is its SHA-256, as in Diego: the same blob opens under both forms.
        let sha_of_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let by_passphrase = parse_keys("k=passphrase:abc", true, "").unwrap();
        let by_hex = parse_keys(&format!("k={sha_of_abc}"), true, "").unwrap();
        let pb = proto::pb::models::v1::ActualLrpNetInfo { address: "10.0.0.1".into(), ..Default::default() };
        let blob = db::codec::seal_proto(&by_passphrase, &pb);
        assert_eq!(db::codec::open_proto::<proto::pb::models::v1::ActualLrpNetInfo>(&by_hex, &blob).unwrap(), pb);
        assert!(parse_keys("k=passphrase:", true, "").unwrap_err().contains("empty passphrase"));
    }

    #[test]
    fn bad_key_text_is_refused_with_the_reason() {
        let err = |text: &str| parse_keys(text, true, "").unwrap_err();
        assert!(err("").contains("no keys"));
        assert!(err("k=abcd").contains("64 hex digits"));
        assert!(err(&format!("k={}", "zz".repeat(32))).contains("not hex"));
        assert!(err(&format!("bad label={HEX_A}")).contains("key label"));
        assert!(err(&format!("k={HEX_A},active=other")).contains("names no key"));
        assert!(err("just words").contains("expected label=<hex key>"));
    }

    #[test]
    fn a_generated_key_file_is_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("diego-keys-{}", uuid::Uuid::new_v4().simple()));
        let config = BbsConfig { data_dir: dir.clone(), ..BbsConfig::default() };
        let path = default_key_file(&config);
        assert_eq!(path, dir.join("bbs.db.keys"));
        let (first, source) = load_keys(&config, None).unwrap();
        assert_eq!(source, KeySource::Generated(path.clone()));
        assert!(first.active_label().unwrap().starts_with("generated-"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (again, _) = load_keys(&config, None).unwrap();
        assert_eq!(again.active_label(), first.active_label(), "the second start reads the same file");
        // The environment is used when set; a configured file wins over it.
        let (from_env, source) = load_keys(&config, Some(&format!("env-key={HEX_A}"))).unwrap();
        assert_eq!((from_env.active_label(), source), (Some("env-key"), KeySource::Env));
        let configured = BbsConfig { encryption_keys_file: path.clone(), ..config.clone() };
        let (_, source) = load_keys(&configured, Some(&format!("env-key={HEX_A}"))).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        let missing = BbsConfig { encryption_keys_file: dir.join("nope"), ..config.clone() };
        assert!(load_keys(&missing, None).unwrap_err().contains("cannot read"));
        let shared = BbsConfig { database_url: "postgres://h/db".into(), ..config };
        assert_eq!(default_key_file(&shared), dir.join("bbs.keys"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_leader_reencrypts_in_the_background_and_a_standby_does_not() {
        let Some(db) = TestDb::create(Backend::Sqlite).await else { return };
        let definition = db::testing::fixtures::task_definition(|_| {});
        let domain = proto::models::DomainName::parse("d").unwrap();
        let old = Store::connect(&db.url, StoreOptions { keys: test_keyring("a", &["a"]), ..Default::default() })
            .await
            .unwrap();
        for i in 0..7 {
            let guid = proto::models::TaskGuid::parse(format!("t-{i}")).unwrap();
            old.desire_task(&guid, &domain, &definition, 1).await.unwrap();
        }
        old.close().await;
        let store =
            Store::connect(&db.url, StoreOptions { keys: test_keyring("b", &["a", "b"]), ..Default::default() })
                .await
                .unwrap();
        let (ttl, retry) = (Duration::from_secs(2), Duration::from_millis(100));
        let options = ReencryptOptions { batch_size: 3, pause: Duration::ZERO, recheck: Duration::from_secs(60) };
        let stop = CancellationToken::new();
        // A standby (another owner holds the lease) leaves the rows alone.
        store.acquire_lease("bbs", "someone-else", "elsewhere:1", db::sql::leases::LeaseType::Lock, ttl).await.unwrap();
        let leadership = Leadership::new(store.clone(), "me".into(), "here:1".into(), ttl, retry);
        let election = tokio::spawn(leadership.clone().spawn(stop.clone()));
        let pass = spawn_reencryption(leadership.clone(), options, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!leadership.is_leader());
        assert_eq!(store.rows_to_reseal().await.unwrap(), 7);
        // Once it leads (the other lease lapses), the pass runs to the end.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while store.rows_to_reseal().await.unwrap() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the leader did not re-encrypt");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(leadership.is_leader());
        assert_eq!(
            store.key_label_counts(SealedTable::Tasks).await.unwrap().into_iter().collect::<Vec<_>>(),
            [("b".to_owned(), 7)]
        );
        stop.cancel();
        let _ = pass.await;
        let _ = election.await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_reseals_in_batches_and_stops_when_the_writer_goes() {
        let Some(db) = TestDb::create(Backend::Sqlite).await else { return };
        let definition = db::testing::fixtures::task_definition(|_| {});
        let domain = proto::models::DomainName::parse("d").unwrap();
        let old = Store::connect(&db.url, StoreOptions { keys: test_keyring("a", &["a"]), ..Default::default() })
            .await
            .unwrap();
        for i in 0..5 {
            let guid = proto::models::TaskGuid::parse(format!("t-{i}")).unwrap();
            old.desire_task(&guid, &domain, &definition, 1).await.unwrap();
        }
        old.close().await;
        let store =
            Store::connect(&db.url, StoreOptions { keys: test_keyring("b", &["a", "b"]), ..Default::default() })
                .await
                .unwrap();
        let options = ReencryptOptions { batch_size: 2, pause: Duration::ZERO, recheck: Duration::ZERO };
        let stop = CancellationToken::new();
        // The writer goes away after the first batch of tasks (calls: the count, the desired
        // LRPs' one batch, the first tasks batch): the pass ends early, incomplete.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let leaving = || (calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3).then(|| store.clone());
        let report = reencrypt_pass(&leaving, options, &stop).await;
        assert!(!report.complete);
        assert_eq!(report.resealed, 2);
        assert_eq!(store.rows_to_reseal().await.unwrap(), 3);
        // The next pass resumes and finishes.
        let staying = || Some(store.clone());
        let report = reencrypt_pass(&staying, options, &stop).await;
        assert_eq!(report, PassReport { resealed: 3, unreadable: 0, complete: true });
        assert_eq!(store.rows_to_reseal().await.unwrap(), 0);
        store.close().await;
    }
}
