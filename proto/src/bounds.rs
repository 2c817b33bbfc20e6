//! Bounds every request on the wire, before it is decoded: one walk over the protobuf bytes,
//! guided by the schema `build.rs` generates from the descriptor set, applies the table in
//! [`crate::limits`] to every string, bytes, repeated, map and integer field at any depth, and
//! bounds message nesting and action trees. It allocates nothing but the path it reports and
//! recurses at most [`MAX_MESSAGE_DEPTH`] deep, so no input can exhaust a server's memory or
//! stack, and the decoder afterwards never meets a message it would choke on.
//!
//! A refusal is a [`ValidationError`] naming the field path and the limit
//! (`desired_lrp.action.serial_action.actions[3].run_action.args[0] must be at most 131071 bytes`);
//! bytes that are not protobuf at all are refused too, naming the field where the walk stopped.

use crate::limits::{self, MAX_ACTION_DEPTH, MAX_MESSAGE_DEPTH, MIN_REQUEST_BYTES_LIMIT, Text};
use crate::models::ValidationError;

/// A message of the generated schema.
#[derive(Debug)]
pub(crate) struct Schema {
    /// Full name (`diego.models.v1.DesiredLRP`).
    name: &'static str,
    /// Whether this is `diego.models.v1.Action`, whose nesting is bounded.
    action: bool,
    /// Fields, sorted by number.
    fields: &'static [FieldSchema],
}

/// A field of the generated schema, with its limits resolved from [`crate::limits`] at build
/// time (a map's value field carries the map field's rules).
#[derive(Debug)]
pub(crate) struct FieldSchema {
    number: i32,
    name: &'static str,
    kind: Kind,
    repeated: bool,
    /// Most bytes of a string or bytes value.
    max_bytes: usize,
    /// Which characters a string may hold.
    text: Text,
    /// Most elements, when repeated.
    max_count: usize,
    /// The range of an integer (each element, when repeated).
    range: Option<(i64, i64)>,
}

/// How a field is encoded. Every protobuf encoding has a kind, whether or not today's schema
/// uses it.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub(crate) enum Kind {
    String,
    Bytes,
    /// A message, by its index in `MESSAGES` (a map's entries are messages too).
    Message(usize),
    /// `int32`, `int64`: two's complement varints.
    Int,
    /// `uint32`, `uint64`, `bool`, enums.
    Uint,
    /// `sint32`, `sint64`: zigzag varints.
    Sint,
    Fixed32,
    Fixed64,
}

include!(concat!(env!("OUT_DIR"), "/wire_schema.rs"));

fn schema(name: &str) -> Option<&'static Schema> {
    MESSAGES.binary_search_by(|s| s.name.cmp(name)).ok().and_then(|at| MESSAGES.get(at))
}

/// Whether `full_name` is the input type of some RPC of the diego services.
pub fn is_request(full_name: &str) -> bool {
    REQUESTS.binary_search(&full_name).is_ok()
}

/// Checks `bytes`, an encoded `full_name`, against the limits when it is a request type; other
/// messages (responses, events) pass unchecked.
pub fn check_request(full_name: &str, bytes: &[u8]) -> Result<(), ValidationError> {
    if !is_request(full_name) {
        return Ok(());
    }
    check_message(full_name, bytes)
}

/// Checks `bytes`, an encoded `full_name`, against the per-field limits. A name outside the
/// diego packages passes. The size of a whole request is each server's own limit
/// (`max_request_bytes`), checked by the transport before the bytes get here.
pub fn check_message(full_name: &str, bytes: &[u8]) -> Result<(), ValidationError> {
    let Some(schema) = schema(full_name) else {
        return Ok(());
    };
    Walk::default().message(schema, bytes, 1)
}

