//! End-to-end tests of whole networks.

mod browser;
mod crash;
mod huds;
mod network;
mod webdriver;
