//! One line for a failed connection or call: the clear message of a TLS failure found anywhere in
//! an error's source chain, or the chain's messages joined.

use std::error::Error as StdError;
use std::io;

use rustls::AlertDescription;

use super::dial::DialError;

/// One line saying why `error` happened. A TLS handshake failure of [`crate::connect`]'s dialer
/// gives its own message ("server certificate for 127.0.0.1:8889 is not signed by the cluster CA
/// (ca.pem)"); a TLS error after the handshake (the server refused our certificate) is named as
/// such; anything else is the chain's distinct messages joined with `": "`.
pub fn describe(error: &(dyn StdError + 'static)) -> String {
    if let Some(tls) = tls_failure(error) {
        return tls;
    }
    let mut messages: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let message = error.to_string();
        if !message.is_empty() && !messages.iter().any(|m| m.contains(&message)) {
            messages.push(message);
        }
        next = inner_or_source(error);
    }
    messages.join(": ")
}

/// The one-line TLS failure somewhere in `error`'s source chain, if there is one (a refused
/// handshake, a certificate the server or we refused); `None` for any other failure.
pub fn tls_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(DialError::Tls(message)) = error.downcast_ref::<DialError>() {
            return Some(message.clone());
        }
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(rustls_error(tls));
        }
        // h2 keeps only the text of an IO error: an alert arrives as "received fatal alert: X".
        if let Some(refused) = alert_text(&error.to_string()) {
            return Some(refused);
        }
        next = inner_or_source(error);
    }
    None
}

/// The next error of a chain: io::Error's `source()` skips the error it wraps, so look into it.
fn inner_or_source<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    let inner = error.downcast_ref::<io::Error>().and_then(|e| e.get_ref()).map(|e| e as &(dyn StdError + 'static));
    inner.or_else(|| error.source())
}

/// A rustls error without the address it happened with.
pub(crate) fn rustls_error(error: &rustls::Error) -> String {
    match error {
        rustls::Error::AlertReceived(alert) => match refusal(*alert) {
            Some(why) => format!("the server refused our certificate ({why})"),
            None => format!("the peer ended the TLS session with alert {alert:?}"),
        },
        rustls::Error::InvalidCertificate(_) => format!("certificate refused: {error}"),
        _ => format!("TLS error: {error}"),
    }
}

/// The message of a rustls alert kept only as text (`received fatal alert: UnknownCA`).
fn alert_text(message: &str) -> Option<String> {
    let (_, name) = message.split_once("received fatal alert: ")?;
    let name = name.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or_default();
    let alert = [
        AlertDescription::CertificateRequired,
        AlertDescription::UnknownCA,
        AlertDescription::DecryptError,
        AlertDescription::CertificateExpired,
        AlertDescription::CertificateRevoked,
        AlertDescription::BadCertificate,
        AlertDescription::UnsupportedCertificate,
        AlertDescription::CertificateUnknown,
        AlertDescription::AccessDenied,
    ]
    .into_iter()
    .find(|alert| format!("{alert:?}") == name)?;
    Some(rustls_error(&rustls::Error::AlertReceived(alert)))
}

/// Why a peer refused our certificate, if `alert` says so.
pub(crate) fn refusal(alert: AlertDescription) -> Option<&'static str> {
    Some(match alert {
        AlertDescription::CertificateRequired => "we presented none",
        // A CA with the same name as ours but another key fails the signature check.
        AlertDescription::UnknownCA | AlertDescription::DecryptError => "it is not signed by a CA the server trusts",
        AlertDescription::CertificateExpired => "it expired or is not valid yet",
        AlertDescription::CertificateRevoked => "it is revoked",
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown => "it is malformed or names no valid diego:// identity",
        AlertDescription::AccessDenied => "access denied",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_inside_an_io_error_is_found() {
        let io = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(describe(&io), "the server refused our certificate (it is not signed by a CA the server trusts)");
    }

    #[test]
    fn an_alert_kept_as_text_is_found() {
        let io = io::Error::new(io::ErrorKind::InvalidData, "received fatal alert: CertificateRequired");
        assert_eq!(describe(&io), "the server refused our certificate (we presented none)");
    }

    #[test]
    fn other_chains_are_joined_without_repeats() {
        let io = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(describe(&io), "connection refused");
    }
}
