//! Desired LRPs, split as Diego splits them: [`SchedulingInfo`] (plain, indexed columns the
//! auctioneer, converger and route emitters read) and [`RunInfo`] (one blob only the rep needs).

use std::collections::BTreeMap;

use super::{DomainName, ModificationTag, ProcessGuid};
use crate::pb::models::v1 as pb;

/// How an evacuating cell hands over its instances (bbs.md 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateStrategy {
    /// Keep the old instance until the replacement runs (default).
    #[default]
    Rolling,
    /// Replace one at a time without keeping evacuating copies.
    Recreate,
}

impl UpdateStrategy {
    /// The integer stored in the `update_strategy` column.
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Rolling => 0,
            Self::Recreate => 1,
        }
    }

    /// Parses [`UpdateStrategy::as_i32`].
    pub fn from_i32(value: i32) -> Option<Self> {
        match value {
            0 => Some(Self::Rolling),
            1 => Some(Self::Recreate),
            _ => None,
        }
    }
}

/// The value of a metric tag: fixed, or resolved per instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricTagValue {
    /// A fixed string.
    Static(String),
    /// The instance index.
    Index,
    /// The instance guid.
    InstanceGuid,
}

/// The scheduling half of a desired LRP: every field is a plain column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingInfo {
    /// Primary key.
    pub process_guid: ProcessGuid,
    /// Freshness grouping.
    pub domain: DomainName,
    /// Log correlation id.
    pub log_guid: String,
    /// Free text for the client, at most 10 KiB.
    pub annotation: String,
    /// How many instances to keep running.
    pub instances: i32,
    /// Memory per instance in MB (0 = unlimited).
    pub memory_mb: i32,
    /// Disk per instance in MB (0 = unlimited).
    pub disk_mb: i32,
    /// Process limit per instance (0 = unlimited).
    pub max_pids: i32,
    /// Root filesystem URL (`preloaded:busybox`, `docker:///...`); matched against cells.
    pub rootfs: String,
    /// Route provider name to opaque JSON, at most 128 KiB in total.
    pub routes: BTreeMap<String, Vec<u8>>,
    /// Consumer ordering tag.
    pub modification_tag: ModificationTag,
    /// Volume driver names the cell must offer.
    pub volume_placement: Vec<String>,
    /// Placement tags the cell must match.
    pub placement_tags: Vec<String>,
    /// Evacuation behaviour.
    pub update_strategy: UpdateStrategy,
}

/// The run-time half of a desired LRP, in wire form (see the module docs of [`crate::models`]).
/// Only constructed through validation, so an instance always has an action.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo(pub(crate) pb::DesiredLrpRunInfo);

impl RunInfo {
    /// The wire message.
    pub fn as_pb(&self) -> &pb::DesiredLrpRunInfo {
        &self.0
    }

    /// The wire message, owned.
    pub fn into_pb(self) -> pb::DesiredLrpRunInfo {
        self.0
    }

    /// Sets `created_at` (nanoseconds since the Unix epoch), which the BBS stamps when the LRP is
    /// desired (clients do not send it). No rule checks it, so the run info stays valid; any
    /// other change goes through [`crate::convert::run_info_from_pb`] and its checks.
    pub fn stamp_created_at(&mut self, now_ns: i64) {
        self.0.created_at = now_ns;
    }
}

/// A whole desired LRP.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredLrp {
    /// Plain columns.
    pub scheduling: SchedulingInfo,
    /// The blob.
    pub run_info: RunInfo,
    /// Metric tags (their own column since Diego moved them out of run info, so updates and the
    /// routing view do not touch the blob).
    pub metric_tags: BTreeMap<String, MetricTagValue>,
}

/// A partial update; `None` fields stay as they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DesiredLrpUpdate {
    /// New instance count.
    pub instances: Option<i32>,
    /// New route map (replaces the whole map).
    pub routes: Option<BTreeMap<String, Vec<u8>>>,
    /// New annotation.
    pub annotation: Option<String>,
    /// New metric tags (replace the whole map).
    pub metric_tags: Option<BTreeMap<String, MetricTagValue>>,
    /// New image credentials (both or neither).
    pub image_username: Option<String>,
    /// New image credentials (both or neither).
    pub image_password: Option<String>,
}
