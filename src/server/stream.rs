//! A run's events on their way to the client. The agent pushes SSE frames into a per-run queue and
//! never waits; the queue is bounded in bytes, and a client that lets it fill, or leaves events in
//! it without taking any for the stall time, is treated as gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures::Stream;
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::telemetry::OpenStream;

const KEEP_ALIVE: &[u8] = b":keep-alive\n\n";

/// Why the host stopped serving a client before its run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum ClientGone {
    #[error("the client did not read its stream and its buffer passed the limit")]
    Overflow,
    #[error("the client took nothing from its stream for the stall time")]
    Stalled,
}

/// What the agent side and the response body share.
struct Shared {
    /// Taken by the host when the client is gone, dropping whatever was queued.
    rx: Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>,
    /// Bytes queued and bytes taken by the response body, each written by one side only.
    sent: AtomicUsize,
    taken: AtomicUsize,
    /// Signalled when the body has taken everything queued.
    drained: Notify,
    /// Signalled when a frame is queued (a permit is kept if nobody waits).
    pushed: Notify,
}

/// The agent side: frames go in at once; past `cap` bytes waiting, the client is over its limit.
pub(super) struct RunOutlet {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
    cap: usize,
    overflow: CancellationToken,
}

impl RunOutlet {
    /// Queues one SSE frame for the client; once it is over its limit or gone, frames are dropped.
    pub(super) fn push_frame(&self, frame: Bytes) {
        if self.overflow.is_cancelled() {
            return;
        }
        let sent = self.shared.sent.load(Ordering::Relaxed);
        if sent - self.shared.taken.load(Ordering::Relaxed) + frame.len() > self.cap {
            self.overflow.cancel();
            return;
        }
        self.shared
            .sent
            .store(sent + frame.len(), Ordering::Relaxed);
        // A closed queue means the client left; the run goes on for its followers, if any.
        let _ = self.tx.send(frame);
        self.shared.pushed.notify_one();
    }

    /// Resolves when the client is to be treated as gone, having dropped what was queued for it;
    /// the response body then ends the connection.
    pub(super) async fn until_gone(&self, stall: Duration) {
        let reason = self.gone(stall).await;
        tracing::warn!(%reason, "client treated as gone");
        lock(&self.shared).take();
    }

    async fn gone(&self, stall: Duration) -> ClientGone {
        let tick = stall / 4;
        loop {
            // With nothing waiting for it the client cannot be stalling: a run waiting on its
            // backend costs no wake-up until it queues a frame.
            if self.shared.sent.load(Ordering::Relaxed) == self.shared.taken.load(Ordering::Relaxed)
            {
                tokio::select! {
                    _ = self.overflow.cancelled() => return ClientGone::Overflow,
                    _ = self.shared.pushed.notified() => continue,
                }
            }
            let mut last = self.shared.taken.load(Ordering::Relaxed);
            let mut since = Instant::now();
            loop {
                tokio::select! {
                    _ = self.overflow.cancelled() => return ClientGone::Overflow,
                    _ = tokio::time::sleep(tick) => {}
                }
                let taken = self.shared.taken.load(Ordering::Relaxed);
                if self.shared.sent.load(Ordering::Relaxed) == taken {
                    break;
                }
                if taken != last {
                    (last, since) = (taken, Instant::now());
                } else if since.elapsed() >= stall {
                    return ClientGone::Stalled;
                }
            }
        }
    }

    /// Resolves once the client has taken every queued frame.
    pub(super) async fn drained(&self) {
        while self.shared.sent.load(Ordering::Relaxed) != self.shared.taken.load(Ordering::Relaxed)
        {
            self.shared.drained.notified().await;
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Option<mpsc::UnboundedReceiver<Bytes>>> {
    // Holding the receiver keeps no invariant a panic could break.
    shared
        .rx
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A run's queue: its outlet, and the SSE response that streams it (with keep-alive comments
/// every `keep_alive` of quiet). Dropping the response (the client went away) fires `cancel`.
pub(super) fn channel(
    cap: usize,
    keep_alive: Duration,
    cancel: CancellationToken,
) -> (Arc<RunOutlet>, Response) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        rx: Mutex::new(Some(rx)),
        sent: AtomicUsize::new(0),
        taken: AtomicUsize::new(0),
        drained: Notify::new(),
        pushed: Notify::new(),
    });
    let outlet = RunOutlet {
        tx,
        shared: shared.clone(),
        cap,
        overflow: CancellationToken::new(),
    };
    let body = EventBody {
        shared,
        keep_alive: Box::pin(tokio::time::sleep(keep_alive)),
        interval: keep_alive,
        _cancel: cancel.drop_guard(),
        _open: OpenStream::open(),
    };
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    headers.insert(
        header::HeaderName::from_static("x-accel-buffering"),
        header::HeaderValue::from_static("no"),
    );
    (Arc::new(outlet), response)
}

struct EventBody {
    shared: Arc<Shared>,
    keep_alive: Pin<Box<Sleep>>,
    interval: Duration,
    _cancel: DropGuard,
    _open: OpenStream,
}

impl Stream for EventBody {
    type Item = Result<Bytes, ClientGone>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = match lock(&this.shared).as_mut() {
            Some(rx) => rx.poll_recv(cx),
            // An error, not an end: the connection is closed rather than left waiting for more.
            None => return Poll::Ready(Some(Err(ClientGone::Stalled))),
        };
        let deadline = || Instant::now() + this.interval;
        match polled {
            Poll::Ready(Some(frame)) => {
                let taken = this.shared.taken.fetch_add(frame.len(), Ordering::Relaxed);
                if taken + frame.len() == this.shared.sent.load(Ordering::Relaxed) {
                    this.shared.drained.notify_one();
                }
                this.keep_alive.as_mut().reset(deadline());
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.keep_alive.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.keep_alive.as_mut().reset(deadline());
                    Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
