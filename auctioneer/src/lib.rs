//! The auctioneer: batches LRP and task start requests, fetches cell state, places work with a
//! pure seeded `solve()`, dispatches it to reps and reports placement failures to the BBS.
//!
//! Not built yet: this crate is filled by the auctioneer issue. It holds no code that pretends to work.
