//! Lab fleets on the test DC: the simulated servers of an `exch_lab::fleet::Fleet` as
//! `msExchExchangeServer` objects, so that `Directory::exchange_servers` discovers them.

use std::future::Future;
use std::pin::Pin;

use exch_core::ExchangeServer;

use crate::{SambaAd, SambaError};

/// What [`SambaAd::registrar`] returns for each server: the registration, to await.
pub type Registration = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

impl SambaAd {
    /// Registers `server` as an Exchange server object (name, FQDN, version, roles, site; see
    /// [`Self::add_exchange_server`]); an object of that name left behind by an earlier run is
    /// replaced. Returns its DN. A server without a version cannot be registered.
    pub async fn register_exchange_server(
        &self,
        server: &ExchangeServer,
    ) -> Result<String, SambaError> {
        let version = server.version.ok_or_else(|| {
            SambaError::new(format!(
                "cannot register {} as an Exchange server: it has no version",
                server.name
            ))
        })?;
        self.add_exchange_server(
            &server.name,
            &server.fqdn,
            version,
            server.roles,
            server.site.as_deref(),
        )
        .await
    }

    /// The registrar of a lab fleet on this DC: every simulated server becomes an Exchange
    /// server object ([`Self::register_exchange_server`]). For
    /// `exch_lab::fleet::FleetBuilder::registrar`:
    ///
    /// ```text
    /// Fleet::builder()
    ///     .directory(dir)
    ///     .dns_domain(ad.env().dns_domain())
    ///     .registrar(ad.registrar())
    /// ```
    ///
    /// Remove the objects again with [`Self::remove_exchange_servers`].
    pub fn registrar(
        &'static self,
    ) -> impl Fn(ExchangeServer) -> Registration + Send + Sync + 'static {
        move |server: ExchangeServer| -> Registration {
            Box::pin(async move {
                self.register_exchange_server(&server)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }
    }

    /// The DN of the Exchange server object `name` (see [`Self::exchange_servers_container`]).
    pub fn exchange_server_dn(&self, name: &str) -> String {
        format!("CN={name},{}", self.exchange_servers_container())
    }

    /// Deletes the Exchange server objects of `names` (missing ones are fine): a fleet's
    /// clean-up after [`Self::registrar`]. Every name is tried; the first error is returned.
    pub async fn remove_exchange_servers<I>(&self, names: I) -> Result<(), SambaError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut first_error = None;
        for name in names {
            if let Err(e) = self.delete(&self.exchange_server_dn(name.as_ref())).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
