//! benchmark-bbs: the load simulator operators use to size a deployment.
//!
//! Not built yet: this crate is filled by the benchmark-bbs issue. It holds no code that pretends to work.
