#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod catalog;
pub mod clock;
pub mod host;
pub mod model;
