#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod apppool;
mod protocol;
mod roles;
pub mod serde_ms;
mod server;
pub mod text;
mod version;

pub use apppool::{AppPool, InvalidAppPool};
pub use protocol::{Protocol, UnknownProtocol};
pub use roles::ServerRoles;
pub use server::{check_host_name, ExchangeServer, InvalidHostName};
pub use version::{ExchangeVersion, InvalidVersion, Product};
