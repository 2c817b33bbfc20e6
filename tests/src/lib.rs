//! Whole-cluster test harness: [`cluster::Cluster`] starts a BBS, an auctioneer and N cell reps in
//! one process on loopback over a fresh test database, with every interval shortened by config,
//! and offers the faults the end-to-end suite needs (kill a rep, bring it back, evacuate one,
//! stop the auctioneer). [`eventually`] polls with bounded patience.

pub mod cluster;
pub mod eventually;
pub mod fixtures;
pub mod probe;
