//! Which rule of [`RULES`](super::RULES) carries out a command of the guide, and the checks and
//! rewrites of a command's words the rules make.

use super::{Kind, LAYERED};

/// Absolute paths outside [`LAYERED`] a command may name: files it only reads, and `/health`, an
/// HTTP path (`--health-check-path`).
const NAMED_ONLY: [&str; 5] = ["/dev/null", "/dev/stdin", "/dev/urandom", "/usr/sbin/nologin", "/health"];

/// The first words of the commands run as written.
const AS_WRITTEN: [&str; 8] = ["tar", "cd", "sha256sum", "install", "printf", "sed", "export", "diego"];

/// Which rule carries out `command` (after the address and version substitutions), or `None`.
pub fn classify(command: &str) -> Option<Kind> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let first = *words.first()?;
    let kind = match words.as_slice() {
        ["apt-get", "install", "-y", _, ..] => Kind::Packages,
        ["useradd", .., _] => Kind::AddUser,
        ["runuser", "-u", "postgres", "--", "psql" | "createdb", ..] => Kind::Postgres,
        ["systemctl", "daemon-reload"] => Kind::DaemonReload,
        ["systemctl", "enable", "--now", _, ..] => Kind::EnableNow,
        ["journalctl", ..] => Kind::Journal,
        ["scp", .., target] if target.starts_with("root@") && target.contains(':') => Kind::Scp,
        ["ssh", target, _, ..] if target.starts_with("root@") => Kind::Ssh,
        ["curl", "-s", url, ..] if url.starts_with("127.0.0.1:") => Kind::Readiness,
        ["diego", ..] if subcommand(&words) == Some("cells") => Kind::Cells,
        ["diego", "lrp", _] => Kind::LrpRunning,
        _ if AS_WRITTEN.contains(&first) || is_assignment(first) => Kind::AsWritten,
        _ => return None,
    };
    Some(kind)
}

/// The first word of a `diego` command that is neither a flag nor a flag's value.
fn subcommand<'a>(words: &[&'a str]) -> Option<&'a str> {
    let mut rest = words.iter().skip(1);
    while let Some(word) = rest.next() {
        if word.starts_with("--") {
            if !word.contains('=') {
                rest.next();
            }
        } else {
            return Some(word);
        }
    }
    None
}

/// `NAME=...`: a shell variable assignment.
fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// `text` with every whole-word `word` (not part of a longer name of letters, digits, `_`, `-`)
/// replaced by `with`.
pub fn replace_word(text: &str, word: &str, with: &str) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_name) || after.is_some_and(is_name) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// The quoted answer in a readiness line's comment: `curl ...   # "leader" once ...` → `leader`.
pub fn expected_answer(command: &str) -> Option<&str> {
    let comment = &command[command.find(" #")? + 2..];
    let start = comment.find('"')? + 1;
    let end = start + comment[start..].find('"')?;
    Some(&comment[start..end])
}

/// Every absolute path `command` names is under [`LAYERED`] or in [`NAMED_ONLY`]; how many are
/// under [`LAYERED`].
pub(super) fn check_paths(command: &str) -> Result<usize, String> {
    let code = command.find(" #").map_or(command, |at| &command[..at]);
    let mut layered = 0;
    for word in code.split_whitespace() {
        let word = word.trim_start_matches(['>', '<', '\'', '"', '(', '$']);
        let word = word.trim_end_matches(['\'', '"', ')', ';']);
        if !word.starts_with('/') {
            continue;
        }
        let under = |dir: &str| word == dir || word.starts_with(&format!("{dir}/"));
        if LAYERED.iter().any(|d| under(d)) {
            layered += 1;
        } else if !NAMED_ONLY.contains(&word) {
            return Err(format!(
                "it names {word}, outside the directories each host layers over the machine's ({}): add the \
                 directory to LAYERED, or the path to NAMED_ONLY if it is only read",
                LAYERED.join(", ")
            ));
        }
    }
    Ok(layered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_classified_by_the_table() {
        assert_eq!(classify("apt-get install -y curl"), Some(Kind::Packages));
        assert_eq!(classify("systemctl enable --now bbs"), Some(Kind::EnableNow));
        assert_eq!(classify("systemctl restart bbs"), None);
        assert_eq!(classify("scp a b root@10.1.1.12:/etc/diego/tls/"), Some(Kind::Scp));
        assert_eq!(classify("ssh root@10.1.1.12 'true'"), Some(Kind::Ssh));
        assert_eq!(classify("curl -s 127.0.0.1:8890/leader   # \"leader\""), Some(Kind::Readiness));
        assert_eq!(classify("diego --bbs-address a:1 --tls-ca x cells"), Some(Kind::Cells));
        assert_eq!(classify("diego lrp demo"), Some(Kind::LrpRunning));
        assert_eq!(classify("diego desire-lrp --guid demo"), Some(Kind::AsWritten));
        assert_eq!(classify("password=$(head -c 18 /dev/urandom)"), Some(Kind::AsWritten));
        assert_eq!(classify("rm -rf /"), None);
    }

    #[test]
    fn words_answers_and_paths() {
        assert_eq!(replace_word("createdb --owner diego diego", "diego", "x"), "createdb --owner x x");
        assert_eq!(replace_word("diego-rs diego_x /diego\"", "diego", "x"), "diego-rs diego_x /x\"");
        assert_eq!(expected_answer("curl -s 127.0.0.1:8890/leader   # \"leader\" once"), Some("leader"));
        assert_eq!(expected_answer("curl -s 127.0.0.1:1800/healthz"), None);
        assert!(check_paths("install -m 0755 bin/* /usr/local/bin/").is_ok());
        assert!(check_paths("printf x >/etc/diego/encryption.keys").is_ok());
        assert!(check_paths("install -m 0644 x /opt/diego/").is_err());
    }
}
