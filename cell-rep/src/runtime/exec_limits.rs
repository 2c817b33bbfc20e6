//! What `execve(2)` accepts: a pure check of a resolved command line and environment, so the rep
//! refuses a process it could never start with a reason users can act on, instead of spawning,
//! failing with `E2BIG` ("Argument list too long") and crash-looping.
//!
//! Linux refuses an exec when
//! - a single argument or `NAME=value` string, with its NUL terminator, is longer than
//!   `MAX_ARG_STRLEN` (32 pages, 131072 bytes), whatever the total;
//! - all strings (with their terminators) plus one pointer per string exceed the argument space,
//!   a quarter of the stack rlimit (`sysconf(_SC_ARG_MAX)`, 2 MiB with the usual 8 MiB stack) and
//!   never more than 6 MiB.
//!
//! Strings carrying a NUL byte cannot be passed at all (C strings end there), and an environment
//! name that is empty or contains `=` cannot be told apart from its value. The executor checks
//! every run action of a request before starting anything (`actions::preflight`); the runtimes
//! check again before each spawn.

use std::fmt::Write as _;

/// The longest single argument or environment string, terminator included (`MAX_ARG_STRLEN`).
pub const MAX_ARG_STRLEN: usize = 131_072;

/// The kernel's cap on the argument space, whatever the stack rlimit (3/4 of `_STK_LIM`).
const KERNEL_ARG_SPACE_CAP: usize = 6 * 1024 * 1024;

/// Room kept for what the runtimes add after the check: `PATH`, `HOME`, `TMPDIR` and the limit
/// wrappers' own arguments (`prlimit --as=.. -- nice -n ..`).
pub const RUNTIME_OVERHEAD: usize = 4096;

/// The limits a command line and environment are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Total bytes of strings and pointers.
    pub arg_space: usize,
    /// Longest single string, terminator included.
    pub max_string: usize,
}

impl ExecLimits {
    /// This host's limits: a quarter of the stack rlimit processes inherit from the rep (what
    /// `sysconf(_SC_ARG_MAX)` reports, read from `/proc/self/limits`), capped at the kernel's
    /// 6 MiB, minus [`RUNTIME_OVERHEAD`]. 2 MiB when the rlimit cannot be read. Read once per
    /// process (the rep never changes its rlimits): reading the file for every container was 2%
    /// of the smoke benchmark's CPU.
    pub fn host() -> Self {
        static HOST: std::sync::OnceLock<ExecLimits> = std::sync::OnceLock::new();
        *HOST.get_or_init(Self::read_host)
    }

    fn read_host() -> Self {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let space = stack_soft_limit(&limits).map_or(2 * 1024 * 1024, |stack| stack / 4);
        let arg_space = space.clamp(MAX_ARG_STRLEN, KERNEL_ARG_SPACE_CAP).saturating_sub(RUNTIME_OVERHEAD);
        ExecLimits { arg_space, max_string: MAX_ARG_STRLEN }
    }
}

/// The soft `Max stack size` of a `/proc/<pid>/limits` text; `usize::MAX` when unlimited.
fn stack_soft_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max stack size"))?;
    let soft = line.trim_start_matches("Max stack size").split_whitespace().next()?;
    if soft == "unlimited" { Some(usize::MAX) } else { soft.parse().ok() }
}

/// Why a process cannot be exec'd. The text is the failure / crash reason users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecRefusal {
    /// The executable path, an argument, or an environment name or value contains a NUL byte.
    #[error("{what} contains a NUL byte, which cannot be passed to exec")]
    NulByte {
        /// What carries it, e.g. `argument 2` or `environment variable "A"`.
        what: String,
    },
    /// An environment variable has an empty name.
    #[error("environment variable with an empty name cannot be passed to exec")]
    EmptyEnvName,
    /// An environment variable name contains `=`.
    #[error("environment variable name {name:?} contains '=', which cannot be passed to exec")]
    EnvNameWithEquals {
        /// The name (shortened).
        name: String,
    },
    /// One environment string is longer than [`MAX_ARG_STRLEN`].
    #[error("environment too large to exec: variable {name:?} is {bytes} bytes, limit {limit} bytes per variable")]
    EnvVarTooLong {
        /// The name (shortened).
        name: String,
        /// Bytes of `NAME=value` with its terminator.
        bytes: usize,
        /// [`MAX_ARG_STRLEN`].
        limit: usize,
    },
    /// One argument is longer than [`MAX_ARG_STRLEN`].
    #[error("command line too large to exec: {what} is {bytes} bytes, limit {limit} bytes per argument")]
    ArgTooLong {
        /// `the executable path` or `argument N`.
        what: String,
        /// Bytes with its terminator.
        bytes: usize,
        /// [`MAX_ARG_STRLEN`].
        limit: usize,
    },
    /// Everything together does not fit the argument space.
    #[error("{part} too large to exec: {bytes} bytes of arguments and environment, limit {limit}")]
    TooLarge {
        /// `environment` or `command line`, whichever is larger.
        part: &'static str,
        /// Bytes of strings, terminators and pointers.
        bytes: usize,
        /// The argument space.
        limit: usize,
    },
}

