//! Cell presences: what a rep advertises through its Locket presence (bbs.md 2.5). Stored as
//! JSON in the presence lease's value.

use std::collections::BTreeMap;

use super::CellId;

/// Total resources a cell offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CellCapacity {
    /// Memory in MB (> 0).
    pub memory_mb: i32,
    /// Disk in MB (>= 0).
    pub disk_mb: i32,
    /// Maximum containers (> 0).
    pub containers: i32,
}

/// A root filesystem scheme a cell can provide, with its names (`preloaded` -> `busybox`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct RootfsProvider {
    /// The URL scheme (`preloaded`, `docker`, ...).
    pub name: String,
    /// The names under that scheme; empty means any.
    #[serde(default)]
    pub properties: Vec<String>,
}

impl RootfsProvider {
    /// A provider that accepts every rootfs of its scheme (Diego's "arbitrary" provider).
    pub fn arbitrary(name: impl Into<String>) -> Self {
        Self { name: name.into(), properties: Vec::new() }
    }

    /// A provider that accepts only the listed rootfs names (Diego's "fixed set" provider).
    pub fn fixed<S: Into<String>>(name: impl Into<String>, names: impl IntoIterator<Item = S>) -> Self {
        Self { name: name.into(), properties: names.into_iter().map(Into::into).collect() }
    }
}

/// A live cell.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CellPresence {
    /// The cell's identifier (the presence key).
    pub cell_id: CellId,
    /// `host:port` of the rep's gRPC server.
    pub rep_address: String,
    /// URL of the rep for clients that need one (may be empty).
    #[serde(default)]
    pub rep_url: String,
    /// Availability zone.
    #[serde(default)]
    pub zone: String,
    /// Total resources.
    pub capacity: CellCapacity,
    /// Root filesystems it can provide.
    #[serde(default)]
    pub rootfs_providers: Vec<RootfsProvider>,
    /// Tags every LRP placed here must carry.
    #[serde(default)]
    pub placement_tags: Vec<String>,
    /// Tags LRPs placed here may carry.
    #[serde(default)]
    pub optional_placement_tags: Vec<String>,
    /// Free-form operator annotations (non-empty keys and values).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}
