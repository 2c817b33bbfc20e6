//! Every bound a request must stay within, in one table.
//!
//! [`crate::bounds`] walks each request's wire bytes before it is decoded, so these limits hold
//! for every service (Bbs, Locket, Auctioneer, Rep) and every field, nested or not, without a
//! hand-written check per message. A field with no row of its own gets the defaults
//! ([`MAX_STRING_BYTES`], [`MAX_REPEATED`]); a row names a field as `Message.field` (the short
//! message name, any package) or `*.field` (that field in every message), exact rows first.
//!
//! The rules that need more than one field (duplicate ports, an env name's syntax, credentials
//! in pairs) stay with the domain validators in [`crate::models::validation`]. Operators can
//! lower some ceilings further (the BBS's `max_lrp_instances`); the table holds the hard caps
//! that protect the processes themselves.

mod table;

pub use table::*;

/// The limits as a Markdown page: what `docs/limits.md` holds (a test keeps the two equal).
pub fn markdown() -> String {
    let mut out = String::from(
        "# Request limits\n\n\
         Generated from `proto/src/limits.rs` (`cargo test -p proto --test limits_doc` checks it; \
         `DIEGO_BLESS=1` rewrites it). Every request of every service (Bbs, Locket, Auctioneer, \
         Rep) is checked against these before it is decoded; a refusal is INVALID_ARGUMENT naming \
         the field path and the limit, and nothing is written. A row names `Message.field` or \
         `*.field` (that field in every message).\n\n## Whole requests\n\n| limit | value | why |\n|---|---|---|\n",
    );
    let whole: [(&str, String, &str); 10] = [
        (
            "request size",
            format!("{MAX_REQUEST_BYTES} bytes"),
            "the gRPC default every client accepts; each server's `max_request_bytes` (1 MiB to 256 MiB) \
             changes it, and a larger message is RESOURCE_EXHAUSTED. On MySQL the BBS serves at most the \
             server's `max_allowed_packet` less 64 KiB, the most one statement may carry: it logs a warning \
             when that lowers its limit, and does not start when it leaves less than 1 MiB",
        ),
        ("message nesting", format!("{MAX_MESSAGE_DEPTH} levels"), "below the decoder's recursion limit of 100"),
        (
            "action tree depth",
            format!("{MAX_ACTION_DEPTH} actions"),
            "two messages per level, well inside the nesting limit",
        ),
        ("children of one action", format!("{MAX_ACTIONS_PER_LIST}"), "one process per parallel child"),
        (
            "string, default",
            format!("{MAX_STRING_BYTES} bytes"),
            "PATH_MAX; no NUL, no control characters but tab and newlines",
        ),
        ("bytes, default", format!("{MAX_BYTES_BYTES} bytes"), "route values and other opaque blobs"),
        ("repeated field or map, default", format!("{MAX_REPEATED} elements"), "no list a scheduler needs is longer"),
        (
            "environment of an LRP or task; arguments plus env of a run action",
            format!("{MAX_ENV_BYTES} bytes"),
            "half of Linux's default ARG_MAX, so every process can be exec'd",
        ),
        (
            "instances of one desired LRP",
            format!("{MAX_LRP_INSTANCES}"),
            "hard cap; the BBS's `max_lrp_instances` (default 100000) lowers it",
        ),
        (
            "instances of all desired LRPs of one `DesireLRPs` call",
            format!("{MAX_BATCH_INSTANCES}"),
            "the UNCLAIMED rows one transaction inserts; each LRP is also held to `max_lrp_instances`",
        ),
    ];
    for (what, value, why) in whole {
        out.push_str(&format!("| {what} | {value} | {why} |\n"));
    }
    out.push_str("\n## Strings and bytes\n\n| field | at most (bytes) | characters | why |\n|---|---|---|---|\n");
    for r in STRINGS {
        let text = match r.text {
            Text::Printable => "printable",
            Text::Raw => "any but NUL",
            Text::EnvName => "printable, no `=`",
        };
        out.push_str(&format!("| `{}` | {} | {text} | {} |\n", r.field, r.max_bytes, r.why));
    }
    out.push_str("\n## Repeated fields and maps\n\n| field | at most | why |\n|---|---|---|\n");
    for r in COUNTS {
        out.push_str(&format!("| `{}` | {} | {} |\n", r.field, r.max, r.why));
    }
    out.push_str("\n## Integer ranges\n\n| field | from | to | why |\n|---|---|---|---|\n");
    for r in RANGES {
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", r.field, r.min, r.max, r.why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rows_win_over_wildcards_and_defaults_fill_the_rest() {
        assert_eq!(string_limit("EnvironmentVariable", "value").0, MAX_ARG_BYTES - 1026);
        assert_eq!(string_limit("RunAction", "path"), (MAX_STRING_BYTES, Text::Printable));
        assert_eq!(string_limit("Task", "result"), (10 * 1024, Text::Raw));
        assert_eq!(count_limit("ParallelAction", "actions"), MAX_ACTIONS_PER_LIST);
        assert_eq!(count_limit("DesiredLRP", "environment_variables"), MAX_REPEATED);
        assert_eq!(range_limit("DesiredLRP", "instances"), Some((0, MAX_LRP_INSTANCES)));
        assert_eq!(range_limit("PortMapping", "host_port"), Some((0, 65_535)));
        assert_eq!(range_limit("TCPCheck", "port"), Some((1, 65_535)));
        assert_eq!(range_limit("DesiredLRP", "created_at"), None);
    }

    #[test]
    fn every_row_names_a_field_once() {
        let keys: Vec<&str> = STRINGS
            .iter()
            .map(|r| r.field)
            .chain(COUNTS.iter().map(|r| r.field))
            .chain(RANGES.iter().map(|r| r.field))
            .collect();
        for key in &keys {
            assert!(key.split_once('.').is_some_and(|(m, f)| !m.is_empty() && !f.is_empty()), "{key}");
        }
        for rows in [
            STRINGS.iter().map(|r| r.field).collect::<Vec<_>>(),
            COUNTS.iter().map(|r| r.field).collect(),
            RANGES.iter().map(|r| r.field).collect(),
        ] {
            let mut sorted = rows.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), rows.len(), "a field has two rows");
        }
    }
}
