//! The `diego` CLI: `diego dev` (a whole cluster in one process on SQLite) and the subcommands
//! that talk to a BBS.
//!
//! Not built yet: this crate is filled by the CLI issue. It holds no code that pretends to work.
