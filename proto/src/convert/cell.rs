//! Cell presences, their capacity and rootfs providers.

use super::required;
use crate::models::validation::validate_cell_presence;
use crate::models::{CellCapacity, CellId, CellPresence, RootfsProvider, ValidationError};
use crate::pb::models::v1 as pb;

impl From<pb::CellCapacity> for CellCapacity {
    fn from(capacity: pb::CellCapacity) -> Self {
        Self { memory_mb: capacity.memory_mb, disk_mb: capacity.disk_mb, containers: capacity.containers }
    }
}

impl From<CellCapacity> for pb::CellCapacity {
    fn from(capacity: CellCapacity) -> Self {
        Self { memory_mb: capacity.memory_mb, disk_mb: capacity.disk_mb, containers: capacity.containers }
    }
}

impl From<pb::Provider> for RootfsProvider {
    fn from(provider: pb::Provider) -> Self {
        Self { name: provider.name, properties: provider.properties }
    }
}

impl From<RootfsProvider> for pb::Provider {
    fn from(provider: RootfsProvider) -> Self {
        Self { name: provider.name, properties: provider.properties }
    }
}

impl TryFrom<pb::CellPresence> for CellPresence {
    type Error = ValidationError;

    /// Needs a cell id and a `capacity`; checks [`validate_cell_presence`].
    fn try_from(cell: pb::CellPresence) -> Result<Self, Self::Error> {
        let converted = Self {
            cell_id: CellId::parse(cell.cell_id)?,
            rep_address: cell.rep_address,
            rep_url: cell.rep_url,
            zone: cell.zone,
            capacity: required(cell.capacity, "capacity")?.into(),
            rootfs_providers: cell.rootfs_providers.into_iter().map(Into::into).collect(),
            placement_tags: cell.placement_tags,
            optional_placement_tags: cell.optional_placement_tags,
            annotations: cell.annotations.into_iter().collect(),
        };
        validate_cell_presence(&converted)?;
        Ok(converted)
    }
}

impl From<CellPresence> for pb::CellPresence {
    fn from(cell: CellPresence) -> Self {
        Self {
            cell_id: cell.cell_id.into_string(),
            rep_address: cell.rep_address,
            zone: cell.zone,
            capacity: Some(cell.capacity.into()),
            rootfs_providers: cell.rootfs_providers.into_iter().map(Into::into).collect(),
            placement_tags: cell.placement_tags,
            optional_placement_tags: cell.optional_placement_tags,
            rep_url: cell.rep_url,
            annotations: cell.annotations.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> CellPresence {
        CellPresence {
            cell_id: CellId::parse("cell-z1-0").unwrap(),
            rep_address: "10.0.16.4:1801".into(),
            rep_url: "https://cell-z1-0.cell.service.cf.internal:1801".into(),
            zone: "z1".into(),
            capacity: CellCapacity { memory_mb: 16_384, disk_mb: 102_400, containers: 250 },
            rootfs_providers: vec![
                RootfsProvider { name: "preloaded".into(), properties: vec!["cflinuxfs4".into()] },
                RootfsProvider { name: "preloaded+layer".into(), properties: vec!["cflinuxfs4".into()] },
                RootfsProvider { name: "docker".into(), properties: vec![] },
            ],
            placement_tags: vec!["isolation-1".into()],
            optional_placement_tags: vec!["gpu".into()],
            annotations: [("rack".to_owned(), "r12".to_owned())].into(),
        }
    }

    #[test]
    fn cell_presence_round_trips() {
        let wire = pb::CellPresence::from(cell());
        assert_eq!(wire.capacity.map(|c| c.containers), Some(250));
        assert_eq!(wire.rootfs_providers.len(), 3);
        assert_eq!(CellPresence::try_from(wire), Ok(cell()));
    }

    #[test]
    fn cell_presence_needs_an_id_and_a_capacity() {
        let wire = pb::CellPresence { capacity: None, ..cell().into() };
        assert_eq!(CellPresence::try_from(wire).unwrap_err().to_string(), "capacity is required");
        let wire = pb::CellPresence { cell_id: String::new(), ..cell().into() };
        assert_eq!(CellPresence::try_from(wire).unwrap_err().to_string(), "cell_id must not be empty");
    }

    #[test]
    fn cell_presence_conversion_validates() {
        let wire = pb::CellPresence {
            capacity: Some(pb::CellCapacity { memory_mb: 0, disk_mb: 0, containers: 1 }),
            ..cell().into()
        };
        assert_eq!(CellPresence::try_from(wire).unwrap_err().to_string(), "capacity.memory_mb must be > 0");
    }
}
