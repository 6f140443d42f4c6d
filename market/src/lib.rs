//! ios-market: listings, escrowed orders, disputes with juries, and FTFS.
//!
//! Not built yet: this crate holds no code until the market issue. It exists
//! so the workspace has its final shape and dependency order.

pub use ios_storage as storage;
