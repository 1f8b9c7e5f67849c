//! Connection hygiene, below the requests: a listener ([`Guarded`]) that caps the connections
//! a server holds and closes the ones that waste them — a socket that sends nothing, one that
//! idles between requests, one that trickles a request (slow headers or body) — so that silent
//! clients cannot exhaust the process's descriptors and shut every other caller out. Counted
//! in `http_connections_open` and `http_connections_closed_total{reason}`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The limits of [`Guarded`], from `[server]` ([`crate::edge::ServerSettings`]).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections held at once; past it a new one is closed at once.
    pub max_connections: usize,
    /// A new connection's first byte must come within this.
    pub first_byte: Duration,
    /// A connection may idle this long between requests.
    pub idle: Duration,
    /// A request must be read and answered within this of its first byte (longer than the
    /// request deadline, which answers 503 first).
    pub request: Duration,
}

/// A listener that holds at most `max_connections` and closes the ones that idle or trickle.
#[derive(Debug)]
pub struct Guarded {
    listener: TcpListener,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
}

impl Guarded {
    pub fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }
}

impl axum::serve::Listener for Guarded {
    type Io = Timed;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, address) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: wait a
                    // moment rather than spin (as axum's own listener does).
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                closed("cap");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            metrics::gauge!("http_connections_open").increment(1.0);
            return (Timed::new(stream, self.limits, slot), address);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// `wanted`, or less when the process may open fewer descriptors (its soft limit, read from
/// `/proc/self/limits`, less 128 for the pools, files and listeners), with a warning.
pub fn within_descriptor_limit(wanted: usize) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        });
    match soft {
        Some(soft) if soft.saturating_sub(128) < wanted => {
            let allowed = soft.saturating_sub(128).max(16);
            tracing::warn!(
                wanted,
                allowed,
                descriptors = soft,
                "server.max_connections lowered to fit the process's descriptor limit"
            );
            allowed
        }
        _ => wanted,
    }
}

fn closed(reason: &'static str) {
    metrics::counter!("http_connections_closed_total", "reason" => reason).increment(1);
}

/// Where a connection is: waiting for a request (idle), or inside one (its first byte read, its
/// answer not yet written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Idle,
    InRequest,
}

/// A connection with a deadline: the first byte within `first_byte`, the next request within
/// `idle` of the last byte of the answer before, each request's answer begun within `request`
/// of its first byte. (HTTP/1 only, as the servers speak it: an HTTP/2 connection's frames
/// would move these phases for other reasons.) Past it, reads and writes
/// fail with `TimedOut` and the server drops the connection.
#[derive(Debug)]
pub struct Timed {
    stream: TcpStream,
    limits: ConnectionLimits,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
    expired: bool,
}

impl Timed {
    fn new(stream: TcpStream, limits: ConnectionLimits, slot: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            limits,
            phase: Phase::Fresh,
            deadline: Box::pin(tokio::time::sleep(limits.first_byte)),
            _slot: slot,
            expired: false,
        }
    }

    fn enter(&mut self, phase: Phase) {
        if self.phase == phase {
            return;
        }
        self.phase = phase;
        let after = match phase {
            Phase::Fresh => self.limits.first_byte,
            Phase::Idle => self.limits.idle,
            Phase::InRequest => self.limits.request,
        };
        self.deadline.as_mut().reset(Instant::now() + after);
    }

    /// An answer's bytes went out: idle from now (a long answer to a slow reader is never cut
    /// for idling while it is being written).
    fn wrote(&mut self) {
        if self.phase == Phase::Idle {
            let next = Instant::now() + self.limits.idle;
            self.deadline.as_mut().reset(next);
        } else {
            self.enter(Phase::Idle);
        }
    }

    /// What a write came to: bytes out move the deadline (an answer is going out, so the
    /// request is over and the connection idles from its last byte); a write that waits is
    /// held to the deadline.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.wrote();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            other => other,
        }
    }

    /// `TimedOut` once the deadline has passed (registering the waker otherwise).
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.expired || self.deadline.as_mut().poll(cx).is_ready() {
            if !self.expired {
                self.expired = true;
                closed(match self.phase {
                    Phase::Fresh => "silent",
                    Phase::Idle => "idle",
                    Phase::InRequest => "slow",
                });
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection missed its deadline",
            ));
        }
        Ok(())
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.phase != Phase::InRequest {
                    this.enter(Phase::InRequest);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, data);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
