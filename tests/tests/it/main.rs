//! End-to-end tests of whole networks.

mod crash;
mod huds;
mod network;
