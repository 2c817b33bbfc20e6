//! The end-to-end suite's cluster: `cli::cluster` (what `diego dev` runs) with test timings, over
//! a fresh database on one backend, removed with its data directory when dropped.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;

use cell_rep::RuntimeKind;
pub use cli::cluster::{Cluster as LocalCluster, ClusterSpec};
use db::Backend;
use db::testing::TestDb;

/// A cluster plus the test database it runs on.
pub struct Cluster {
    inner: Option<LocalCluster>,
    /// The database (dropped after the cluster).
    pub db: TestDb,
    data_dir: PathBuf,
}

impl Cluster {
    /// Starts `cells` cells of `runtime` on `backend` with test timings, after `tweak` adjusts the
    /// spec; `None` when the backend is not configured.
    pub async fn start(
        backend: Backend,
        cells: usize,
        runtime: RuntimeKind,
        tweak: impl FnOnce(&mut ClusterSpec),
    ) -> Option<Cluster> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let db = TestDb::create(backend).await?;
        let data_dir = std::env::temp_dir().join(format!("diego-e2e-{}", uuid::Uuid::new_v4().simple()));
        let mut spec = ClusterSpec::new(db.url.clone(), data_dir.clone(), cells, runtime);
        tweak(&mut spec);
        let inner = match LocalCluster::start(spec).await {
            Ok(cluster) => cluster,
            Err(e) => panic!("the cluster did not start: {e}"),
        };
        Some(Cluster { inner: Some(inner), db, data_dir })
    }

    /// Stops every component and waits for the reps to finish.
    pub async fn shutdown(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.shutdown().await;
        }
    }
}

impl Deref for Cluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        self.inner.as_ref().unwrap_or_else(|| unreachable!("the cluster is only taken by shutdown"))
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        self.inner.as_mut().unwrap_or_else(|| unreachable!("the cluster is only taken by shutdown"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        drop(self.inner.take());
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
