//! The static filters of reference §1.6 (rootfs, volume drivers, placement tags, plus
//! evacuation) and their per-constraint cache.
//!
//! A cell's verdict for a constraint never changes during an auction, so it is computed once per
//! distinct constraint ("class") and kept as the list of compatible cells grouped by zone. A
//! class is built the first time an item of it comes up and dropped after its last item, so even
//! a batch where every item has its own constraint holds one cell list at a time.

use std::collections::HashMap;

use super::model::{CellState, PlacementConstraint, Rejections, RootfsProvider};

/// The first filter a cell fails for a constraint, or `Compatible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Evacuating,
    Rootfs,
    VolumeDrivers,
    PlacementTags,
    Compatible,
}

/// Splits a rootfs URL into its lower-cased scheme and its opaque part, the way Go's
/// `url.Parse` does for the forms Diego uses (`preloaded:cflinuxfs4`, `docker:///busybox`).
/// Returns `None` when there is no valid scheme.
fn split_rootfs(rootfs: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = rootfs.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !first_ok || !rest_ok {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or("");
    let rest = rest.split('?').next().unwrap_or("");
    // "docker:///image" has a path, not an opaque part.
    let opaque = if rest.starts_with('/') { "" } else { rest };
    Some((scheme, opaque))
}

/// True when some provider serves the rootfs: the provider's name equals the URL scheme
/// (case-insensitively) and it either has no properties (any rootfs of that scheme) or lists
/// the URL's opaque part (`preloaded:busybox` needs `busybox`).
pub(crate) fn rootfs_matches(providers: &[RootfsProvider], rootfs: &str) -> bool {
    let Some((scheme, opaque)) = split_rootfs(rootfs) else {
        return false;
    };
    providers.iter().any(|p| {
        p.name.eq_ignore_ascii_case(scheme) && (p.properties.is_empty() || p.properties.iter().any(|s| s == opaque))
    })
}

/// True when the cell has every requested volume driver.
pub(crate) fn drivers_match(cell_drivers: &[String], requested: &[String]) -> bool {
    requested.iter().all(|d| cell_drivers.contains(d))
}

/// With R the cell's required tags, O its optional tags and D the requested tags: R ⊆ D and
/// D ⊆ R ∪ O.
pub(crate) fn tags_match(required: &[String], optional: &[String], requested: &[String]) -> bool {
    required.iter().all(|t| requested.contains(t))
        && requested.iter().all(|t| required.contains(t) || optional.contains(t))
}

/// Runs the filters in Diego's order, evacuation first.
pub(crate) fn verdict(cell: &CellState, constraint: &PlacementConstraint) -> Verdict {
    if cell.evacuating {
        Verdict::Evacuating
    } else if !rootfs_matches(&cell.rootfs_providers, &constraint.rootfs) {
        Verdict::Rootfs
    } else if !drivers_match(&cell.volume_drivers, &constraint.volume_drivers) {
        Verdict::VolumeDrivers
    } else if !tags_match(&cell.placement_tags, &cell.optional_placement_tags, &constraint.placement_tags) {
        Verdict::PlacementTags
    } else {
        Verdict::Compatible
    }
}

/// The compatible cells for one constraint, grouped by zone, and how many cells each filter
/// rejected.
#[derive(Debug, Default)]
pub(crate) struct Class {
    /// Compatible cell indices, zone by zone, in input order within a zone.
    pub cells: Vec<u32>,
    /// `(zone, start, end)`: the zone's slice of `cells`; only zones with a compatible cell.
    pub zones: Vec<(u32, u32, u32)>,
    /// Filter rejection counts; the resource counts stay 0 here.
    pub rejected: Rejections,
    built: bool,
    last_use: usize,
}

/// The interned constraints of one auction.
pub(crate) struct Classes {
    classes: Vec<Class>,
}

/// Key of a constraint: tags and drivers are compared as sets.
type Key<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>);

