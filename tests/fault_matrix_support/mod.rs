//! Directory-side faults of the fault matrix, around the real Samba AD DC. The tool's
//! directory in a case is [`Staged`]: from the outside in,
//!
//! * [`StaleDc`]: adds a second, stale domain controller that keeps answering with the
//!   account as it was before the change until it is told to catch up (a single Samba DC
//!   cannot lag) — the one double here, since a hook cannot answer for a DC;
//! * [`Stage`], a hook of `exch_directory::layers`: kills the [`LdapsProxy`] just before or
//!   just after the directory change, deterministically;
//! * [`Reached`], the `CallLog` layer: what reaches `LdapDirectory`, method by method — the
//!   proof that its own bulk methods run, not the trait's one-at-a-time defaults.
//!
//! [`LdapsProxy`] is a TCP proxy between `LdapDirectory` and Samba's LDAPS port. Killing it
//! closes every connection and refuses new ones: from the client's view, the DC went away
//! (the shared DC itself keeps running for the other tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use exch_core::ExchangeServer;
use exch_directory::layers::{CallLog, Held, Hook, Layered, Method};
use exch_directory::{
    Account, AccountChanges, AuthResult, ChangeOutcome, Directory, DirectoryError, Dn,
    DomainController, LdapDirectory, Operation, UserRef,
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

/// Name of the stale domain controller [`StaleDc`] adds.
pub(crate) const STALE_DC: &str = "STALE-DC";

/// When [`Stage`] kills its proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillAt {
    /// Never.
    Never,
    /// After the account was found, just before the directory change is sent.
    BeforeChange,
    /// Just after the directory change, before the next directory call (convergence).
    AfterChange,
}

/// A hook that kills the proxy at a [`KillAt`] point (armed once).
#[derive(Debug)]
pub(crate) struct Stage {
    proxy: Option<Arc<LdapsProxy>>,
    /// What is armed, and whether a change was sent since.
    state: Mutex<(KillAt, bool)>,
}

impl Stage {
    /// Arms (or disarms) the kill; it fires once.
    pub(crate) fn kill_at(&self, at: KillAt) {
        *self.state.lock().unwrap() = (at, false);
    }
}

fn is_change(m: Method) -> bool {
    matches!(
        m,
        Method::One(Operation::DisableAccount | Operation::ResetPassword) | Method::DisableAndReset
    )
}

#[async_trait]
impl Hook for Stage {
    async fn before(&self, _: Operation, _: &str) -> Result<(), DirectoryError> {
        Ok(())
    }

    async fn enter(&self, method: Method) -> Held {
        let fire = {
            let mut state = self.state.lock().unwrap();
            let (armed, changed) = &mut *state;
            *changed |= is_change(method);
            let fire = match *armed {
                KillAt::Never => false,
                KillAt::BeforeChange => is_change(method),
                KillAt::AfterChange => *changed && !is_change(method),
            };
            if fire {
                *armed = KillAt::Never;
            }
            fire
        };
        if let (true, Some(proxy)) = (fire, &self.proxy) {
            proxy.kill().await;
        }
        Held::default()
    }
}

/// What reaches `LdapDirectory`: every method called on it, by name.
pub(crate) type Reached = Layered<Arc<LdapDirectory>, CallLog>;

/// The tool's directory of a case (see the module docs).
pub(crate) type Staged = StaleDc<Layered<Arc<Reached>, Stage>>;

/// [`Staged`] around `reached`; `proxy` is what [`KillAt`] kills.
pub(crate) fn staged(reached: Arc<Reached>, proxy: Option<Arc<LdapsProxy>>) -> Arc<Staged> {
    let stage = Stage {
        proxy,
        state: Mutex::new((KillAt::Never, false)),
    };
    Arc::new(StaleDc::new(Layered::new(reached, stage)))
}

impl Staged {
    /// Arms (or disarms) the proxy's kill; it fires once.
    pub(crate) fn kill_at(&self, at: KillAt) {
        self.inner.hook().kill_at(at);
    }
}

/// A [`Directory`] with a second, simulated domain controller [`STALE_DC`]: while stale it
/// answers with each account as it was before its first change; caught up, as the real DC
/// does. Forwards every other call — the bulk methods included — to `inner`.
#[derive(Debug)]
pub(crate) struct StaleDc<D> {
    inner: D,
    stale: AtomicBool,
    /// The accounts as the stale DC last saw them (before their change), by DN.
    copies: Mutex<HashMap<Dn, Account>>,
}

