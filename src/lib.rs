#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub use exch_core as core;
pub use exch_directory as directory;
pub use exch_iis as iis;
pub use exch_mailbox as mailbox;
pub use exch_remediate as remediate;
