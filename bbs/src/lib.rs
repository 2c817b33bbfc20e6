//! The BBS: the leader-elected gRPC API (`diego.bbs.v1.Bbs` and `diego.locket.v1.Locket`) over
//! the `db` store, the event hub, and the controllers that apply the lifecycle rules.
//!
//! Not built yet: this crate is filled by the BBS issue. It holds no code that pretends to work.
