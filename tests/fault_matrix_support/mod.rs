//! Directory-side faults of the fault matrix, around the real Samba AD DC:
//!
//! * [`LdapsProxy`]: a TCP proxy between `LdapDirectory` and Samba's LDAPS port. Killing it
//!   closes every connection and refuses new ones: from the client's view, the DC went away
//!   (the shared DC itself keeps running for the other tests).
//! * [`Staged`]: a [`Directory`] that delegates to the real one and can (a) kill the proxy just
//!   before or just after the directory change, deterministically, and (b) add a second,
//!   stale domain controller that keeps answering with the account as it was before the
//!   change until it is told to catch up (a single Samba DC cannot lag).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use exch_core::ExchangeServer;
use exch_directory::{
    Account, AuthResult, ChangeOutcome, Directory, DirectoryError, Dn, DomainController, UserRef,
};
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP proxy on `<upstream IP>:<new port>` to `upstream` (the DC's certificate names the
/// DC's IP, so the proxy listens on that IP: 127.0.0.1 under scripts/test.sh).
#[derive(Debug)]
pub(crate) struct LdapsProxy {
    listen: SocketAddr,
    upstream: SocketAddr,
    state: tokio::sync::Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl LdapsProxy {
    /// Starts forwarding.
    pub(crate) async fn start(upstream: SocketAddr) -> Arc<LdapsProxy> {
        let listener = TcpListener::bind(SocketAddr::new(upstream.ip(), 0))
            .await
            .unwrap();
        let proxy = Arc::new(LdapsProxy {
            listen: listener.local_addr().unwrap(),
            upstream,
            state: tokio::sync::Mutex::new(None),
        });
        *proxy.state.lock().await = Some(proxy.serve(listener));
        proxy
    }

    /// `ldaps://<upstream IP>:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("ldaps://{}", self.listen)
    }

    fn serve(&self, listener: TcpListener) -> Running {
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let conns = Arc::clone(&connections);
        let upstream = self.upstream;
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Running {
            accept,
            connections,
        }
    }

    /// The DC goes away: the port refuses connections and every open one is closed when this
    /// returns.
    pub(crate) async fn kill(&self) {
        if let Some(running) = self.state.lock().await.take() {
            running.accept.abort();
            let _ = running.accept.await; // the listener is dropped: connections are refused
            for c in running.connections.lock().unwrap().drain(..) {
                c.abort(); // drops both sockets
            }
        }
    }

    /// The DC is back, on the same address.
    pub(crate) async fn restore(&self) {
        let mut state = self.state.lock().await;
        if state.is_none() {
            let listener = TcpListener::bind(self.listen).await.unwrap();
            *state = Some(self.serve(listener));
        }
    }
}

/// Name of the stale domain controller [`Staged`] adds.
pub(crate) const STALE_DC: &str = "STALE-DC";

/// When [`Staged`] kills its proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillAt {
    /// Never.
    Never,
    /// After the account was found, just before the directory change is sent.
    BeforeChange,
    /// Just after the directory change was applied, before convergence is read.
    AfterChange,
}

/// A [`Directory`] around the real one with directory-side faults (see the module docs).
#[derive(Debug)]
pub(crate) struct Staged {
    inner: Arc<dyn Directory>,
    proxy: Option<Arc<LdapsProxy>>,
    kill_at: Mutex<KillAt>,
    stale: AtomicBool,
    /// The account as the stale DC last saw it (before the change).
    stale_copy: Mutex<Option<Account>>,
}

impl Staged {
    /// Delegates to `inner`; `proxy` is what [`KillAt`] kills.
    pub(crate) fn new(inner: Arc<dyn Directory>, proxy: Option<Arc<LdapsProxy>>) -> Arc<Staged> {
        Arc::new(Staged {
            inner,
            proxy,
            kill_at: Mutex::new(KillAt::Never),
            stale: AtomicBool::new(false),
            stale_copy: Mutex::new(None),
        })
    }

    /// Arms (or disarms) the kill; it fires once.
    pub(crate) fn kill_at(&self, at: KillAt) {
        *self.kill_at.lock().unwrap() = at;
    }

