//! The rows of one index: the ordinary, evacuating and suspect instance of one (process guid,
//! index), which every lifecycle call reads and changes together (bbs.md 4.4), and the words
//! messages name them by.

use crate::lifecycle::actual_lrp::table::KeyMatch;
use crate::models::{ActualLrp, ActualLrpInstanceKey, Presence};

/// The rows of one index: at most one per presence.
///
/// Storage (the db crate's `Store::modify_index`, the rep's fake BBS) hands these to the `apply_*`
/// functions and writes whatever they changed. The functions set fields, not modification tags:
/// storage bumps the tag of every row it writes and gives a row with an empty epoch a fresh one,
/// and a row's presence is its slot's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IndexRows {
    /// The normal row.
    pub ordinary: Option<ActualLrp>,
    /// The copy kept on an evacuating cell.
    pub evacuating: Option<ActualLrp>,
    /// The copy whose cell went missing.
    pub suspect: Option<ActualLrp>,
}

impl IndexRows {
    /// The row with `presence`.
    pub fn get(&self, presence: Presence) -> Option<&ActualLrp> {
        match presence {
            Presence::Ordinary => self.ordinary.as_ref(),
            Presence::Evacuating => self.evacuating.as_ref(),
            Presence::Suspect => self.suspect.as_ref(),
        }
    }

    /// The slot of `presence`, to set, change or clear.
    pub fn slot_mut(&mut self, presence: Presence) -> &mut Option<ActualLrp> {
        match presence {
            Presence::Ordinary => &mut self.ordinary,
            Presence::Evacuating => &mut self.evacuating,
            Presence::Suspect => &mut self.suspect,
        }
    }

    /// The rows that exist, in presence order (ordinary, evacuating, suspect).
    pub fn iter(&self) -> impl Iterator<Item = &ActualLrp> {
        [&self.ordinary, &self.evacuating, &self.suspect].into_iter().flatten()
    }

    /// Whether the index has no row at all.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The first row (in presence order) that carries `instance_key`.
    pub fn with_instance_key(&self, instance_key: &ActualLrpInstanceKey) -> Option<&ActualLrp> {
        self.iter().find(|lrp| lrp.instance_key.as_ref() == Some(instance_key))
    }

    /// The presence of the row carrying `instance_key`, if any (ordinary first, as Diego looks).
    /// The evacuation calls address this row.
    pub fn carrier(&self, instance_key: &ActualLrpInstanceKey) -> Option<Presence> {
        self.with_instance_key(instance_key).map(|lrp| lrp.presence)
    }

    /// The presence an ordinary lifecycle call (claim, start, crash) by `instance_key` addresses,
    /// as in Diego: the SUSPECT row when it carries that key, the ORDINARY row otherwise.
    pub fn addressed(&self, instance_key: &ActualLrpInstanceKey) -> Presence {
        match &self.suspect {
            Some(suspect) if suspect.instance_key.as_ref() == Some(instance_key) => Presence::Suspect,
            _ => Presence::Ordinary,
        }
    }
}

/// How the request's instance key relates to the row's.
pub fn key_match(row: &ActualLrp, requested: &ActualLrpInstanceKey) -> KeyMatch {
    match &row.instance_key {
        None => KeyMatch::Absent,
        Some(stored) if stored == requested => KeyMatch::Same,
        Some(_) => KeyMatch::Different,
    }
}

/// A presence in lower case, for messages.
pub fn presence_name(presence: Presence) -> &'static str {
    match presence {
        Presence::Ordinary => "ordinary",
        Presence::Evacuating => "evacuating",
        Presence::Suspect => "suspect",
    }
}

/// The key errors name a row by: `pg index 3`, plus the presence when it is not ordinary.
pub fn row_key(process_guid: &str, index: impl std::fmt::Display, presence: Presence) -> String {
    match presence {
        Presence::Ordinary => format!("{process_guid} index {index}"),
        other => format!("{process_guid} index {index} ({})", presence_name(other)),
    }
}
