#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod audit;
pub mod cli;
pub mod completions;
pub mod error;
pub mod exit;
pub mod fsutil;
pub mod job;
pub mod journal;
pub mod output;
pub mod passwords;
pub mod profile;
pub mod profile_check;
pub mod progress;
pub mod render;
pub mod settings;
pub mod users;
