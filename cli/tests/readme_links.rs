//! Every relative link in README.md, examples/README.md and docs/ (every `*.md` under it) points
//! to a file or directory of the repository, and a `#fragment` into a Markdown file names one of
//! its headings; README.md and examples/README.md link to nothing outside the repository.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Markdown files checked, relative to the repository root.
fn documents() -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("README.md"), PathBuf::from("examples/README.md")];
    let mut dirs = vec![PathBuf::from("docs")];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(root().join(&dir)).unwrap().map(|e| dir.join(e.unwrap().file_name())).collect();
        entries.sort();
        for entry in entries {
            if root().join(&entry).is_dir() {
                dirs.push(entry);
            } else if entry.extension().is_some_and(|e| e == "md") {
                found.push(entry);
            }
        }
    }
    found
}

/// The text outside fenced code blocks and code spans, line by line (numbered from 1). A code
/// span may run over a line break, not over a blank line.
fn prose(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut fenced = false;
    let mut in_span = false;
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if line.trim().is_empty() {
            in_span = false;
        }
        // An indented block (4 spaces after a blank line) is code too; README uses them for
        // command lists, which hold no links.
        if fenced || line.starts_with("    ") && !line.trim_start().starts_with(['-', '|', '[']) {
            continue;
        }
        let mut outside = String::new();
        for c in line.chars() {
            if c == '`' {
                in_span = !in_span;
                outside.push(' ');
            } else if !in_span {
                outside.push(c);
            }
        }
        lines.push((number + 1, outside));
    }
    lines
}

/// The targets of the inline links `[text](target)` and reference definitions `[x]: target`.
fn links(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].trim().trim_start_matches('<').trim_end_matches('>');
        // `[a](b "title")`: the target is the first word.
        found.push(target.split_whitespace().next().unwrap_or_default().to_owned());
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some((label, target)) = trimmed.split_once("]: ")
        && !label.contains(']')
    {
        found.push(target.split_whitespace().next().unwrap_or_default().to_owned());
    }
    found
}

/// GitHub's anchor of a heading: lowercase, spaces to `-`, punctuation other than `-` and `_`
/// dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings.
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:") || target.starts_with("www.")
}

#[test]
fn every_relative_link_points_to_a_file_of_the_repository() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = std::fs::read_to_string(root().join(&document)).unwrap();
        let base = document.parent().unwrap_or(Path::new("")).to_owned();
        for (number, line) in prose(&text) {
            for target in links(&line) {
                if target.is_empty() || is_external(&target) {
                    continue;
                }
                checked += 1;
                let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
                let file = if path.is_empty() { document.clone() } else { base.join(path) };
                let where_ = format!("{}:{number}: {target}", document.display());
                let full = root().join(&file);
                if !full.exists() {
                    broken.push(format!("{where_} (no {})", file.display()));
                    continue;
                }
                if !fragment.is_empty() && full.extension().is_some_and(|e| e == "md") {
                    let target_text = std::fs::read_to_string(&full).unwrap();
                    if !anchors(&target_text).iter().any(|a| a == fragment) {
                        broken.push(format!("{where_} (no heading #{fragment} in {})", file.display()));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 20, "only {checked} links found: the parser misses them");
}

#[test]
fn the_readmes_link_to_nothing_outside_the_repository() {
    for document in ["README.md", "examples/README.md"] {
        let text = std::fs::read_to_string(root().join(document)).unwrap();
        let external: Vec<String> = prose(&text)
            .into_iter()
            .flat_map(|(number, line)| {
                let mut found: Vec<String> = links(&line).into_iter().filter(|t| is_external(t)).collect();
                // A bare URL outside code renders as a link too.
                found.extend(
                    line.split_whitespace()
                        .filter(|w| w.contains("http://") || w.contains("https://"))
                        .map(str::to_owned),
                );
                found.into_iter().map(move |t| format!("{document}:{number}: {t}"))
            })
            .collect();
        assert!(external.is_empty(), "links outside the repository:\n{}", external.join("\n"));
    }
}

#[test]
fn the_link_parser_finds_links_and_skips_code() {
    assert_eq!(links("see [a](docs/a.md) and [b](<b c.md> \"t\")"), vec!["docs/a.md", "b"]);
    assert_eq!(links("[ref]: docs/x.md"), vec!["docs/x.md"]);
    let text = "[a](x.md)\n```\n[b](y.md)\n```\n`[c](z.md)` [d](w.md) `a\n[e](v.md)` [f](u.md)";
    let found: Vec<String> = prose(text).into_iter().flat_map(|(_, l)| links(&l)).collect();
    assert_eq!(found, vec!["x.md", "w.md", "u.md"]);
    assert_eq!(anchor("Running the servers separately"), "running-the-servers-separately");
    assert_eq!(anchor(" `cell-rep`"), "cell-rep");
    assert_eq!(anchor("Build and test"), "build-and-test");
}
