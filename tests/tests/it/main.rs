//! End-to-end tests of whole networks.

mod network;
