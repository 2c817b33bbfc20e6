//! Formatting helpers shared by the reports, the charts and the configs: durations and ratios
//! for people, chart file names, and database URLs without their passwords.

/// A duration in milliseconds, in the unit that reads best.
pub fn ms(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 1.0 {
        format!("{v:.3} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else if v < 1_000.0 {
        format!("{v:.0} ms")
    } else {
        format!("{:.2} s", v / 1_000.0)
    }
}

/// `a / b` as a factor.
pub fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        "-".into()
    } else {
        let r = a / b;
        if r >= 0.1 {
            format!("{r:.2}x")
        } else if r > 0.0 {
            format!("1/{:.0}", 1.0 / r)
        } else {
            "0x".into()
        }
    }
}

/// `RepBulkFetching` → `repbulkfetching`; `RawSQL per-cell actual_lrps` → `rawsql-per-cell-actual_lrps`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// A database URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..scheme_end], &rest[..colon], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Serializes a database URL without its password.
pub fn redacted<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redact(url)),
        None => s.serialize_none(),
    }
}

/// Serializes a duration as seconds (`#[serde(with = "crate::format::secs")]`).
pub mod secs {
    use std::time::Duration;

    /// The duration in (fractional) seconds.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        assert_eq!(super::slug("RepBulkFetching"), "repbulkfetching");
        assert_eq!(super::slug("RawSQL per-cell actual_lrps"), "rawsql-per-cell-actual_lrps");
        assert_eq!(super::slug("RawSQL scan actual + scheduling"), "rawsql-scan-actual-scheduling");
    }
}
