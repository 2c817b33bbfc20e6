//! The one codec every stored blob goes through: protobuf blobs (run info, task definitions,
//! net info, route maps since schema version 7) and JSON blobs (metric tags, internal routes,
//! route maps written before). Each blob starts with a
//! two-byte envelope `[format, version]` as Diego's `format` package does. Run info and task
//! definitions go through [`seal_proto`] / [`open_proto`], which encrypt them under the store's
//! [`Keyring`] (version `0x01`, see [`crate::crypto`] for the layout); the other blobs are
//! written unencrypted (version `0x00`), which every reader accepts too.

use prost::Message;

use crate::crypto::Keyring;

/// Envelope format byte of a protobuf blob.
const FORMAT_PROTO: u8 = 0x02;
/// Envelope format byte of a JSON blob.
const FORMAT_JSON: u8 = 0x01;
/// Envelope version byte (unencrypted).
pub(crate) const VERSION_PLAIN: u8 = 0x00;

/// Why a blob cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The envelope is missing or names another format.
    #[error("bad envelope: expected format {expected:#04x}, found {found:?}")]
    Envelope {
        /// The format byte expected.
        expected: u8,
        /// The first two bytes found.
        found: Vec<u8>,
    },
    /// The protobuf payload is malformed.
    #[error("malformed protobuf: {0}")]
    Proto(#[from] prost::DecodeError),
    /// The JSON payload is malformed.
    #[error("malformed json: {0}")]
    Json(#[from] serde_json::Error),
    /// The blob is sealed under a key label the store's keyring does not have.
    #[error("sealed under unknown encryption key label {label:?}")]
    UnknownKey {
        /// The label the blob names.
        label: String,
    },
    /// The blob does not decrypt under the key its label names (another key with the same
    /// label, or tampered bytes).
    #[error("does not decrypt under encryption key {label:?} (wrong key or tampered data)")]
    Decrypt {
        /// The label the blob names.
        label: String,
    },
    /// A sealed blob is shorter than its header, nonce and tag.
    #[error("truncated encrypted blob")]
    Truncated,
    /// A key or key label cannot be used.
    #[error("bad encryption key: {reason}")]
    BadKey {
        /// Why.
        reason: String,
    },
}

/// Encodes a protobuf message into a stored blob.
pub fn encode_proto<M: Message>(message: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + message.encoded_len());
    out.push(FORMAT_PROTO);
    out.push(VERSION_PLAIN);
    // Writing into a Vec cannot run out of capacity.
    message.encode_raw(&mut out);
    out
}

/// Decodes a stored protobuf blob.
pub fn decode_proto<M: Message + Default>(blob: &[u8]) -> Result<M, CodecError> {
    Ok(M::decode(payload(blob, FORMAT_PROTO)?)?)
}

/// Encodes a protobuf message into a stored blob sealed under `keys`' active key (the plain
/// envelope when `keys` is empty).
pub fn seal_proto<M: Message>(keys: &Keyring, message: &M) -> Vec<u8> {
    // Writing into a Vec cannot run out of capacity.
    keys.seal_with(FORMAT_PROTO, message.encoded_len(), |out| message.encode_raw(out))
}

/// Decodes a stored protobuf blob, sealed under one of `keys` or unencrypted.
pub fn open_proto<M: Message + Default>(keys: &Keyring, blob: &[u8]) -> Result<M, CodecError> {
    Ok(M::decode(keys.open(FORMAT_PROTO, blob)?.as_slice())?)
}

/// Re-seals a stored protobuf blob under `keys`' active key without decoding the message.
pub fn reseal_proto(keys: &Keyring, blob: &[u8]) -> Result<Vec<u8>, CodecError> {
    let payload = keys.open(FORMAT_PROTO, blob)?;
    Ok(keys.seal_with(FORMAT_PROTO, payload.len(), |out| out.extend_from_slice(&payload)))
}

/// Encodes a value as a stored JSON blob.
pub fn encode_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_JSON, VERSION_PLAIN];
    // Serializing maps with string keys, strings and byte vectors cannot fail.
    serde_json::to_writer(&mut out, value).unwrap_or_default();
    out
}

/// Decodes a stored JSON blob.
pub fn decode_json<T: serde::de::DeserializeOwned>(blob: &[u8]) -> Result<T, CodecError> {
    Ok(serde_json::from_slice(payload(blob, FORMAT_JSON)?)?)
}

/// Whether a stored blob is a protobuf blob (by its envelope): for a column whose format
/// changed (route maps, JSON before schema version 7).
pub fn is_proto(blob: &[u8]) -> bool {
    blob.first() == Some(&FORMAT_PROTO)
}

fn payload(blob: &[u8], format: u8) -> Result<&[u8], CodecError> {
    match blob {
        [f, VERSION_PLAIN, rest @ ..] if *f == format => Ok(rest),
        _ => Err(CodecError::Envelope { expected: format, found: blob.iter().take(2).copied().collect() }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proto::pb::models::v1 as pb;

    use super::*;

    #[test]
    fn proto_blobs_round_trip() {
        let info = pb::ActualLrpNetInfo { address: "10.0.0.1".into(), ..Default::default() };
        let blob = encode_proto(&info);
        assert_eq!(&blob[..2], &[FORMAT_PROTO, VERSION_PLAIN]);
        assert_eq!(decode_proto::<pb::ActualLrpNetInfo>(&blob).unwrap(), info);
    }

    #[test]
    fn sealed_proto_blobs_round_trip_and_reseal() {
        let info = pb::ActualLrpNetInfo { address: "10.0.0.1".into(), ..Default::default() };
        let old = Keyring::new("old", [("old".to_owned(), [1; 32])]).unwrap();
        let new = Keyring::new("new", [("old".to_owned(), [1; 32]), ("new".to_owned(), [2; 32])]).unwrap();
        let blob = seal_proto(&old, &info);
        assert_eq!(crate::crypto::blob_label(&blob), Some("old"));
        assert_eq!(open_proto::<pb::ActualLrpNetInfo>(&old, &blob).unwrap(), info);
        assert!(decode_proto::<pb::ActualLrpNetInfo>(&blob).is_err(), "the plain decoder refuses sealed blobs");
        let resealed = reseal_proto(&new, &blob).unwrap();
        assert_eq!(crate::crypto::blob_label(&resealed), Some("new"));
        assert_eq!(open_proto::<pb::ActualLrpNetInfo>(&new, &resealed).unwrap(), info);
        // Unencrypted rows (written before encryption) are read and sealed alike.
        let plain = encode_proto(&info);
        assert_eq!(open_proto::<pb::ActualLrpNetInfo>(&new, &plain).unwrap(), info);
        assert_eq!(crate::crypto::blob_label(&reseal_proto(&new, &plain).unwrap()), Some("new"));
        assert_eq!(seal_proto(&Keyring::default(), &info), plain);
    }

    #[test]
    fn json_blobs_round_trip() {
        let tags: BTreeMap<String, String> = [("a".to_owned(), "b".to_owned())].into();
        let blob = encode_json(&tags);
        assert_eq!(decode_json::<BTreeMap<String, String>>(&blob).unwrap(), tags);
    }

    #[test]
    fn blobs_of_the_wrong_format_are_refused() {
        let blob = encode_json(&vec![1, 2]);
        assert!(matches!(decode_proto::<pb::ActualLrpNetInfo>(&blob), Err(CodecError::Envelope { .. })));
        assert!(decode_json::<Vec<i32>>(&[]).is_err());
        assert!(decode_proto::<pb::ActualLrpNetInfo>(&[FORMAT_PROTO, VERSION_PLAIN, 0xff]).is_err());
    }
}