fn key(c: &PlacementConstraint) -> Key<'_> {
    fn set(v: &[String]) -> Vec<&str> {
        // Empty lists (the common case) do not allocate.
        let mut out: Vec<&str> = v.iter().map(String::as_str).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
    (c.rootfs.as_str(), set(&c.placement_tags), set(&c.volume_drivers))
}

impl Classes {
    /// Interns the constraints of the items in processing order; returns the class of each
    /// item, parallel to `constraints`.
    pub fn intern<'a>(constraints: impl Iterator<Item = &'a PlacementConstraint>) -> (Self, Vec<u32>) {
        let mut ids: HashMap<Key<'a>, u32> = HashMap::new();
        let mut classes: Vec<Class> = Vec::new();
        let mut of_item = Vec::new();
        for (position, c) in constraints.enumerate() {
            let next = u32::try_from(classes.len()).unwrap_or(u32::MAX);
            let id = *ids.entry(key(c)).or_insert(next);
            if id == next {
                classes.push(Class::default());
            }
            if let Some(class) = classes.get_mut(id as usize) {
                class.last_use = position;
            }
            of_item.push(id);
        }
        (Self { classes }, of_item)
    }

    /// The class for the item at `position`, built on first use from `constraint`.
    /// `zone_cells[z]` lists the non-evacuating cells of zone `z`.
    pub fn get(
        &mut self,
        id: u32,
        constraint: &PlacementConstraint,
        cells: &[CellState],
        zone_cells: &[Vec<u32>],
    ) -> Option<&Class> {
        let class = self.classes.get_mut(id as usize)?;
        if !class.built {
            class.built = true;
            let mut rejected =
                Rejections { evacuating: cells.iter().filter(|c| c.evacuating).count(), ..Rejections::default() };
            for (zone, members) in zone_cells.iter().enumerate() {
                let start = class.cells.len();
                for &cell in members {
                    let Some(state) = cells.get(cell as usize) else {
                        continue;
                    };
                    match verdict(state, constraint) {
                        Verdict::Compatible => class.cells.push(cell),
                        Verdict::Rootfs => rejected.rootfs += 1,
                        Verdict::VolumeDrivers => rejected.volume_drivers += 1,
                        Verdict::PlacementTags => rejected.placement_tags += 1,
                        Verdict::Evacuating => rejected.evacuating += 1,
                    }
                }
                if class.cells.len() > start {
                    class.zones.push((zone as u32, start as u32, class.cells.len() as u32));
                }
            }
            class.rejected = rejected;
        }
        Some(class)
    }

    /// Frees the class's cell list once the item at `position` was its last user.
    pub fn release_after(&mut self, id: u32, position: usize) {
        if let Some(class) = self.classes.get_mut(id as usize)
            && class.last_use == position
        {
            class.cells = Vec::new();
            class.zones = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn preloaded() -> Vec<RootfsProvider> {
        vec![RootfsProvider::fixed("preloaded", ["cflinuxfs4", "busybox"]), RootfsProvider::arbitrary("docker")]
    }

    #[test]
    fn rootfs_fixed_provider_matches_listed_stack_only() {
        assert!(rootfs_matches(&preloaded(), "preloaded:busybox"));
        assert!(rootfs_matches(&preloaded(), "preloaded:cflinuxfs4"));
        assert!(!rootfs_matches(&preloaded(), "preloaded:nope"));
        assert!(!rootfs_matches(&preloaded(), "preloaded:"));
    }

    #[test]
    fn rootfs_arbitrary_provider_matches_any_rootfs_of_its_scheme() {
        assert!(rootfs_matches(&preloaded(), "docker:///cloudfoundry/grace"));
        assert!(rootfs_matches(&preloaded(), "docker://index.docker.io/busybox"));
        assert!(rootfs_matches(&preloaded(), "DOCKER:///busybox"));
    }

    #[test]
    fn rootfs_unknown_scheme_or_unparsable_url_matches_nothing() {
        assert!(!rootfs_matches(&preloaded(), "oci:///image"));
        assert!(!rootfs_matches(&preloaded(), "cflinuxfs4"));
        assert!(!rootfs_matches(&preloaded(), ""));
        assert!(!rootfs_matches(&preloaded(), ":busybox"));
        assert!(!rootfs_matches(&preloaded(), "1x:busybox"));
        assert!(!rootfs_matches(&[], "docker:///busybox"));
    }

    #[test]
    fn rootfs_ignores_query_and_fragment() {
        assert!(rootfs_matches(&preloaded(), "preloaded:busybox?x=1"));
        assert!(rootfs_matches(&preloaded(), "preloaded:busybox#frag"));
    }

    #[test]
    fn volume_drivers_must_all_be_present() {
        let cell = s(&["nfs", "smb"]);
        assert!(drivers_match(&cell, &[]));
        assert!(drivers_match(&cell, &s(&["nfs"])));
        assert!(drivers_match(&cell, &s(&["smb", "nfs"])));
        assert!(!drivers_match(&cell, &s(&["nfs", "ceph"])));
        assert!(!drivers_match(&[], &s(&["nfs"])));
    }

    #[test]
    fn untagged_work_only_goes_to_cells_without_required_tags() {
        assert!(tags_match(&[], &[], &[]));
        assert!(tags_match(&[], &s(&["ssd"]), &[]));
        assert!(!tags_match(&s(&["gpu"]), &[], &[]));
    }

    #[test]
    fn required_tag_cell_only_takes_work_asking_for_it() {
        assert!(tags_match(&s(&["gpu"]), &[], &s(&["gpu"])));
        assert!(!tags_match(&s(&["gpu"]), &[], &s(&["ssd"])));
        assert!(!tags_match(&s(&["gpu", "fast"]), &[], &s(&["gpu"])));
    }

    #[test]
    fn requested_tags_must_be_required_or_optional_on_the_cell() {
        assert!(tags_match(&s(&["gpu"]), &s(&["ssd"]), &s(&["gpu", "ssd"])));
        assert!(tags_match(&[], &s(&["ssd"]), &s(&["ssd"])));
        assert!(!tags_match(&[], &[], &s(&["ssd"])));
        assert!(!tags_match(&s(&["gpu"]), &s(&["ssd"]), &s(&["gpu", "ssd", "x"])));
    }

    #[test]
    fn verdict_reports_the_first_failing_filter_in_diego_order() {
        let cell = CellState {
            rootfs_providers: preloaded(),
            volume_drivers: s(&["nfs"]),
            placement_tags: s(&["gpu"]),
            ..CellState::default()
        };
        let c = |rootfs: &str, tags: &[&str], drivers: &[&str]| PlacementConstraint {
            rootfs: rootfs.into(),
            placement_tags: s(tags),
            volume_drivers: s(drivers),
        };
        assert_eq!(verdict(&cell, &c("preloaded:nope", &[], &["x"])), Verdict::Rootfs);
        assert_eq!(verdict(&cell, &c("preloaded:busybox", &[], &["x"])), Verdict::VolumeDrivers);
        assert_eq!(verdict(&cell, &c("preloaded:busybox", &[], &["nfs"])), Verdict::PlacementTags);
        assert_eq!(verdict(&cell, &c("preloaded:busybox", &["gpu"], &["nfs"])), Verdict::Compatible);
        let evacuating = CellState { evacuating: true, ..cell };
        assert_eq!(verdict(&evacuating, &c("preloaded:busybox", &["gpu"], &["nfs"])), Verdict::Evacuating);
    }

    #[test]
    fn classes_treat_tag_and_driver_lists_as_sets() {
        let a = PlacementConstraint {
            rootfs: "docker:///x".into(),
            placement_tags: s(&["b", "a", "a"]),
            volume_drivers: s(&["n"]),
        };
        let b = PlacementConstraint { placement_tags: s(&["a", "b"]), ..a.clone() };
        let other = PlacementConstraint { rootfs: "docker:///y".into(), ..a.clone() };
        let (classes, ids) = Classes::intern([&a, &b, &other, &a].into_iter());
        assert_eq!(ids, vec![0, 0, 1, 0]);
        assert_eq!(classes.classes.len(), 2);
        assert_eq!(classes.classes[0].last_use, 3);
    }
}
