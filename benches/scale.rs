//! Placeholder: being written (issue 7).
#![allow(clippy::print_stdout)]
fn main() {}
