//! Loading a component's configuration, the one way every diego-rs process does it: a TOML file
//! (every field optional, unknown fields refused) whose values flags override, checked once by
//! the component's rules into a [`Valid`] configuration that `run()` takes.
//!
//! What lives here: [`ConfigFile::load`] and its parts (reading and parsing the file:
//! [`from_file`], [`load`]; the component's [`Validate`] rules), human durations in
//! it ([`parse_duration`], the serde adapter [`duration`]), applying a flag ([`set`]), the one
//! [`ConfigError`], the [`Valid`] wrapper and what a binary does with a refused configuration
//! ([`ConfigError::exit`]: one line on stderr, exit code [`EXIT_INVALID_CONFIG`]). What does not:
//! each component's fields, defaults and rules, which stay in its own `config.rs`.

pub mod tls;

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// The exit code of every binary whose configuration is refused (`EX_USAGE` of sysexits.h, as
/// linkerd uses it).
pub const EXIT_INVALID_CONFIG: u8 = 64;

/// Why a configuration was refused. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {}", one_line_toml_error(.source))]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: toml::de::Error,
    },
    /// A value breaks a rule.
    #[error("invalid config: {field} {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
}

impl ConfigError {
    /// A value of `field` breaks `rule` (worded to follow the field: "must be positive").
    pub fn invalid(field: &'static str, rule: impl Into<String>) -> Self {
        Self::Invalid { field, rule: rule.into() }
    }

    /// What a binary does with a refused configuration: prints `component: <why>` as one line on
    /// stderr and returns exit code [`EXIT_INVALID_CONFIG`].
    pub fn exit(&self, component: &str) -> ExitCode {
        crate::process::flush_logs();
        eprintln!("{component}: {}", one_line(self));
        ExitCode::from(EXIT_INVALID_CONFIG)
    }
}

/// A TOML error's position and message on one line (its `Display` draws the offending line with a
/// caret under it over several lines).
fn one_line_toml_error(error: &toml::de::Error) -> String {
    let text = error.to_string();
    let position = text.lines().next().and_then(|first| first.strip_prefix("TOML parse error at "));
    match position {
        Some(position) => format!("{position}: {}", one_line(&error.message())),
        None => one_line(&text),
    }
}

/// `text` with every run of whitespace, newlines included, made one space.
fn one_line(text: &dyn fmt::Display) -> String {
    text.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads a TOML file into `T` (whose serde attributes decide defaults and unknown fields).
pub fn from_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })
}

/// The file at `path`, or `T::default()` without one.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    match path {
        Some(path) => from_file(path),
        None => Ok(T::default()),
    }
}

/// Replaces `field` with a flag's value when the flag was given.
pub fn set<T>(field: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *field = value;
    }
}

/// Refuses the first of `fields` (name, value) that is empty or only whitespace: the rule every
/// component's addresses and names share.
pub fn require_non_empty(fields: &[(&'static str, &str)]) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, value)| value.trim().is_empty()) {
        Some((field, _)) => Err(ConfigError::invalid(field, "must not be empty")),
        None => Ok(()),
    }
}

/// Refuses the first of `fields` (name, value) that is zero: the rule every component's
/// intervals and timeouts share.
pub fn require_positive(fields: &[(&'static str, Duration)]) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, value)| value.is_zero()) {
        Some((field, _)) => Err(ConfigError::invalid(field, "must be positive")),
        None => Ok(()),
    }
}

/// Parses `"250ms"`, `"15s"`, `"2m"`, `"1h"` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. 15s or 500ms"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" | "" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("invalid duration unit in {text:?}: use ms, s, m or h")),
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Durations in a TOML file are human strings (`"15s"`, `"500ms"`, `"2m"`): put
/// `#[serde(with = "svc::config::duration")]` on a `Duration` field.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads a duration written as [`super::parse_duration`] accepts it.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    /// Writes a duration in milliseconds (`"1500ms"`), which reads back unchanged.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", value.as_millis()))
    }
}

/// A component's rules over its configuration.
pub trait Validate: Sized {
    /// Checks every rule; the first one broken is the error.
    fn check(&self) -> Result<(), ConfigError>;
}

/// A component's configuration file: its TOML form (serde, with the defaults of `Default`), the
/// flags that override it and its rules. [`ConfigFile::load`] is what every binary calls.
pub trait ConfigFile: Validate + DeserializeOwned + Default {
    /// The command-line flags that replace the file's values when given.
    type Overrides: clap::Args;

    /// Applies the flags that are set.
    fn with_overrides(self, overrides: Self::Overrides) -> Self;

    /// The file (or the defaults without one), the flags applied, validated.
    fn load(path: Option<&Path>, overrides: Self::Overrides) -> Result<Valid<Self>, ConfigError> {
        Valid::new(load::<Self>(path)?.with_overrides(overrides))
    }

    /// [`ConfigFile::load`] from a binary's [`Flags`].
    fn from_flags(flags: Flags<Self::Overrides>) -> Result<Valid<Self>, ConfigError> {
        Self::load(flags.config.as_deref(), flags.overrides)
    }
}

/// The flags every binary takes for its configuration: `--config FILE` and the component's own
/// flags, which replace the file's values. A binary flattens it into its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags<O: clap::Args> {
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The component's flags.
    #[command(flatten)]
    pub overrides: O,
}

/// A configuration its component's rules accepted: the type `run()` takes, so a configuration is
/// checked once, where it is loaded, and never again. Read it through `Deref`; to change a field,
/// take it out with [`Valid::into_inner`] and validate again.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid<T>(T);

impl<T: Validate> Valid<T> {
    /// Checks `config` against its rules.
    pub fn new(config: T) -> Result<Self, ConfigError> {
        config.check()?;
        Ok(Self(config))
    }
}

impl<T> Valid<T> {
    /// The configuration, no longer marked as checked.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Valid<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// What a `run()` accepts: a [`Valid`] configuration as it is, or a plain one, which is checked
/// there (tests and in-process clusters build configurations by hand).
pub trait IntoValid<T> {
    /// The configuration, checked if it was not yet.
    fn into_valid(self) -> Result<Valid<T>, ConfigError>;
}

impl<T: Validate> IntoValid<T> for T {
    fn into_valid(self) -> Result<Valid<T>, ConfigError> {
        Valid::new(self)
    }
}

impl<T> IntoValid<T> for Valid<T> {
    fn into_valid(self) -> Result<Valid<T>, ConfigError> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human_and_bounded() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 15s "), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("2 fortnights").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("99999999999999999h").unwrap_err().contains("too large"));
    }

    #[test]
    fn the_shared_rules_name_the_first_field_that_breaks_them() {
        assert!(require_non_empty(&[("a", "x"), ("b", "y")]).is_ok());
        let refused = require_non_empty(&[("a", "x"), ("b", " "), ("c", "")]).unwrap_err().to_string();
        assert!(refused.ends_with(": b must not be empty"), "{refused}");
        assert!(require_positive(&[("t", Duration::from_millis(1))]).is_ok());
        let refused =
            require_positive(&[("t", Duration::from_secs(1)), ("u", Duration::ZERO)]).unwrap_err().to_string();
        assert!(refused.ends_with(": u must be positive"), "{refused}");
    }
}
