//! The contract every diego-rs component shares: the wire messages and services, the validated
//! domain model, and the pure lifecycle rules both ends of a call apply.
//!
//! - [`pb`]: the generated prost messages and tonic services of `protos/diego/*.proto`
//!   (`diego.models.v1`, `diego.bbs.v1`, `diego.locket.v1`, `diego.auctioneer.v1`, `diego.rep.v1`).
//!   Only gRPC adapter code names these types.
//! - [`models`]: hand-written domain types that hold only valid states, with validation that names
//!   the field and the rule broken.
//! - [`convert`]: `TryFrom<pb::X> for models::X` and `From<models::X> for pb::X`.
//! - [`lifecycle`]: the ActualLRP, crash-restart and Task state machines as pure functions.
//! - [`error`]: the Diego error types and their single mapping to gRPC status codes.
//! - [`limits`]: the one table of request limits; [`bounds`] applies it to every request's wire
//!   bytes and [`codec`] does so for every service before decoding.
//! - [`time`]: RFC 3339 UTC times, the one format every component prints.

pub mod bounds;
pub mod codec;
pub mod convert;
pub mod error;
pub mod lifecycle;
pub mod limits;
pub mod models;
pub mod pb;
pub mod time;
