//! Encryption at rest (bbs.md 5.3): a [`Keyring`] of labelled AES-256-GCM keys, one of them
//! active. The active key encrypts; every key decrypts. Each stored blob names the label of the
//! key it was encrypted under, so a table may mix keys while it is being re-encrypted.
//!
//! The sealed form of a blob whose envelope is `[format, version]` (see [`crate::codec`]):
//!
//! ```text
//! format(1) | 0x01 | label_len(1) | label(label_len) | nonce(12) | ciphertext | tag(16)
//! ```
//!
//! The nonce is 96 random bits from the operating system per blob. The header bytes up to and
//! including the label are the associated data, so neither the format nor the label can be
//! changed without the tag check failing. A blob with version `0x00` is the unencrypted form of
//! the same envelope (rows written before encryption, or by a store without keys); it stays
//! readable and the re-encryption pass seals it.
//!
//! The ciphers are built once per key when the keyring is made and shared by every clone, so
//! the write path pays one AES-GCM pass per blob and nothing more.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, Generate, KeyInit, Tag};
use aes_gcm::{Aes256Gcm, Key, Nonce};

use crate::codec::CodecError;

/// Length of a key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Longest key label in bytes (its length is one byte of the header; Diego allows 127 too).
pub const MAX_LABEL_LEN: usize = 127;
/// Envelope version byte of a sealed blob.
pub(crate) const VERSION_SEALED: u8 = 0x01;
/// Length of the nonce.
const NONCE_LEN: usize = 12;
/// Length of the authentication tag.
const TAG_LEN: usize = 16;

/// Labelled AES-256-GCM keys, one of them active. Cheap to clone (shared); `Default` is the
/// empty keyring, which writes blobs unencrypted and reads only unencrypted ones. Its `Debug`
/// form shows labels, never key material.
#[derive(Clone, Default)]
pub struct Keyring {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The label new blobs are sealed under.
    active: Option<String>,
    /// Every key by label.
    ciphers: BTreeMap<String, Aes256Gcm>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.inner.active)
            .field("labels", &self.inner.ciphers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Checks that `label` can name a key: 1 to [`MAX_LABEL_LEN`] bytes of ASCII letters, digits,
/// `.`, `_`, `-` or `:` (so labels survive key files, environment variables and logs as they are).
pub fn validate_label(label: &str) -> Result<(), CodecError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if label.is_empty() || label.len() > MAX_LABEL_LEN || !label.chars().all(ok_char) {
        return Err(CodecError::BadKey {
            reason: format!(
                "key label {label:?} must be 1 to {MAX_LABEL_LEN} ASCII letters, digits, '.', '_', '-' or ':'"
            ),
        });
    }
    Ok(())
}

/// The key of a Diego passphrase: its SHA-256 (Diego's `encryption_keys` are passphrases).
pub fn passphrase_key(passphrase: &str) -> [u8; KEY_LEN] {
    use sha2::Digest;
    sha2::Sha256::digest(passphrase.as_bytes()).into()
}

/// A fresh random 256-bit key from the operating system's generator.
pub fn generate_key() -> [u8; KEY_LEN] {
    Key::<Aes256Gcm>::generate().into()
}

impl Keyring {
    /// A keyring whose `active` label encrypts and whose every key decrypts. Fails when a label
    /// is invalid or repeated, or when `active` is not among `keys`.
    pub fn new(active: &str, keys: impl IntoIterator<Item = (String, [u8; KEY_LEN])>) -> Result<Self, CodecError> {
        let mut ciphers = BTreeMap::new();
        for (label, key) in keys {
            validate_label(&label)?;
            let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
            if ciphers.insert(label.clone(), cipher).is_some() {
                return Err(CodecError::BadKey { reason: format!("key label {label:?} is given twice") });
            }
        }
        if !ciphers.contains_key(active) {
            return Err(CodecError::BadKey { reason: format!("the active key label {active:?} names no key") });
        }
        Ok(Self { inner: Arc::new(Inner { active: Some(active.to_owned()), ciphers }) })
    }

    /// The label new blobs are sealed under; `None` for the empty keyring.
    pub fn active_label(&self) -> Option<&str> {
        self.inner.active.as_deref()
    }

