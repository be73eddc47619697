//! Streaming bodies: requests flow to the upstream and responses back frame by frame, never
//! buffered whole. The wrappers add what the proxy needs on the way: send-progress tracking for
//! the send timeout, the idle read timeout, and handing the upstream connection back to the pool
//! once its response is complete.

use crate::upstream::PooledConnection;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the client receives: a short text written by Sluice, or the upstream's body.
pub(crate) enum ResponseBody {
    Local(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl ResponseBody {
    pub(crate) fn empty() -> Self {
        ResponseBody::Local(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResponseBody::Upstream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(data) => data.is_none(),
            ResponseBody::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ResponseBody::Upstream(body) => body.size_hint(),
        }
    }
}

/// The upstream's response body. Fails when the upstream stays silent longer than the read
/// timeout between two chunks, and returns the connection to the pool when the body ends.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    idle_timeout: Duration,
    /// Created on the first wait only: most small bodies are complete when first polled.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer's deadline counts from the last chunk received.
    timer_armed: bool,
    connection: Option<PooledConnection>,
}

impl UpstreamBody {
    pub(crate) fn new(
        inner: Incoming,
        idle_timeout: Duration,
        connection: Option<PooledConnection>,
    ) -> Self {
        UpstreamBody {
            inner,
            idle_timeout,
            timer: None,
            timer_armed: false,
            connection,
        }
    }

    fn release_connection(&mut self) {
        if let Some(conn) = self.connection.take() {
            conn.release();
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer_armed = false;
                if this.inner.is_end_stream() {
                    this.release_connection();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // A connection that failed mid-body is not reusable; dropping it closes it.
                this.connection = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.release_connection();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !this.timer_armed {
                    let deadline = Instant::now() + this.idle_timeout;
                    match &mut this.timer {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    this.timer_armed = true;
                }
                if let Some(timer) = &mut this.timer {
                    ready!(timer.as_mut().poll(cx));
                }
                this.connection = None;
                Poll::Ready(Some(Err(format!(
                    "upstream sent nothing for {:?} while sending its response body (read timeout)",
                    this.idle_timeout
                )
                .into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How far the client's request body has been handed to the upstream, for the send timeout.
#[derive(Debug)]
pub(crate) struct SendProgress {
    start: Instant,
    last_activity_ms: AtomicU64,
    done: AtomicBool,
    /// Body bytes read from the client so far (for the metrics and the access log).
    received: AtomicU64,
}

impl SendProgress {
    pub(crate) fn new() -> Self {
        SendProgress {
            start: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            done: AtomicBool::new(false),
            received: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    fn finish(&self) {
        self.touch();
        self.done.store(true, Ordering::Release);
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub(crate) fn last_activity(&self) -> Instant {
        self.start + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }
}

/// The client's request body on its way to the upstream. `None` stands for no body at all: a
/// request replayed on a fresh connection has no client body to read from.
pub(crate) struct RequestBody {
    inner: Option<Incoming>,
    progress: Option<Arc<SendProgress>>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, progress: Option<Arc<SendProgress>>) -> Self {
        RequestBody {
            inner: Some(inner),
            progress,
        }
    }

    pub(crate) fn empty() -> Self {
        RequestBody {
            inner: None,
            progress: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        if let (Poll::Ready(frame), Some(progress)) = (&polled, &this.progress) {
            if let Some(Ok(f)) = frame
                && let Some(data) = f.data_ref()
            {
                progress
                    .received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            match frame {
                Some(Ok(_)) if !inner.is_end_stream() => progress.touch(),
                _ => progress.finish(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), Incoming::size_hint)
    }
}
