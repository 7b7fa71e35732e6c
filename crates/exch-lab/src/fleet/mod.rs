//! A fleet of simulated Exchange servers on loopback.
//!
//! Each server listens on its own OS-chosen port of 127.0.0.1 and serves, on that one listener,
//! the WinRM endpoint (`POST /wsman`) and the IIS endpoints ([`crate::iis`]), both backed by one
//! [`IisServer`]. Servers are registered in the directory through a [`Registrar`] so that
//! discovery finds them.
//!
//! WinRM is as strict as Windows at its defaults ([`LabAuth::Negotiate`]: NTLM, encrypted
//! bodies on HTTP, no Basic); [`FleetBuilder::winrm_basic_over_http`] is the explicit opt-in
//! of Basic over plain HTTP. [`FleetBuilder::winrm_https`] gives every server a second,
//! HTTPS listener (Windows' 5986) with a certificate from a lab CA made for this fleet
//! ([`Fleet::winrm_ca_pem`], [`LabServer::winrm_https_url`]).
//! [`FleetBuilder::winrm_kerberos_keytab`] gives a server its `HTTP/<fqdn>` service key (e.g.
//! from `SambaAd::add_http_service`), after which its endpoints (HTTP and HTTPS) also accept
//! Kerberos.
//!
//! ```no_run
//! # async fn demo(directory: std::sync::Arc<dyn exch_directory::Directory>) -> Result<(), exch_lab::fleet::FleetError> {
//! use exch_lab::fleet::{Fleet, ServerSpec};
//! use secrecy::SecretString;
//!
//! let fleet = Fleet::builder()
//!     .directory(directory)
//!     .servers(3, ServerSpec::exchange_2019("EX"))
//!     .server(ServerSpec::exchange_2010("LEGACY01"))
//!     .winrm_credentials("LAB\\winrm", SecretString::from("Lab-WinRM-1".to_owned()))
//!     .time_scale(1000.0)
//!     .build()
//!     .await?;
//! for (name, url) in fleet.endpoints() {
//!     println!("{name}: {url}");
//! }
//! fleet.shutdown().await;
//! # Ok(()) }
//! ```

mod faults;
mod listener;
mod server;
mod winrm_glue;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use exch_core::ExchangeServer;
use exch_directory::Directory;
use secrecy::SecretString;

pub use faults::Faults;
pub use server::{LabServer, ServerCounters, ServerSpec};

use crate::clock::LabClock;
use crate::mailbox::{Mailbox, MailboxStore};
use crate::model::IisServer;
use crate::winrm::tls::{CertSignature, LabCa};
use crate::winrm::{KerberosAcceptorConfig, LabAuth};
use listener::{bind, Serving, TlsSettings};
use server::{HttpsListener, ServerShared};

/// DNS domain of the simulated servers unless [`FleetBuilder::dns_domain`] says otherwise.
pub const DEFAULT_DNS_DOMAIN: &str = "lab.example.test";

/// Why a fleet could not be built or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The builder is missing something or has contradictory input.
    #[error("invalid fleet: {0}")]
    InvalidInput(String),
    /// A loopback port could not be bound.
    #[error("cannot listen for {server} on 127.0.0.1:{port}: {source}")]
    Bind {
        /// Server name.
        server: String,
        /// Port (0 = any).
        port: u16,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The lab CA or a server certificate could not be made.
    #[error("cannot set up HTTPS for {server}: {detail}")]
    Tls {
        /// Server name.
        server: String,
        /// Why.
        detail: String,
    },
    /// A server's Kerberos service key could not be set up.
    #[error("cannot set up Kerberos for {server}: {detail}")]
    Kerberos {
        /// Server name.
        server: String,
        /// Why.
        detail: String,
    },
    /// Registering a server in the directory failed.
    #[error("cannot register {server} in the directory: {detail}")]
    Registration {
        /// Server name.
        server: String,
        /// Why.
        detail: String,
    },
}

/// Registers a simulated server in the directory as an Exchange server object, so that
/// `Directory::exchange_servers` finds it.
///
/// Implemented for closures (`Fn(ExchangeServer) -> impl Future<Output = Result<(), String>>`),
/// so any backend can be used without this crate depending on it, e.g.
/// `|s| async move { dir.add_exchange_server(s); Ok(()) }`.
#[async_trait]
pub trait Registrar: Send + Sync + 'static {
    /// Registers `server`.
    async fn register(&self, server: ExchangeServer) -> Result<(), String>;
}

#[async_trait]
impl<F, Fut> Registrar for F
where
    F: Fn(ExchangeServer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    async fn register(&self, server: ExchangeServer) -> Result<(), String> {
        self(server).await
    }
}

