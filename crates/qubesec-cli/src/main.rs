//! The `qubesec` binary.
fn main() {}
