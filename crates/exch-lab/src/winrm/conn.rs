//! Per-TCP-connection state: the security context lives and dies with its connection.
//!
//! `axum` creates one [`WinRmConnection`] per accepted connection (through
//! [`Router::into_make_service_with_connect_info`](axum::Router::into_make_service_with_connect_info))
//! and hands a clone to every request on it; when the connection closes the last clone goes,
//! and with it the NTLM context.
//!
//! The same object carries the identity a connection authenticated with Windows
//! authentication on an IIS virtual directory ([`WinRmConnection::windows_logon`]): HTTP.sys
//! keeps it per connection (kernel-mode authentication, `authPersistSingleRequest="false"`),
//! outside every worker process, so it survives a recycle of the pool.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

use super::auth::Acceptor;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the connection's security context is doing.
#[derive(Default)]
pub(crate) enum ContextState {
    /// No context.
    #[default]
    None,
    /// Handshake under way.
    Handshake(Box<dyn Acceptor>),
    /// Authenticated; messages are sealed with this context.
    Established {
        acceptor: Box<dyn Acceptor>,
        user: String,
    },
}

/// One accepted TCP (or TLS) connection to a WinRM endpoint. Serve a
/// [`WinRmService::router`](super::WinRmService::router) with
/// `.into_make_service_with_connect_info::<WinRmConnection>()` so that every request knows
/// its connection (required by [`LabAuth::Negotiate`](super::LabAuth::Negotiate)).
#[derive(Clone)]
pub struct WinRmConnection {
    id: u64,
    peer: Option<SocketAddr>,
    /// `tls-server-end-point:<hash>` of the TLS channel, `None` on plain HTTP.
    tls_binding: Option<Arc<[u8]>>,
    pub(crate) state: Arc<Mutex<ContextState>>,
    /// The Windows-authenticated logon user of the IIS virtual directories on this
    /// connection (`user@REALM` from the Kerberos ticket).
    windows_logon: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for WinRmConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinRmConnection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("tls", &self.tls_binding.is_some())
            .finish_non_exhaustive()
    }
}

impl WinRmConnection {
    /// A plain-HTTP connection from `peer`.
    pub fn plain(peer: Option<SocketAddr>) -> Self {
        WinRmConnection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            tls_binding: None,
            state: Arc::default(),
            windows_logon: Arc::default(),
        }
    }

    /// A TLS connection whose server certificate gives the RFC 5929 `tls-server-end-point`
    /// channel binding `certificate_hash` (see
    /// [`ServerCertificate::end_point_hash`](super::tls::ServerCertificate::end_point_hash)).
    pub fn tls(peer: Option<SocketAddr>, certificate_hash: &[u8]) -> Self {
        let mut binding = b"tls-server-end-point:".to_vec();
        binding.extend_from_slice(certificate_hash);
        WinRmConnection {
            tls_binding: Some(binding.into()),
            ..WinRmConnection::plain(peer)
        }
    }

    /// A process-unique id of the connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls_binding.is_some()
    }

    /// The user this connection authenticated as (`DOMAIN\\user` as the client sent it), if
    /// its context is established.
    pub fn authenticated_user(&self) -> Option<String> {
        match &*crate::clock::lock(&self.state) {
            ContextState::Established { user, .. } => Some(user.clone()),
            _ => None,
        }
    }

    /// The user this connection logged on as with Windows authentication (Negotiate) on an
    /// IIS virtual directory, kept for the connection's life: later requests on it need no
    /// `Authorization` header, whatever happened to the pool's workers meanwhile.
    pub fn windows_logon(&self) -> Option<String> {
        crate::clock::lock(&self.windows_logon).clone()
    }

    pub(crate) fn set_windows_logon(&self, user: &str) {
        *crate::clock::lock(&self.windows_logon) = Some(user.to_owned());
    }

    pub(crate) fn tls_binding(&self) -> Option<Vec<u8>> {
        self.tls_binding.as_deref().map(<[u8]>::to_vec)
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for WinRmConnection {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        WinRmConnection::plain(Some(*stream.remote_addr()))
    }
}