/// Registers into an [`InMemoryDirectory`](exch_directory::InMemoryDirectory) (a clone shares
/// its state, so pass a clone of the directory the test keeps).
#[async_trait]
impl Registrar for exch_directory::InMemoryDirectory {
    async fn register(&self, server: ExchangeServer) -> Result<(), String> {
        self.add_exchange_server(server);
        Ok(())
    }
}

type BoxedRegistrar = Box<dyn Registrar>;

/// Builds a [`Fleet`]. See the module example.
#[must_use]
pub struct FleetBuilder {
    directory: Option<Arc<dyn Directory>>,
    registrar: Option<BoxedRegistrar>,
    specs: Vec<ServerSpec>,
    winrm_user: String,
    winrm_password: SecretString,
    clock: LabClock,
    dns_domain: String,
    winrm_auth: LabAuth,
    https: Option<CertSignature>,
    /// Server name (lower case) → how its endpoint accepts Kerberos.
    kerberos: BTreeMap<String, KerberosSource>,
    /// The organization's mailboxes (`None`: an empty store made at build).
    mailboxes: Option<MailboxStore>,
    /// Mailboxes added to that store at build.
    seeds: Vec<Mailbox>,
}

/// Where a server's Kerberos service key comes from.
#[derive(Debug, Clone)]
enum KerberosSource {
    /// A keytab holding `HTTP/<the server's fqdn>`.
    Keytab(PathBuf),
    /// A ready configuration (any SPN).
    Config(KerberosAcceptorConfig),
}

