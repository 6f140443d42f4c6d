//! The market module on a real one-validator chain (a replica proposing and
//! committing its own blocks): listings, the order lifecycle with its
//! escrow and deadlines, double-blind ratings, disputes with juries, and
//! bad input refused with no state change, IOST conserved at every block.
//! Also the FTFS manipulation simulation (`manipulation`).

mod manipulation;
mod module;