    /// Every label this keyring can decrypt, sorted.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.inner.ciphers.keys().map(String::as_str)
    }

    /// Whether this keyring has the key `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.inner.ciphers.contains_key(label)
    }

    /// The stored form of `payload` in the envelope format `format`: sealed under the active
    /// key, or the plain envelope when the keyring is empty. `reserve` is the payload's length,
    /// for one allocation.
    pub(crate) fn seal_with(&self, format: u8, reserve: usize, write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let Some((label, cipher)) = self.inner.active.as_deref().and_then(|l| Some((l, self.inner.ciphers.get(l)?)))
        else {
            let mut out = Vec::with_capacity(2 + reserve);
            out.extend_from_slice(&[format, crate::codec::VERSION_PLAIN]);
            write(&mut out);
            return out;
        };
        let header_len = 3 + label.len();
        let mut out = Vec::with_capacity(header_len + NONCE_LEN + reserve + TAG_LEN);
        // Labels are validated to at most 127 bytes, so the length fits its byte.
        out.extend_from_slice(&[format, VERSION_SEALED, label.len() as u8]);
        out.extend_from_slice(label.as_bytes());
        let nonce = Nonce::generate();
        out.extend_from_slice(&nonce);
        let body = out.len();
        write(&mut out);
        let (head, plaintext) = out.split_at_mut(body);
        // AES-GCM refuses only messages over 64 GiB, which no row is.
        let tag = cipher.encrypt_inout_detached(&nonce, &head[..header_len], plaintext.into()).unwrap_or_default();
        out.extend_from_slice(&tag);
        out
    }

    /// The payload of the stored blob `blob` of envelope format `format`, decrypted when sealed.
    pub(crate) fn open(&self, format: u8, blob: &[u8]) -> Result<Vec<u8>, CodecError> {
        let envelope_error =
            || CodecError::Envelope { expected: format, found: blob.iter().take(2).copied().collect() };
        match blob {
            [f, crate::codec::VERSION_PLAIN, rest @ ..] if *f == format => Ok(rest.to_vec()),
            [f, VERSION_SEALED, len, rest @ ..] if *f == format => {
                let len = usize::from(*len);
                if rest.len() < len + NONCE_LEN + TAG_LEN {
                    return Err(CodecError::Truncated);
                }
                let label = String::from_utf8_lossy(&rest[..len]).into_owned();
                let cipher =
                    self.inner.ciphers.get(&label).ok_or_else(|| CodecError::UnknownKey { label: label.clone() })?;
                let header_len = 3 + len;
                let nonce = Nonce::try_from(&rest[len..len + NONCE_LEN]).map_err(|_| CodecError::Truncated)?;
                let sealed = &rest[len + NONCE_LEN..];
                let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
                let tag = Tag::<Aes256Gcm>::try_from(tag).map_err(|_| CodecError::Truncated)?;
                let mut plaintext = ciphertext.to_vec();
                cipher
                    .decrypt_inout_detached(&nonce, &blob[..header_len], plaintext.as_mut_slice().into(), &tag)
                    .map_err(|_| CodecError::Decrypt { label })?;
                Ok(plaintext)
            }
            _ => Err(envelope_error()),
        }
    }
}

