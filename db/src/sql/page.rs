//! Keyset paging of the listings (`WHERE key > ? ORDER BY key LIMIT ?`, never OFFSET): each
//! paged listing reads at most `limit` rows after a cursor, in primary-key order, so a row
//! deleted or inserted between two pages neither repeats nor skips the rows around it, and the
//! cursor of a deleted row still works.
//!
//! The order is the database's order of the primary key: byte order on SQLite and on MySQL's
//! `utf8mb4_bin` tables, and the database collation on PostgreSQL (byte order under `C` and
//! `C.UTF-8`). It is consistent within one database, which is all paging needs; comparing in a
//! forced collation would stop PostgreSQL from walking the primary-key index.

use crate::Backend;

/// One batch of a paged listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, K> {
    /// The rows that decoded, in primary-key order. Undecodable rows are skipped with a warning
    /// (so a batch can hold fewer than `limit` items and still not be the last).
    pub items: Vec<T>,
    /// The key of the last row read when the batch was full, so more rows may follow: pass it
    /// as the next `after`. `None` when the listing has no more rows.
    pub resume_after: Option<K>,
}

impl<T, K> Page<T, K> {
    /// A batch with no rows and nothing after it.
    pub fn empty() -> Self {
        Page { items: Vec::new(), resume_after: None }
    }

    /// The same batch with its resume key converted by `f`.
    pub fn map_key<K2>(self, f: impl FnOnce(K) -> K2) -> Page<T, K2> {
        Page { items: self.items, resume_after: self.resume_after.map(f) }
    }
}

/// Where an actual-LRP listing resumes: the primary key of the last row read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActualLrpCursor {
    /// The process guid (not validated: the row may be gone).
    pub process_guid: String,
    /// The instance index.
    pub index: i64,
    /// The stored presence integer.
    pub presence: i64,
}

/// The rows per statement of a paged listing are at most this many, whatever `limit` says.
pub const MAX_BATCH: usize = 5_000;

/// The condition "`columns` (a primary key, leading column first) is after the bound values",
/// with one `?` per comparison in the order [`after_binds`] gives. SQLite and PostgreSQL take a
/// row-value comparison, which both walk the primary-key index with; MySQL and MariaDB get
/// the expanded OR form, which their range optimizer turns into index ranges.
pub(crate) fn after_condition(backend: Backend, columns: &[&str]) -> String {
    match (backend, columns) {
        (_, [one]) => format!("{one} > ?"),
        (Backend::Sqlite | Backend::Postgres, _) => {
            format!("({}) > ({})", columns.join(", "), vec!["?"; columns.len()].join(", "))
        }
        (Backend::Mysql, _) => {
            // a > ? OR (a = ? AND (b > ? OR (b = ? AND c > ?)))
            let mut sql = format!("{} > ?", columns[columns.len() - 1]);
            for column in columns[..columns.len() - 1].iter().rev() {
                sql = format!("{column} > ? OR ({column} = ? AND ({sql}))");
            }
            format!("({sql})")
        }
    }
}

/// How many times each key value is bound by [`after_condition`] on `backend`: once each for a
/// row value, twice for every column but the last in the OR form.
pub(crate) fn after_bind_counts(backend: Backend, columns: usize) -> Vec<usize> {
    match backend {
        Backend::Mysql if columns > 1 => (0..columns).map(|i| if i + 1 == columns { 1 } else { 2 }).collect(),
        _ => vec![1; columns],
    }
}

/// The clamped statement limit of a batch of `limit` rows: at least one, at most [`MAX_BATCH`].
pub(crate) fn batch_limit(limit: usize) -> i64 {
    limit.clamp(1, MAX_BATCH) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_after_condition_is_a_row_value_or_the_expanded_or_form() {
        let key = ["process_guid", "instance_index", "presence"];
        assert_eq!(after_condition(Backend::Sqlite, &key), "(process_guid, instance_index, presence) > (?, ?, ?)");
        assert_eq!(
            after_condition(Backend::Mysql, &key),
            "(process_guid > ? OR (process_guid = ? AND (instance_index > ? OR (instance_index = ? AND \
             (presence > ?)))))"
        );
        assert_eq!(after_bind_counts(Backend::Mysql, 3), [2, 2, 1]);
        assert_eq!(after_bind_counts(Backend::Postgres, 3), [1, 1, 1]);
        assert_eq!(after_condition(Backend::Mysql, &["guid"]), "guid > ?");
        assert_eq!(after_bind_counts(Backend::Mysql, 1), [1]);
    }
}
