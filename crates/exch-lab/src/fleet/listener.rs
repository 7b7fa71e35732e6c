//! One server's listener: serve, stop (unreachable), serve again on the same port; plain
//! HTTP or TLS. Every connection gets its own [`WinRmConnection`] (the WinRM security
//! context lives and dies with it).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::winrm::WinRmConnection;

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TCP listener that counts open connections and says when it is closed.
struct CountingListener {
    inner: TcpListener,
    open: Arc<AtomicUsize>,
    closed: Option<oneshot::Sender<()>>,
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        if let Some(tx) = self.closed.take() {
            let _ = tx.send(());
        }
    }
}

impl Listener for CountingListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.inner).await;
        self.open.fetch_add(1, Ordering::SeqCst);
        (
            CountedStream {
                inner: io,
                open: Arc::clone(&self.open),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection; the open-connection count drops when it is closed.
pub(crate) struct CountedStream {
    inner: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected<IncomingStream<'_, CountingListener>> for WinRmConnection {
    fn connect_info(stream: IncomingStream<'_, CountingListener>) -> Self {
        WinRmConnection::plain(Some(*stream.remote_addr()))
    }
}

/// The peer of a TLS connection and the channel binding hash of the certificate it saw.
#[derive(Debug, Clone)]
pub(crate) struct TlsPeer {
    addr: SocketAddr,
    end_point_hash: Arc<[u8]>,
}

/// A TLS listener: handshakes run in their own tasks (a slow client does not hold up
/// others); finished connections are handed to `axum::serve`.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<CountedStream>, SocketAddr)>,
    local: SocketAddr,
    end_point_hash: Arc<[u8]>,
    accepting: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Drops the TCP listener inside (its `closed` signal fires then).
        self.accepting.abort();
    }
}

impl TlsListener {
    fn start(
        mut tcp: CountingListener,
        acceptor: TlsAcceptor,
        end_point_hash: Arc<[u8]>,
    ) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (io, addr) = Listener::accept(&mut tcp).await;
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            end_point_hash,
            accepting,
        })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<CountedStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some((io, addr)) => (
                io,
                TlsPeer {
                    addr,
                    end_point_hash: Arc::clone(&self.end_point_hash),
                },
            ),
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(TlsPeer {
            addr: self.local,
            end_point_hash: Arc::clone(&self.end_point_hash),
        })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for WinRmConnection {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let peer = stream.remote_addr();
        WinRmConnection::tls(Some(peer.addr), &peer.end_point_hash)
    }
}

/// TLS settings of an HTTPS listener.
#[derive(Clone)]
pub(crate) struct TlsSettings {
    pub(crate) acceptor: TlsAcceptor,
    /// RFC 5929 `tls-server-end-point` hash of the server certificate.
    pub(crate) end_point_hash: Arc<[u8]>,
}

/// A running `axum::serve` on one listener.
pub(crate) struct Serving {
    stop: watch::Sender<bool>,
    listener_closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

impl Serving {
    /// Serves `router` on `listener` (over TLS with `tls`), counting connections in `open`.
    pub(crate) fn start(
        listener: TcpListener,
        router: Router,
        open: Arc<AtomicUsize>,
        tls: Option<&TlsSettings>,
    ) -> io::Result<Serving> {
        let (stop, mut stop_rx) = watch::channel(false);
        let (closed_tx, listener_closed) = oneshot::channel();
        let listener = CountingListener {
            inner: listener,
            open,
            closed: Some(closed_tx),
        };
        let shutdown = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        // `serve` only ends through the shutdown signal; accept errors are retried inside.
        let task = match tls {
            None => {
                let app = router.into_make_service_with_connect_info::<WinRmConnection>();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await;
                })
            }
            Some(tls) => {
                let listener = TlsListener::start(
                    listener,
                    tls.acceptor.clone(),
                    Arc::clone(&tls.end_point_hash),
                )?;
                let app = router.into_make_service_with_connect_info::<WinRmConnection>();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await;
                })
            }
        };
        Ok(Serving {
            stop,
            listener_closed,
            task,
        })
    }

    /// Tells the server to stop accepting, without waiting (for `Drop`).
    pub(crate) fn signal_stop(self) {
        self.stop.send_replace(true);
    }

    /// Stops accepting (the port refuses connections when this returns), then lets open
    /// connections finish their requests in the background.
    pub(crate) async fn close(self) -> JoinHandle<()> {
        self.stop.send_replace(true);
        let _ = self.listener_closed.await;
        self.task
    }
}

/// Binds `127.0.0.1:port` (0 = the OS chooses).
pub(crate) async fn bind(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}