/// The key label a stored blob is sealed under: `Some("")` when it is unencrypted, `None` when
/// it is no blob of the codec at all.
pub fn blob_label(blob: &[u8]) -> Option<&str> {
    match blob {
        [_, crate::codec::VERSION_PLAIN, ..] => Some(""),
        [_, VERSION_SEALED, len, rest @ ..] => rest.get(..usize::from(*len)).and_then(|l| std::str::from_utf8(l).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: u8 = 0x02;

    fn ring(active: &str, keys: &[(&str, u8)]) -> Keyring {
        Keyring::new(active, keys.iter().map(|(l, b)| ((*l).to_owned(), [*b; KEY_LEN]))).unwrap()
    }

    fn seal(keys: &Keyring, payload: &[u8]) -> Vec<u8> {
        keys.seal_with(FORMAT, payload.len(), |out| out.extend_from_slice(payload))
    }

    #[test]
    fn sealed_blobs_round_trip_and_hide_the_payload() {
        let keys = ring("k1", &[("k1", 1)]);
        let payload = b"env SECRET=hunter2 and more";
        let blob = seal(&keys, payload);
        assert_eq!(&blob[..5], &[FORMAT, VERSION_SEALED, 2, b'k', b'1']);
        assert_eq!(blob.len(), 5 + NONCE_LEN + payload.len() + TAG_LEN);
        assert!(!blob.windows(7).any(|w| w == b"hunter2"), "the payload is not in the blob");
        assert_eq!(keys.open(FORMAT, &blob).unwrap(), payload);
        assert_eq!(blob_label(&blob), Some("k1"));
        // Fresh nonces: the same payload never seals to the same bytes.
        assert_ne!(seal(&keys, payload), blob);
        assert_eq!(keys.open(FORMAT, &seal(&keys, b"")).unwrap(), b"");
    }

    #[test]
    fn the_wrong_key_under_the_same_label_fails() {
        let blob = seal(&ring("k1", &[("k1", 1)]), b"payload");
        let err = ring("k1", &[("k1", 2)]).open(FORMAT, &blob).unwrap_err();
        assert!(matches!(&err, CodecError::Decrypt { label } if label == "k1"), "{err}");
    }

    #[test]
    fn an_unknown_label_is_named() {
        let blob = seal(&ring("old", &[("old", 1)]), b"payload");
        let err = ring("new", &[("new", 2)]).open(FORMAT, &blob).unwrap_err();
        assert!(err.to_string().contains("unknown encryption key label \"old\""), "{err}");
        let err = Keyring::default().open(FORMAT, &blob).unwrap_err();
        assert!(matches!(err, CodecError::UnknownKey { .. }), "{err}");
    }

    #[test]
    fn tampering_anywhere_fails() {
        let keys = ring("k1", &[("k1", 1), ("k2", 1)]);
        let blob = seal(&keys, b"some payload bytes");
        for i in 2..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(keys.open(FORMAT, &bad).is_err(), "flipping byte {i} was not noticed");
        }
        // Relabelling to another key with the same material fails too: the label is authenticated.
        let mut relabelled = blob.clone();
        relabelled[4] = b'2';
        assert!(matches!(keys.open(FORMAT, &relabelled), Err(CodecError::Decrypt { .. })));
        // So does the other format byte and a truncated blob.
        assert!(keys.open(0x01, &blob).is_err());
        assert!(matches!(keys.open(FORMAT, &blob[..blob.len() - 20]), Err(CodecError::Truncated)));
    }

    #[test]
    fn rotation_keeps_old_blobs_readable_and_seals_under_the_active_key() {
        let old = ring("a", &[("a", 1)]);
        let rotated = ring("b", &[("a", 1), ("b", 2)]);
        let under_a = seal(&old, b"x");
        assert_eq!(rotated.open(FORMAT, &under_a).unwrap(), b"x");
        assert_eq!(blob_label(&seal(&rotated, b"x")), Some("b"));
        assert_eq!(rotated.labels().collect::<Vec<_>>(), ["a", "b"]);
        assert!(rotated.has_label("a") && !rotated.has_label("c"));
    }

    #[test]
    fn the_empty_keyring_writes_and_reads_plain_envelopes() {
        let plain = seal(&Keyring::default(), b"payload");
        assert_eq!(plain, [&[FORMAT, 0x00][..], b"payload"].concat());
        assert_eq!(blob_label(&plain), Some(""));
        // A keyed store still reads rows written before encryption.
        assert_eq!(ring("k", &[("k", 1)]).open(FORMAT, &plain).unwrap(), b"payload");
        assert_eq!(blob_label(b"x"), None);
    }

    #[test]
    fn bad_keyrings_are_refused() {
        assert!(Keyring::new("missing", [("k".to_owned(), [0; KEY_LEN])]).is_err());
        assert!(Keyring::new("k", [("k".to_owned(), [0; KEY_LEN]), ("k".to_owned(), [1; KEY_LEN])]).is_err());
        assert!(Keyring::new("bad label", [("bad label".to_owned(), [0; KEY_LEN])]).is_err());
        assert!(validate_label(&"x".repeat(MAX_LABEL_LEN)).is_ok());
        assert!(validate_label(&"x".repeat(MAX_LABEL_LEN + 1)).is_err());
        assert!(validate_label("").is_err());
        let debug = format!("{:?}", ring("k", &[("k", 0xab)]));
        assert!(debug.contains("\"k\"") && !debug.contains("171") && !debug.contains("ab, ab"), "{debug}");
    }

    #[test]
    fn passphrase_keys_are_the_sha256_of_the_passphrase() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = passphrase_key("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(generate_key(), generate_key());
    }
}