    /// Adds [`STALE_DC`], which never shows a change while `stale`; `false`: it catches up.
    pub(crate) fn set_stale_dc(&self, stale: bool) {
        self.stale.store(stale, Ordering::SeqCst);
    }

    async fn fire(&self, when: KillAt) {
        let fire = {
            let mut armed = self.kill_at.lock().unwrap();
            let fire = *armed == when;
            if fire {
                *armed = KillAt::Never;
            }
            fire
        };
        if let (true, Some(proxy)) = (fire, &self.proxy) {
            proxy.kill().await;
        }
    }

    async fn change<T>(
        &self,
        before: &Account,
        op: impl std::future::Future<Output = Result<T, DirectoryError>>,
    ) -> Result<T, DirectoryError> {
        if self.stale.load(Ordering::SeqCst) {
            let mut copy = self.stale_copy.lock().unwrap();
            if copy.is_none() {
                *copy = Some(before.clone());
            }
        }
        self.fire(KillAt::BeforeChange).await;
        let r = op.await;
        if r.is_ok() {
            self.fire(KillAt::AfterChange).await;
        }
        r
    }
}

#[async_trait]
impl Directory for Staged {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        self.inner.find_account(user).await
    }
    async fn disable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.change(a, self.inner.disable_account(a)).await
    }
    async fn enable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.enable_account(a).await
    }
    async fn reset_password(
        &self,
        a: &Account,
        new: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError> {
        self.change(a, self.inner.reset_password(a, new)).await
    }
    async fn authenticate(&self, u: &str, p: &SecretString) -> Result<AuthResult, DirectoryError> {
        self.inner.authenticate(u, p).await
    }
    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
        self.inner.exchange_servers().await
    }
    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
        let mut dcs = self.inner.domain_controllers().await?;
        if self.stale.load(Ordering::SeqCst) || self.stale_copy.lock().unwrap().is_some() {
            dcs.push(DomainController {
                name: STALE_DC.into(),
                dns_host_name: "stale-dc.lab.example.test".into(),
                site: None,
                url: None,
            });
        }
        Ok(dcs)
    }
    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError> {
        if dc.name != STALE_DC {
            return self.inner.account_on(dc, dn).await;
        }
        if self.stale.load(Ordering::SeqCst) {
            if let Some(copy) = self.stale_copy.lock().unwrap().clone() {
                return Ok(copy);
            }
        }
        // Caught up: it answers as the real DC does.
        let real = self.inner.domain_controllers().await?;
        let first = real.first().ok_or_else(|| DirectoryError::InvalidInput {
            what: "domain controllers".into(),
            reason: "none".into(),
        })?;
        self.inner.account_on(first, dn).await
    }
}

/// A [`Directory`] that lets at most `n` logons ([`Directory::authenticate`], each a TLS
/// connection and a bind) reach the one shared Samba DC at once; the fleets' IIS logons go
/// through it, so that a burst of logons queues here instead of timing out in Samba.
#[derive(Debug)]
pub(crate) struct LimitedLogons {
    inner: Arc<dyn Directory>,
    permits: tokio::sync::Semaphore,
}

impl LimitedLogons {
    /// `inner`, with at most `n` logons at once.
    pub(crate) fn new(inner: Arc<dyn Directory>, n: usize) -> Arc<LimitedLogons> {
        Arc::new(LimitedLogons {
            inner,
            permits: tokio::sync::Semaphore::new(n),
        })
    }
}

#[async_trait]
impl Directory for LimitedLogons {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        self.inner.find_account(user).await
    }
    async fn disable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.disable_account(a).await
    }
    async fn enable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.enable_account(a).await
    }
    async fn reset_password(
        &self,
        a: &Account,
        new: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.reset_password(a, new).await
    }
    async fn authenticate(&self, u: &str, p: &SecretString) -> Result<AuthResult, DirectoryError> {
        let _permit = self.permits.acquire().await;
        self.inner.authenticate(u, p).await
    }
    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
        self.inner.exchange_servers().await
    }
    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
        self.inner.domain_controllers().await
    }
    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError> {
        self.inner.account_on(dc, dn).await
    }
}
