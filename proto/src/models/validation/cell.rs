//! Cell presences (bbs.md 2.5). Mirrors `CellPresence.Validate` in cloudfoundry/bbs
//! `models/cells.go`, plus the annotation rule.

use crate::models::{CellPresence, ValidationError};

/// Validates a cell presence: a `rep_address`, capacity `memory_mb > 0`, `disk_mb >= 0` and
/// `containers > 0`, named rootfs providers, and annotations with non-empty keys and values.
pub fn validate_cell_presence(cell: &CellPresence) -> Result<(), ValidationError> {
    if cell.rep_address.is_empty() {
        return Err(ValidationError::new("rep_address", "must not be empty"));
    }
    if cell.capacity.memory_mb <= 0 {
        return Err(ValidationError::new("capacity.memory_mb", "must be > 0"));
    }
    if cell.capacity.disk_mb < 0 {
        return Err(ValidationError::new("capacity.disk_mb", "must be >= 0"));
    }
    if cell.capacity.containers <= 0 {
        return Err(ValidationError::new("capacity.containers", "must be > 0"));
    }
    for (i, provider) in cell.rootfs_providers.iter().enumerate() {
        if provider.name.is_empty() {
            return Err(ValidationError::new(format!("rootfs_providers[{i}].name"), "must not be empty"));
        }
    }
    for (key, value) in &cell.annotations {
        if key.is_empty() {
            return Err(ValidationError::new("annotations", "must not have an empty key"));
        }
        if value.is_empty() {
            return Err(ValidationError::new(format!("annotations.{key}"), "must not be empty"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{CellCapacity, CellId, RootfsProvider};

    fn cell() -> CellPresence {
        CellPresence {
            cell_id: CellId::parse("cell-z1-0").unwrap(),
            rep_address: "10.0.16.4:1801".into(),
            rep_url: "https://cell-z1-0.cell.service.cf.internal:1801".into(),
            zone: "z1".into(),
            capacity: CellCapacity { memory_mb: 16_384, disk_mb: 0, containers: 250 },
            rootfs_providers: vec![
                RootfsProvider { name: "preloaded".into(), properties: vec!["cflinuxfs4".into()] },
                RootfsProvider { name: "docker".into(), properties: vec![] },
            ],
            placement_tags: vec!["blue".into()],
            optional_placement_tags: vec!["green".into()],
            annotations: [("rack".to_owned(), "r12".to_owned())].into(),
        }
    }

    rule_test!(cell_needs_a_rep_address: validate_cell_presence, cell(),
        |v| v.rep_address.clear() => "rep_address must not be empty");
    rule_test!(cell_memory_is_positive: validate_cell_presence, cell(),
        |v| v.capacity.memory_mb = 0 => "capacity.memory_mb must be > 0");
    rule_test!(cell_disk_is_not_negative: validate_cell_presence, cell(),
        |v| v.capacity.disk_mb = -1 => "capacity.disk_mb must be >= 0");
    rule_test!(cell_containers_are_positive: validate_cell_presence, cell(),
        |v| v.capacity.containers = 0 => "capacity.containers must be > 0");
    rule_test!(cell_rootfs_providers_are_named: validate_cell_presence, cell(),
        |v| v.rootfs_providers[1].name.clear() => "rootfs_providers[1].name must not be empty");
    rule_test!(cell_annotation_keys_are_not_empty: validate_cell_presence, cell(),
        |v| v.annotations.insert(String::new(), "x".into()) => "annotations must not have an empty key");
    rule_test!(cell_annotation_values_are_not_empty: validate_cell_presence, cell(),
        |v| v.annotations.insert("rack".into(), String::new()) => "annotations.rack must not be empty");
}