impl std::fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("servers", &self.specs.len())
            .field("winrm_user", &self.winrm_user)
            .field("winrm_auth", &self.winrm_auth)
            .field("https", &self.https)
            .field("kerberos", &self.kerberos.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// The directory every server authenticates against on a token-cache miss (required).
    pub fn directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Registers every server in the directory with `registrar` at build time.
    pub fn registrar(mut self, registrar: impl Registrar) -> Self {
        self.registrar = Some(Box::new(registrar));
        self
    }

    /// Adds one server.
    pub fn server(mut self, spec: ServerSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// Adds `n` servers like `template`, named `<template.name>01`, `<template.name>02`, ….
    pub fn servers(mut self, n: usize, template: ServerSpec) -> Self {
        for i in 1..=n {
            let mut spec = template.clone();
            spec.name = format!("{}{i:02}", template.name);
            self.specs.push(spec);
        }
        self
    }

    /// The credentials the WinRM endpoints accept (NTLM by default; Basic with
    /// [`FleetBuilder::winrm_basic_over_http`]).
    pub fn winrm_credentials(mut self, user: impl Into<String>, password: SecretString) -> Self {
        self.winrm_user = user.into();
        self.winrm_password = password;
        self
    }

    /// Insecure opt-in: the WinRM endpoints accept HTTP Basic with plain-text bodies over
    /// plain HTTP (Windows with `Basic = true`, `AllowUnencrypted = true`) instead of the
    /// default NTLM with message encryption.
    pub fn winrm_basic_over_http(self) -> Self {
        self.winrm_auth(LabAuth::BasicOverHttp)
    }

    /// How the WinRM endpoints authenticate (default [`LabAuth::Negotiate`]).
    pub fn winrm_auth(mut self, auth: LabAuth) -> Self {
        self.winrm_auth = auth;
        self
    }

    /// Every server also listens for HTTPS (`https://127.0.0.1:PORT/wsman`, see
    /// [`LabServer::winrm_https_url`]) with a certificate for its FQDN, `localhost` and
    /// 127.0.0.1, issued by a CA made for this fleet ([`Fleet::winrm_ca_pem`]); ECDSA P-256
    /// with SHA-256 unless [`FleetBuilder::winrm_https_signature`] says otherwise.
    pub fn winrm_https(mut self, on: bool) -> Self {
        self.https = on.then(|| self.https.unwrap_or_default());
        self
    }

    /// HTTPS as with [`FleetBuilder::winrm_https`], certificates signed with `signature`
    /// (e.g. [`CertSignature::EcdsaP384Sha384`] for channel bindings hashed with SHA-384).
    pub fn winrm_https_signature(mut self, signature: CertSignature) -> Self {
        self.https = Some(signature);
        self
    }

    /// The WinRM endpoints (HTTP and HTTPS) of server `server` also accept Kerberos, with
    /// the key of `HTTP/<its fqdn>` from the MIT keytab at `keytab` (what
    /// `exch_samba::SambaAd::add_http_service` exports), as a domain-joined Windows server
    /// does with its computer account's key. Read at [`FleetBuilder::build`]: a keytab that
    /// is missing, unreadable or lacks that SPN fails the build. The accepted principal is
    /// the WinRM user ([`FleetBuilder::winrm_credentials`]; see
    /// [`WinRmConfig::kerberos`](crate::winrm::WinRmConfig::kerberos) for the mapping).
    /// Servers without a keytab offer Kerberos and refuse it.
    pub fn winrm_kerberos_keytab(
        mut self,
        server: impl Into<String>,
        keytab: impl Into<PathBuf>,
    ) -> Self {
        self.kerberos.insert(
            server.into().to_ascii_lowercase(),
            KerberosSource::Keytab(keytab.into()),
        );
        self
    }

    /// As [`FleetBuilder::winrm_kerberos_keytab`] with a ready configuration, whatever its
    /// SPN (e.g. a key for another server's SPN, to model a misregistered SPN).
    pub fn winrm_kerberos(
        mut self,
        server: impl Into<String>,
        config: KerberosAcceptorConfig,
    ) -> Self {
        self.kerberos.insert(
            server.into().to_ascii_lowercase(),
            KerberosSource::Config(config),
        );
        self
    }

    /// Lab time runs `scale` times faster than real time (see [`LabClock::scaled`]).
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.clock = LabClock::scaled(scale);
        self
    }

    /// Uses `clock` (e.g. [`LabClock::frozen`] for tests that advance time by hand).
    pub fn clock(mut self, clock: LabClock) -> Self {
        self.clock = clock;
        self
    }

    /// DNS domain of the servers' FQDNs (default [`DEFAULT_DNS_DOMAIN`]).
    pub fn dns_domain(mut self, domain: impl Into<String>) -> Self {
        self.dns_domain = domain.into();
        self
    }

    /// The organization's mailboxes, shared by every server's Exchange cmdlets (default: an
    /// empty [`MailboxStore`] in the fleet's DNS domain, seeded afterwards through
    /// [`Fleet::mailboxes`]).
    pub fn mailbox_store(mut self, store: MailboxStore) -> Self {
        self.mailboxes = Some(store);
        self
    }

    /// Adds a mailbox to the fleet's store (made at build if none was given); fails the
    /// build if its identities clash with another's.
    pub fn mailbox(mut self, mailbox: Mailbox) -> Self {
        self.seeds.push(mailbox);
        self
    }

    /// Starts every server, then registers them.
    pub async fn build(self) -> Result<Fleet, FleetError> {
        let directory = self
            .directory
            .ok_or_else(|| FleetError::InvalidInput("no directory; call .directory(..)".into()))?;
        if self.specs.is_empty() {
            return Err(FleetError::InvalidInput(
                "no servers; call .server(..) or .servers(n, ..)".into(),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for spec in &self.specs {
            if spec.name.is_empty() || !names.insert(spec.name.to_ascii_lowercase()) {
                return Err(FleetError::InvalidInput(format!(
                    "server name {:?} is empty or used twice",
                    spec.name
                )));
            }
        }
        if let Some(unknown) = self.kerberos.keys().find(|k| !names.contains(*k)) {
            return Err(FleetError::InvalidInput(format!(
                "a Kerberos key for {unknown:?}, which is not a server of the fleet"
            )));
        }
        let credentials = winrm_glue::Credentials {
            user: self.winrm_user.clone(),
            password: self.winrm_password.clone(),
            auth: self.winrm_auth,
        };
        let ca = match self.https {
            Some(signature) => Some(LabCa::new(signature).map_err(|e| FleetError::Tls {
                server: "(lab CA)".into(),
                detail: e.to_string(),
            })?),
            None => None,
        };
        // Mailboxes are organization-wide: one store behind every server's shell.
        let mailboxes = self
            .mailboxes
            .unwrap_or_else(|| MailboxStore::for_domain(&self.dns_domain));
        for seed in self.seeds {
            let name = seed.name.clone();
            mailboxes.add_mailbox(seed).map_err(|e| {
                FleetError::InvalidInput(format!("mailbox {name:?} cannot be added: {e}"))
            })?;
        }
        // The front ends share one certificate, so an OWA cookie from one opens on all.
        let session_key = crate::model::SessionKey::random();
        let mut servers = Vec::with_capacity(self.specs.len());
        for spec in self.specs {
            let fqdn = fqdn_of(&spec.name, &self.dns_domain);
            let kerberos = match self.kerberos.get(&spec.name.to_ascii_lowercase()) {
                None => None,
                Some(KerberosSource::Config(c)) => Some(c.clone()),
                Some(KerberosSource::Keytab(path)) => Some(
                    KerberosAcceptorConfig::from_keytab(format!("HTTP/{fqdn}"), path).map_err(
                        |e| FleetError::Kerberos {
                            server: spec.name.clone(),
                            detail: e.to_string(),
                        },
                    )?,
                ),
            };
            let server = start_server(
                spec,
                &directory,
                &self.clock,
                &self.dns_domain,
                &credentials,
                ca.as_ref(),
                kerberos,
            )
            .await?;
            server.iis().set_session_key(session_key.clone());
            server.iis().set_mailbox_store(mailboxes.clone());
            servers.push(server);
        }
        let fleet = Fleet {
            servers,
            clock: self.clock,
            winrm_user: self.winrm_user,
            winrm_password: self.winrm_password,
            winrm_auth: self.winrm_auth,
            ca,
            directory,
            mailboxes,
        };
        if let Some(registrar) = self.registrar {
            for server in &fleet.servers {
                let exchange = server.exchange_server().clone();
                if let Err(detail) = registrar.register(exchange).await {
                    let name = server.name().to_owned();
                    fleet.shutdown().await;
                    return Err(FleetError::Registration {
                        server: name,
                        detail,
                    });
                }
            }
        }
        Ok(fleet)
    }
}

/// `<name in lower case>.<dns_domain>`.
fn fqdn_of(name: &str, dns_domain: &str) -> String {
    format!("{}.{dns_domain}", name.to_ascii_lowercase())
}

async fn start_server(
    spec: ServerSpec,
    directory: &Arc<dyn Directory>,
    clock: &LabClock,
    dns_domain: &str,
    credentials: &winrm_glue::Credentials,
    ca: Option<&LabCa>,
    kerberos: Option<KerberosAcceptorConfig>,
) -> Result<LabServer, FleetError> {
    let fqdn = fqdn_of(&spec.name, dns_domain);
    let mut exchange = ExchangeServer::new(spec.name.clone(), fqdn.clone())
        .with_version(spec.version)
        .with_roles(spec.roles);
    exchange.site = spec.site.clone();
    let iis = IisServer::new(
        spec.name.clone(),
        spec.version,
        Arc::clone(directory),
        clock.clone(),
        spec.user_token_ttl,
        spec.timing.clone(),
    );
    // One computer-account key for every HTTP SPN of the server: WinRM and IIS's Windows
    // authentication decrypt tickets with the same `HTTP/<fqdn>` key.
    let iis_routes = crate::iis::router_with_kerberos(iis.clone(), &fqdn, kerberos.clone());
    let winrm = winrm_glue::winrm_service(iis.clone(), &spec.name, credentials, kerberos);
    let router = winrm.router().merge(iis_routes);
    let listener = bind(0).await.map_err(|source| FleetError::Bind {
        server: spec.name.clone(),
        port: 0,
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| FleetError::Bind {
            server: spec.name.clone(),
            port: 0,
            source,
        })?
        .port();
    let open = Arc::new(AtomicUsize::new(0));
    let bind_error = |port| {
        let server = spec.name.clone();
        move |source| FleetError::Bind {
            server,
            port,
            source,
        }
    };
    let https = match ca {
        None => None,
        Some(ca) => {
            let tls_error = |e: crate::winrm::tls::TlsSetupError| FleetError::Tls {
                server: spec.name.clone(),
                detail: e.to_string(),
            };
            let cert = ca.issue(&fqdn).map_err(tls_error)?;
            let tls = TlsSettings {
                acceptor: tokio_rustls::TlsAcceptor::from(cert.server_config().map_err(tls_error)?),
                end_point_hash: cert.end_point_hash().into(),
            };
            let tls_listener = bind(0).await.map_err(bind_error(0))?;
            let port = tls_listener.local_addr().map_err(bind_error(0))?.port();
            let serving = if spec.faults.unreachable {
                drop(tls_listener);
                None
            } else {
                Some(
                    Serving::start(tls_listener, router.clone(), Arc::clone(&open), Some(&tls))
                        .map_err(bind_error(port))?,
                )
            };
            Some(HttpsListener {
                port,
                tls,
                serving: tokio::sync::Mutex::new(serving),
            })
        }
    };
    let serving = if spec.faults.unreachable {
        // Keep the port number, listen on nothing: connections are refused.
        drop(listener);
        None
    } else {
        Some(
            Serving::start(listener, router.clone(), Arc::clone(&open), None)
                .map_err(bind_error(port))?,
        )
    };
    let server = LabServer {
        shared: Arc::new(ServerShared {
            exchange,
            port,
            iis,
            winrm,
            open,
            router,
            serving: tokio::sync::Mutex::new(serving),
            https,
            closing: std::sync::Mutex::new(Vec::new()),
        }),
    };
    server.set_faults(&spec.faults).await?;
    tracing::debug!(server = %server.name(), port, "simulated Exchange server started");
    Ok(server)
}

/// A running fleet of simulated Exchange servers. Call [`Fleet::shutdown`] to stop it cleanly;
/// dropping it stops the listeners in the background.
pub struct Fleet {
    servers: Vec<LabServer>,
    clock: LabClock,
    winrm_user: String,
    winrm_password: SecretString,
    winrm_auth: LabAuth,
    ca: Option<LabCa>,
    directory: Arc<dyn Directory>,
    mailboxes: MailboxStore,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("servers", &self.servers)
            .field("winrm_user", &self.winrm_user)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// A builder with no servers, no directory, WinRM user `LAB\winrm` / `Lab-WinRM-1`,
    /// real time.
    pub fn builder() -> FleetBuilder {
        FleetBuilder {
            directory: None,
            registrar: None,
            specs: Vec::new(),
            winrm_user: "LAB\\winrm".to_owned(),
            winrm_password: SecretString::from("Lab-WinRM-1".to_owned()),
            clock: LabClock::real(),
            dns_domain: DEFAULT_DNS_DOMAIN.to_owned(),
            winrm_auth: LabAuth::default(),
            https: None,
            kerberos: BTreeMap::new(),
            mailboxes: None,
            seeds: Vec::new(),
        }
    }

    /// Every server, in build order.
    pub fn servers(&self) -> &[LabServer] {
        &self.servers
    }

    /// The server named `name` (case-insensitive).
    pub fn server(&self, name: &str) -> Option<&LabServer> {
        self.servers
            .iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Server name → WinRM URL (what `WinRmFlusher`'s per-server endpoint overrides take).
    pub fn endpoints(&self) -> BTreeMap<String, String> {
        self.servers
            .iter()
            .map(|s| (s.name().to_owned(), s.winrm_url()))
            .collect()
    }

    /// The servers as discovery describes them.
    pub fn exchange_servers(&self) -> Vec<ExchangeServer> {
        self.servers
            .iter()
            .map(|s| s.exchange_server().clone())
            .collect()
    }

    /// The lab clock all servers share.
    pub fn clock(&self) -> &LabClock {
        &self.clock
    }

    /// The directory the servers authenticate against.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// The organization's mailboxes, which every server's Exchange cmdlets read and change:
    /// seed it, and compare its [`MailboxStore::snapshot`]s.
    pub fn mailboxes(&self) -> &MailboxStore {
        &self.mailboxes
    }

    /// The WinRM user name the endpoints accept.
    pub fn winrm_user(&self) -> &str {
        &self.winrm_user
    }

    /// The WinRM password the endpoints accept.
    pub fn winrm_password(&self) -> &SecretString {
        &self.winrm_password
    }

    /// How the WinRM endpoints authenticate.
    pub fn winrm_auth(&self) -> LabAuth {
        self.winrm_auth
    }

    /// The lab CA's certificate (PEM) that issued the servers' HTTPS certificates, if the
    /// fleet was built with [`FleetBuilder::winrm_https`]: what a client trusts.
    pub fn winrm_ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(LabCa::pem)
    }

    /// Server name → HTTPS WinRM URL (empty without [`FleetBuilder::winrm_https`]).
    pub fn https_endpoints(&self) -> BTreeMap<String, String> {
        self.servers
            .iter()
            .filter_map(|s| Some((s.name().to_owned(), s.winrm_https_url()?)))
            .collect()
    }

    /// Stops every listener and waits (up to 5 s per server) for open connections to close.
    pub async fn shutdown(&self) {
        self.shutdown_within(Duration::from_secs(5)).await;
    }

    /// [`Fleet::shutdown`] with a custom grace period per server.
    pub async fn shutdown_within(&self, grace: Duration) {
        let all = self.servers.iter().map(|s| s.shutdown(grace));
        futures_join_all(all).await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for server in &self.servers {
            if let Ok(mut serving) = server.shared.serving.try_lock() {
                if let Some(s) = serving.take() {
                    s.signal_stop();
                }
            }
            if let Some(https) = &server.shared.https {
                if let Ok(mut serving) = https.serving.try_lock() {
                    if let Some(s) = serving.take() {
                        s.signal_stop();
                    }
                }
            }
        }
    }
}

/// Awaits every future concurrently (tiny `join_all` without a futures dependency).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>)
where
    F: Future<Output = ()>,
{
    let mut pinned: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
