#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod catalog;
pub mod clock;
pub mod fleet;
pub mod host;
pub mod iis;
pub mod model;
pub mod ps;
pub mod winrm;
