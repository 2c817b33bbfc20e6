//! Writing results: aligned tables for people, JSON for scripts, and the small formatting
//! helpers (ages, sizes) the tables share. Every write goes through [`print`], so a closed
//! pipe becomes an error the binary treats as a quiet exit instead of a panic.

use std::io::Write;

use serde::Serialize;

use crate::error::Error;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned tables and short sentences.
    Table,
    /// JSON (one document; one line per event for `events`).
    Json,
}

impl Format {
    /// `Json` when `--json` was given.
    pub fn from_flag(json: bool) -> Format {
        if json { Format::Json } else { Format::Table }
    }
}

/// Writes `text` and a newline to standard output, flushed.
pub fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(Error::Output)
}

/// Writes `value` as indented JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Error> {
    // Serializing plain data structs cannot fail; fall back to null rather than panic.
    print(&serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned()))
}

/// Writes `value` as one line of JSON.
pub fn print_json_line<T: Serialize>(value: &T) -> Result<(), Error> {
    print(&serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
}

/// A table with a header row; columns are padded to their widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Appends a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, without a trailing newline.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            text.trim_end().to_owned()
        };
        let mut lines = vec![line(self.headers.clone())];
        for row in &self.rows {
            let cells: Vec<&str> = (0..columns).map(|i| row.get(i).map_or("", String::as_str)).collect();
            lines.push(line(cells));
        }
        lines.join("\n")
    }
}

/// `-` for an empty cell.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() { "-".to_owned() } else { text.to_owned() }
}

/// Nanoseconds since the Unix epoch, now.
// The CLI only prints ages for people; there is no control loop here to drive with a fake
// clock, so the host clock is what we want.
pub fn now_ns() -> i64 {
    svc::clock::Clock::now_ns(&svc::clock::SystemClock)
}

/// How long ago `since_ns` was, compactly: `42s`, `5m3s`, `2h10m`, `3d4h`; `-` when unset.
pub fn age(since_ns: i64, now_ns: i64) -> String {
    if since_ns <= 0 {
        return "-".to_owned();
    }
    let seconds = (now_ns.saturating_sub(since_ns) / 1_000_000_000).max(0);
    let (d, h, m, s) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    match () {
        _ if d > 0 => format!("{d}d{h}h"),
        _ if h > 0 => format!("{h}h{m}m"),
        _ if m > 0 => format!("{m}m{s}s"),
        _ => format!("{s}s"),
    }
}

/// `ns` (since the Unix epoch) as an RFC 3339 UTC time with milliseconds:
/// `2026-12-03T23:59:01.123Z`.
pub fn rfc3339(ns: i64) -> String {
    proto::time::rfc3339_millis(ns.div_euclid(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_every_column_but_the_last() {
        let mut table = Table::new(&["GUID", "STATE", "DETAILS"]);
        table.row(vec!["web".into(), "RUNNING".into(), String::new()]);
        table.row(vec!["worker-long".into(), "CRASHED".into(), "exit status 1".into()]);
        assert_eq!(
            table.render(),
            "GUID         STATE    DETAILS\nweb          RUNNING\nworker-long  CRASHED  exit status 1"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_341_141_123_456_789), "2026-12-03T23:39:01.123Z");
    }

    #[test]
    fn ages_are_compact() {
        let s = 1_000_000_000;
        assert_eq!(age(0, 5 * s), "-");
        assert_eq!(age(s, 43 * s), "42s");
        assert_eq!(age(s, (1 + 303) * s), "5m3s");
        assert_eq!(age(s, (1 + 2 * 3600 + 600) * s), "2h10m");
        assert_eq!(age(s, (1 + 3 * 86_400 + 4 * 3600) * s), "3d4h");
    }
}