impl<D: Directory> StaleDc<D> {
    /// `inner`, with no stale DC yet.
    pub(crate) fn new(inner: D) -> Self {
        StaleDc {
            inner,
            stale: AtomicBool::new(false),
            copies: Mutex::default(),
        }
    }

    /// The directory it forwards to.
    pub(crate) fn inner(&self) -> &D {
        &self.inner
    }

    /// Adds [`STALE_DC`], which never shows a change while `stale`; `false`: it catches up.
    pub(crate) fn set_stale_dc(&self, stale: bool) {
        self.stale.store(stale, Ordering::SeqCst);
    }

    fn is_stale(&self) -> bool {
        self.stale.load(Ordering::SeqCst)
    }

    /// Keeps `before` (an account about to change) as the stale DC's copy.
    fn remember(&self, before: &Account) {
        if self.is_stale() {
            let mut copies = self.copies.lock().unwrap();
            copies
                .entry(before.dn.clone())
                .or_insert_with(|| before.clone());
        }
    }

    /// The stale DC's answer for each of `dns`.
    async fn on_stale_dc(&self, dns: &[Dn]) -> Vec<Result<Account, DirectoryError>> {
        if self.is_stale() {
            let copies = self.copies.lock().unwrap().clone();
            if dns.iter().all(|dn| copies.contains_key(dn)) {
                return dns.iter().map(|dn| Ok(copies[dn].clone())).collect();
            }
        }
        // Caught up (or never saw the account change): it answers as the real DC does.
        let real = match self.inner.domain_controllers().await {
            Ok(real) => real.into_iter().next(),
            Err(e) => {
                let mut out = vec![Err(e)];
                out.extend(
                    dns.iter()
                        .skip(1)
                        .map(|_| Err(no_real_dc("discovery failed"))),
                );
                out.truncate(dns.len());
                return out;
            }
        };
        match real {
            Some(first) => self.inner.accounts_on(&first, dns).await,
            None => dns.iter().map(|_| Err(no_real_dc("none found"))).collect(),
        }
    }
}

fn no_real_dc(reason: &str) -> DirectoryError {
    DirectoryError::InvalidInput {
        what: "the real domain controller behind the stale one".into(),
        reason: reason.into(),
    }
}

#[async_trait]
impl<D: Directory> Directory for StaleDc<D> {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        self.inner.find_account(user).await
    }
    async fn disable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.remember(a);
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
        self.remember(a);
        self.inner.reset_password(a, new).await
    }
    async fn authenticate(&self, u: &str, p: &SecretString) -> Result<AuthResult, DirectoryError> {
        self.inner.authenticate(u, p).await
    }
    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
        self.inner.exchange_servers().await
    }
    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
        let mut dcs = self.inner.domain_controllers().await?;
        if self.is_stale() || !self.copies.lock().unwrap().is_empty() {
            dcs.push(DomainController::new(STALE_DC, "stale-dc.lab.example.test"));
        }
        Ok(dcs)
    }
    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError> {
        if dc.name != STALE_DC {
            return self.inner.account_on(dc, dn).await;
        }
        let mut answer = self.on_stale_dc(std::slice::from_ref(dn)).await;
        answer.pop().unwrap_or_else(|| Err(no_real_dc("no answer")))
    }
    fn security_notes(&self) -> Vec<String> {
        self.inner.security_notes()
    }
    async fn find_accounts(&self, users: &[UserRef]) -> Vec<Result<Account, DirectoryError>> {
        self.inner.find_accounts(users).await
    }
    async fn accounts_on(
        &self,
        dc: &DomainController,
        dns: &[Dn],
    ) -> Vec<Result<Account, DirectoryError>> {
        if dc.name != STALE_DC {
            return self.inner.accounts_on(dc, dns).await;
        }
        self.on_stale_dc(dns).await
    }
    async fn disable_and_reset<'a>(
        &self,
        a: &Account,
        disable: bool,
        new_password: Option<&'a SecretString>,
    ) -> AccountChanges {
        self.remember(a);
        self.inner.disable_and_reset(a, disable, new_password).await
    }
}
