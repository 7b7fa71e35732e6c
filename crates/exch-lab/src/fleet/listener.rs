//! One server's listener: serve, stop (unreachable), serve again on the same port.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

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

/// A running `axum::serve` on one listener.
pub(crate) struct Serving {
    stop: watch::Sender<bool>,
    listener_closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

impl Serving {
    /// Serves `router` on `listener`, counting connections in `open`.
    pub(crate) fn start(listener: TcpListener, router: Router, open: Arc<AtomicUsize>) -> Serving {
        let (stop, mut stop_rx) = watch::channel(false);
        let (closed_tx, listener_closed) = oneshot::channel();
        let listener = CountingListener {
            inner: listener,
            open,
            closed: Some(closed_tx),
        };
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            };
            // `serve` only ends through the shutdown signal; accept errors are retried inside.
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Serving {
            stop,
            listener_closed,
            task,
        }
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