/// At most 64 characters of `name`, for messages.
fn short(name: &str) -> String {
    let mut out: String = name.chars().take(64).collect();
    if out.len() < name.len() {
        out.push('…');
    }
    out
}

/// `env` with duplicates removed, the later one winning, in order of last occurrence: what a
/// process started with it actually receives.
pub fn effective_env(env: &[(String, String)]) -> Vec<&(String, String)> {
    env.iter()
        .enumerate()
        .filter(|(i, (key, _))| !env[i + 1..].iter().any(|(k, _)| k == key))
        .map(|(_, kv)| kv)
        .collect()
}

/// Checks that `path` with `args` (not including the executable) and the environment `env`
/// (duplicates allowed; the later wins) can be passed to `execve` under `limits`.
pub fn check_exec(
    path: &str,
    args: &[String],
    env: &[(String, String)],
    limits: ExecLimits,
) -> Result<(), ExecRefusal> {
    const POINTER: usize = std::mem::size_of::<usize>();
    if path.contains('\0') {
        return Err(ExecRefusal::NulByte { what: "the executable path".into() });
    }
    if path.len() + 1 > limits.max_string {
        return Err(ExecRefusal::ArgTooLong {
            what: "the executable path".into(),
            bytes: path.len() + 1,
            limit: limits.max_string,
        });
    }
    // argv[0] is the path, and the kernel also copies the file name onto the new stack.
    let mut arg_bytes = 2 * (path.len() + 1) + POINTER;
    for (i, arg) in args.iter().enumerate() {
        let what = || format!("argument {}", i + 1);
        if arg.contains('\0') {
            return Err(ExecRefusal::NulByte { what: what() });
        }
        if arg.len() + 1 > limits.max_string {
            return Err(ExecRefusal::ArgTooLong { what: what(), bytes: arg.len() + 1, limit: limits.max_string });
        }
        arg_bytes += arg.len() + 1 + POINTER;
    }
    let mut env_bytes = 0usize;
    for (name, value) in effective_env(env) {
        if name.is_empty() {
            return Err(ExecRefusal::EmptyEnvName);
        }
        if name.contains('\0') || value.contains('\0') {
            let mut what = String::new();
            let _ = write!(what, "environment variable {:?}", short(&name.replace('\0', "\\0")));
            return Err(ExecRefusal::NulByte { what });
        }
        if name.contains('=') {
            return Err(ExecRefusal::EnvNameWithEquals { name: short(name) });
        }
        let bytes = name.len() + 1 + value.len() + 1;
        if bytes > limits.max_string {
            return Err(ExecRefusal::EnvVarTooLong { name: short(name), bytes, limit: limits.max_string });
        }
        env_bytes += bytes + POINTER;
    }
    let total = arg_bytes + env_bytes + 2 * POINTER;
    if total > limits.arg_space {
        let part = if env_bytes >= arg_bytes { "environment" } else { "command line" };
        return Err(ExecRefusal::TooLarge { part, bytes: total, limit: limits.arg_space });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ExecLimits = ExecLimits { arg_space: 200_000, max_string: MAX_ARG_STRLEN };

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn ordinary_processes_pass() {
        let args = vec!["-c".to_owned(), "echo hi".to_owned()];
        assert_eq!(check_exec("/bin/sh", &args, &env(&[("A", "1"), ("PORT", "8080")]), LIMITS), Ok(()));
        assert_eq!(check_exec("/bin/sh", &[], &[], ExecLimits::host()), Ok(()));
    }

    #[test]
    fn a_megabyte_variable_is_refused_with_its_size() {
        let big = "x".repeat(1 << 20);
        let refusal = check_exec("/bin/sh", &[], &env(&[("BIG", &big)]), LIMITS).expect_err("refused");
        assert_eq!(refusal, ExecRefusal::EnvVarTooLong { name: "BIG".into(), bytes: 1_048_581, limit: 131_072 });
        assert_eq!(
            refusal.to_string(),
            "environment too large to exec: variable \"BIG\" is 1048581 bytes, limit 131072 bytes per variable"
        );
    }

    #[test]
    fn the_string_limit_counts_the_terminator() {
        // "A=" + value + NUL == 131072 passes; one more byte does not.
        let fits = "v".repeat(MAX_ARG_STRLEN - 3);
        assert_eq!(check_exec("/bin/sh", &[], &env(&[("A", &fits)]), LIMITS), Ok(()));
        let over = "v".repeat(MAX_ARG_STRLEN - 2);
        assert!(matches!(
            check_exec("/bin/sh", &[], &env(&[("A", &over)]), LIMITS),
            Err(ExecRefusal::EnvVarTooLong { bytes: 131_073, .. })
        ));
        let arg = vec!["a".repeat(MAX_ARG_STRLEN)];
        assert_eq!(
            check_exec("/bin/sh", &arg, &[], LIMITS).expect_err("refused").to_string(),
            "command line too large to exec: argument 1 is 131073 bytes, limit 131072 bytes per argument"
        );
    }

    #[test]
    fn many_small_strings_can_exceed_the_total() {
        let value = "v".repeat(60_000);
        let many = env(&[("A", &value), ("B", &value), ("C", &value), ("D", &value)]);
        let refusal = check_exec("/bin/sh", &[], &many, LIMITS).expect_err("refused");
        assert!(matches!(refusal, ExecRefusal::TooLarge { part: "environment", limit: 200_000, .. }), "{refusal}");
        assert!(refusal.to_string().starts_with("environment too large to exec: "), "{refusal}");
    }

    #[test]
    fn a_duplicate_counts_once_and_the_later_one_is_checked() {
        let big = "x".repeat(MAX_ARG_STRLEN);
        assert_eq!(check_exec("/bin/sh", &[], &env(&[("A", &big), ("A", "small")]), LIMITS), Ok(()));
        assert!(check_exec("/bin/sh", &[], &env(&[("A", "small"), ("A", &big)]), LIMITS).is_err());
        let duplicated = env(&[("A", "1"), ("B", "2"), ("A", "3")]);
        let kept: Vec<&str> = effective_env(&duplicated).iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(kept, ["2", "3"]);
    }

    #[test]
    fn nul_bytes_and_bad_names_are_refused() {
        type Case = (&'static str, Vec<String>, Vec<(String, String)>, &'static str);
        let cases: [Case; 6] = [
            (
                "/bin/sh",
                vec![],
                env(&[("A", "x\0y")]),
                "environment variable \"A\" contains a NUL byte, which cannot be passed to exec",
            ),
            (
                "/bin/sh",
                vec![],
                env(&[("A\0B", "x")]),
                "environment variable \"A\\\\0B\" contains a NUL byte, which cannot be passed to exec",
            ),
            (
                "/bin/sh",
                vec!["ok".into(), "a\0".into()],
                vec![],
                "argument 2 contains a NUL byte, which cannot be passed to exec",
            ),
            ("/bin/s\0h", vec![], vec![], "the executable path contains a NUL byte, which cannot be passed to exec"),
            ("/bin/sh", vec![], env(&[("", "x")]), "environment variable with an empty name cannot be passed to exec"),
            (
                "/bin/sh",
                vec![],
                env(&[("A=B", "x")]),
                "environment variable name \"A=B\" contains '=', which cannot be passed to exec",
            ),
        ];
        for (path, args, env, want) in cases {
            let refusal = check_exec(path, &args, &env, LIMITS).expect_err(want);
            assert_eq!(refusal.to_string(), want);
        }
    }

    #[test]
    fn the_stack_rlimit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max stack size            8388608              unlimited            bytes\n";
        assert_eq!(stack_soft_limit(text), Some(8_388_608));
        assert_eq!(stack_soft_limit("Max stack size  unlimited  unlimited  bytes"), Some(usize::MAX));
        assert_eq!(stack_soft_limit(""), None);
    }

    #[test]
    fn the_host_limits_are_sane() {
        let host = ExecLimits::host();
        assert_eq!(host.max_string, MAX_ARG_STRLEN);
        assert!(host.arg_space >= MAX_ARG_STRLEN - RUNTIME_OVERHEAD);
        assert!(host.arg_space <= KERNEL_ARG_SPACE_CAP);
    }
}
