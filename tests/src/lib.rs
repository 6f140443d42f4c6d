//! ios-tests: end-to-end tests that use the whole workspace. The tests live in
//! `tests/it/` (one binary, a module per topic).
