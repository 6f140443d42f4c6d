//! ios-market: listings, escrowed orders, disputes with juries, and FTFS
//! ratings, as a sans-IO module of the chain (`module::MarketModule`).
//!
//! - `ftfs`: ratings, commitments, weights, scores and reputation (integer math).
//! - `trust`: EigenTrust global trust over the rating graph (a derived view).
//! - `sim`: the manipulation simulation (honest providers against sybil
//!   rings, self-dealing, review-bombing and cheap-then-cheat).

pub mod error;
pub mod ftfs;
pub mod jury;
pub mod module;
pub mod order;
pub mod sim;
pub mod trust;

pub use error::MarketError;
pub use ios_storage as storage;
