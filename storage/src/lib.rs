//! ios-storage: HUDS, the platform's erasure-coded, content-addressed and
//! searchable storage.
//!
//! Not built yet: this crate holds no code until the HUDS issue (codec,
//! fragment store, placement, deals and audits, repair, search index). It
//! exists so the workspace has its final shape and dependency order
//! (`chain <- storage <- market <- node <- web <- cli`).

pub use ios_chain as chain;
