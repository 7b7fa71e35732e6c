#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod catalog;
pub mod clock;
pub mod fleet;
pub mod host;
pub mod iis;
pub mod mailbox;
pub mod model;
pub mod ps;
pub mod winrm;

/// The Samba AD harness ([`exch_samba`]), re-exported so that suites which depend on the lab
/// (e.g. exch-iis's Kerberos tests) reach the shared DC, its KDC and `add_http_service`.
pub use exch_samba as samba;
