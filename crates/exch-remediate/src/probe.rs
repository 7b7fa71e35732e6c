//! Proving the old credentials are refused: logons against each server's endpoints.

use async_trait::async_trait;
use exch_core::{ExchangeServer, Protocol};
use secrecy::SecretString;
use std::fmt::Debug;

/// What a logon attempt with the old credentials got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeResult {
    /// The logon was refused (what remediation wants).
    Refused(String),
    /// The logon was accepted: the old credentials still work.
    Accepted(String),
    /// The endpoint could not be asked (neither refused nor accepted).
    Error(String),
    /// The endpoint takes no password logon, so its refusal proves nothing about the account
    /// (e.g. EWS and MAPI at Exchange's defaults, Windows authentication only: a `401` with no
    /// `Basic` challenge). Neither refused nor accepted; the engine records it as not
    /// applicable ([`crate::ProbeRecord::applicable`]) and does not count it against
    /// [`crate::Outcome::Revoked`].
    NotApplicable(String),
}

/// Tries a logon on one server and protocol. Backends: [`HttpProber`], or your own.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Prober: Debug + Send + Sync + 'static {
    /// Attempts a logon to `protocol` on `server` as `user` with `password`.
    async fn probe(
        &self,
        server: &ExchangeServer,
        protocol: Protocol,
        user: &str,
        password: &SecretString,
    ) -> ProbeResult;

    /// Security checks this prober was told to skip, one sentence each, for the report
    /// (e.g. logons sent over plain `http://`). Default: none.
    fn security_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

mod http;
pub use http::{challenge_schemes, HttpProber, ProbeSetupError};