/// Splits `items`, the elements of the repeated field `message.field` of a request, into runs
/// a server accepts: each within `max_bytes` encoded and within the field's count limit (a run
/// holds at least one item). Senders use it to split large batches into several requests.
pub fn chunk_by_size<T: prost::Message>(
    items: Vec<T>,
    max_bytes: usize,
    (message, field): (&str, &str),
) -> Vec<Vec<T>> {
    let max_count = limits::count_limit(message, field).max(1);
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut size = 0_usize;
    for item in items {
        // Each element costs its length, a length prefix (at most 5 bytes here) and a tag.
        let cost = item.encoded_len() + 6;
        if !current.is_empty() && (size + cost > max_bytes || current.len() == max_count) {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += cost;
        current.push(item);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The size a sender splits batches at: three quarters of the smallest request size limit a
/// server may have ([`MIN_REQUEST_BYTES_LIMIT`]), leaving room for the rest of the request.
pub const CHUNK_BYTES: usize = MIN_REQUEST_BYTES_LIMIT / 4 * 3;

/// One step of a field path.
#[derive(Debug, Clone, Copy)]
enum Step {
    Field(&'static str),
    Index(usize),
}

#[derive(Debug, Default)]
struct Walk {
    path: Vec<Step>,
    /// `Action` messages on the current path.
    action_depth: usize,
    /// Path length at the outermost `Action`, where a too-deep tree is reported.
    action_root: usize,
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0_u64;
    for shift in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if buf.len() < len {
        return None;
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Some(head)
}

fn length_delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(read_varint(buf)?).ok()?;
    take(buf, len)
}

/// Skips one value of wire type `wire`.
fn skip(wire: u64, buf: &mut &[u8]) -> Option<()> {
    match wire {
        0 => read_varint(buf).map(drop),
        1 => take(buf, 8).map(drop),
        2 => length_delimited(buf).map(drop),
        5 => take(buf, 4).map(drop),
        _ => None,
    }
}

/// A varint of `kind` as an `i64`, saturating.
fn integer(kind: Kind, raw: u64) -> i64 {
    match kind {
        Kind::Sint => ((raw >> 1) as i64) ^ -((raw & 1) as i64),
        Kind::Uint => i64::try_from(raw).unwrap_or(i64::MAX),
        _ => raw as i64,
    }
}

impl Walk {
    fn path(&self, len: usize) -> String {
        let mut out = String::new();
        for step in self.path.iter().take(len) {
            match step {
                Step::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if out.is_empty() { "request".to_owned() } else { out }
    }

    fn refuse(&self, rule: impl Into<String>) -> ValidationError {
        ValidationError::new(self.path(self.path.len()), rule)
    }

    fn malformed(&self) -> ValidationError {
        self.refuse("is not valid protobuf (truncated or wrong wire type)")
    }

    /// Walks one message.
    fn message(&mut self, schema: &'static Schema, mut buf: &[u8], depth: usize) -> Result<(), ValidationError> {
        if depth > MAX_MESSAGE_DEPTH {
            return Err(self.refuse(format!("must not nest more than {MAX_MESSAGE_DEPTH} messages deep")));
        }
        if schema.action {
            if self.action_depth == 0 {
                self.action_root = self.path.len();
            }
            self.action_depth += 1;
            if self.action_depth > MAX_ACTION_DEPTH {
                return Err(ValidationError::new(
                    self.path(self.action_root),
                    format!("must not nest more than {MAX_ACTION_DEPTH} actions deep"),
                ));
            }
        }
        let mut counts = [0_usize; 64];
        while !buf.is_empty() {
            let key = read_varint(&mut buf).ok_or_else(|| self.malformed())?;
            let (number, wire) = (key >> 3, key & 7);
            let field = i32::try_from(number)
                .ok()
                .filter(|n| *n > 0)
                .and_then(|n| schema.fields.binary_search_by_key(&n, |f| f.number).ok());
            let Some(at) = field else {
                if number == 0 {
                    return Err(self.malformed());
                }
                // Unknown fields are skipped (a newer client's), bounded by the request size.
                skip(wire, &mut buf).ok_or_else(|| self.malformed())?;
                continue;
            };
            let Some(f) = schema.fields.get(at) else { continue };
            self.path.push(Step::Field(f.name));
            let first = counts.get(at).copied().unwrap_or(0);
            let walked = self.field(f, wire, &mut buf, first, depth)?;
            if f.repeated {
                let total = first + walked;
                if total > f.max_count {
                    return Err(self.refuse(format!("must have at most {} elements", f.max_count)));
                }
                if let Some(slot) = counts.get_mut(at) {
                    *slot = total;
                }
            }
            self.path.pop();
        }
        if schema.action {
            self.action_depth -= 1;
        }
        Ok(())
    }

    /// Walks one occurrence of `f` (several elements when packed); returns how many elements
    /// it held. `first` is the index of its first element.
    fn field(
        &mut self,
        f: &'static FieldSchema,
        wire: u64,
        buf: &mut &[u8],
        first: usize,
        depth: usize,
    ) -> Result<usize, ValidationError> {
        let indexed = |walk: &mut Self, i: usize| {
            if f.repeated {
                walk.path.push(Step::Index(i));
            }
        };
        let unindex = |walk: &mut Self| {
            if f.repeated {
                walk.path.pop();
            }
        };
        match (f.kind, wire) {
            (Kind::String | Kind::Bytes | Kind::Message(_), 2) => {
                let value = length_delimited(buf).ok_or_else(|| self.malformed())?;
                indexed(self, first);
                match f.kind {
                    Kind::Message(at) => {
                        let inner = MESSAGES.get(at).ok_or_else(|| self.malformed())?;
                        self.message(inner, value, depth + 1)?;
                    }
                    Kind::String => self.text(f, value)?,
                    _ => self.bytes(f, value)?,
                }
                unindex(self);
                Ok(1)
            }
            (Kind::Int | Kind::Uint | Kind::Sint, 0) => {
                let raw = read_varint(buf).ok_or_else(|| self.malformed())?;
                indexed(self, first);
                self.range(f, integer(f.kind, raw))?;
                unindex(self);
                Ok(1)
            }
            (Kind::Fixed32, 5) => take(buf, 4).map(|_| 1).ok_or_else(|| self.malformed()),
            (Kind::Fixed64, 1) => take(buf, 8).map(|_| 1).ok_or_else(|| self.malformed()),
            // A packed repeated scalar: every element is checked and counted.
            (Kind::Int | Kind::Uint | Kind::Sint | Kind::Fixed32 | Kind::Fixed64, 2) if f.repeated => {
                let mut packed = length_delimited(buf).ok_or_else(|| self.malformed())?;
                let mut n = 0;
                while !packed.is_empty() {
                    match f.kind {
                        Kind::Fixed32 => drop(take(&mut packed, 4).ok_or_else(|| self.malformed())?),
                        Kind::Fixed64 => drop(take(&mut packed, 8).ok_or_else(|| self.malformed())?),
                        _ => {
                            let raw = read_varint(&mut packed).ok_or_else(|| self.malformed())?;
                            indexed(self, first + n);
                            self.range(f, integer(f.kind, raw))?;
                            unindex(self);
                        }
                    }
                    n += 1;
                    // Refuse a huge packed field as soon as it passes its limit.
                    if first + n > f.max_count {
                        return Err(self.refuse(format!("must have at most {} elements", f.max_count)));
                    }
                }
                Ok(n)
            }
            _ => Err(self.malformed()),
        }
    }

    fn text(&self, f: &FieldSchema, value: &[u8]) -> Result<(), ValidationError> {
        if value.len() > f.max_bytes {
            return Err(self.refuse(format!("must be at most {} bytes", f.max_bytes)));
        }
        if std::str::from_utf8(value).is_err() {
            return Err(self.refuse("must be valid UTF-8"));
        }
        // UTF-8 continuation and lead bytes are all >= 0x80, so a byte scan finds every ASCII
        // control character.
        for &b in value {
            if b == 0 {
                return Err(self.refuse("must not contain NUL characters"));
            }
            let control = b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') || b == 0x7f;
            if control && f.text != Text::Raw {
                return Err(self.refuse("must not contain control characters"));
            }
            if f.text == Text::EnvName && b == b'=' {
                return Err(self.refuse("must not contain '='"));
            }
        }
        Ok(())
    }

    fn bytes(&self, f: &FieldSchema, value: &[u8]) -> Result<(), ValidationError> {
        if value.len() > f.max_bytes {
            return Err(self.refuse(format!("must be at most {} bytes", f.max_bytes)));
        }
        Ok(())
    }

    fn range(&self, f: &FieldSchema, value: i64) -> Result<(), ValidationError> {
        if let Some((min, max)) = f.range
            && !(min..=max).contains(&value)
        {
            return Err(self.refuse(format!("must be between {min} and {max}")));
        }
        Ok(())
    }
}
