//! Streaming bodies: requests flow to the upstream and responses back frame by frame, never
//! buffered whole. The wrappers add what the proxy needs on the way: send-progress tracking for
//! the send timeout, the idle read timeout, and handing the upstream connection back to the pool
//! once its response is complete.

use crate::h1::{BodyFraming, ChunkedDecoder, Decoded};
use crate::upstream::{Outgoing, PooledConnection};
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

/// The upstream's response body, read from its connection as framed by the response head.
/// Fails when the upstream stays silent longer than the read timeout between two chunks or
/// breaks the framing, and returns the connection to the pool when the body ended cleanly.
pub(crate) struct UpstreamBody {
    /// `None` once the body ended (the connection went back to the pool or was closed).
    connection: Option<PooledConnection>,
    framing: Framing,
    /// The response allows another request on this connection.
    reusable: bool,
    /// The rest of a request body the upstream answered before reading it all.
    sending: Option<Box<Outgoing>>,
    idle_timeout: Duration,
    /// Created on the first wait only: most small bodies are complete when first polled.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer's deadline counts from the last chunk received.
    timer_armed: bool,
}

enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
    /// 101: the connection is handed to the tunnel, not read as a body.
    Upgrade,
    Done,
}

impl UpstreamBody {
    pub(crate) fn new(
        connection: PooledConnection,
        framing: BodyFraming,
        reusable: bool,
        sending: Option<Box<Outgoing>>,
        idle_timeout: Duration,
    ) -> Self {
        let framing = match framing {
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::default()),
            BodyFraming::Close => Framing::Close,
            BodyFraming::Upgrade => Framing::Upgrade,
            BodyFraming::Empty => Framing::Done,
        };
        UpstreamBody {
            connection: Some(connection),
            framing,
            reusable,
            sending,
            idle_timeout,
            timer: None,
            timer_armed: false,
        }
    }

    /// A response without body (its connection already dealt with).
    pub(crate) fn empty() -> Self {
        UpstreamBody {
            connection: None,
            framing: Framing::Done,
            reusable: false,
            sending: None,
            idle_timeout: Duration::ZERO,
            timer: None,
            timer_armed: false,
        }
    }

    /// A 101 response: its connection now carries another protocol.
    pub(crate) fn upgraded(connection: PooledConnection) -> Self {
        UpstreamBody::new(
            connection,
            BodyFraming::Upgrade,
            false,
            None,
            Duration::ZERO,
        )
    }

    /// The connection of a 101 response, for the tunnel.
    pub(crate) fn take_upgraded(&mut self) -> Option<PooledConnection> {
        match self.framing {
            Framing::Upgrade => self.connection.take(),
            _ => None,
        }
    }

    /// The body ended cleanly: the connection goes back to the pool if it can carry another
    /// request.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.connection.take()
            && self.reusable
            && self.sending.is_none()
        {
            conn.release();
        }
        self.sending = None;
    }

    fn fail(&mut self, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // A connection that failed mid-body is not reusable; dropping it closes it.
        self.connection = None;
        self.sending = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(error)))
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
        let Some(conn) = &mut this.connection else {
            return Poll::Ready(None);
        };
        if let Some(sending) = &mut this.sending {
            match sending.poll_send(conn.stream(), cx) {
                Poll::Ready(Ok(())) => this.sending = None,
                Poll::Ready(Err(_)) => {
                    this.sending = None;
                    this.reusable = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            let buf = conn.buffer();
            let decoded = match &mut this.framing {
                Framing::Length(left) => {
                    if buf.is_empty() {
                        Decoded::NeedMore
                    } else {
                        let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= take as u64;
                        Decoded::Data(buf.split_to(take).freeze())
                    }
                }
                Framing::Chunked(decoder) => match decoder.decode(buf) {
                    Ok(decoded) => decoded,
                    Err(e) => return this.fail(e.into()),
                },
                Framing::Close if buf.is_empty() => Decoded::NeedMore,
                Framing::Close => Decoded::Data(buf.split().freeze()),
                Framing::Upgrade | Framing::Done => return Poll::Ready(None),
            };
            match decoded {
                Decoded::Data(data) => {
                    this.timer_armed = false;
                    if matches!(this.framing, Framing::Length(0)) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decoded::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Decoded::NeedMore => {}
            }
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    if let Framing::Close = this.framing {
                        // The end of a close-delimited body; the connection is done too.
                        this.reusable = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    let missing = match this.framing {
                        Framing::Length(left) => format!("{left} bytes before the end"),
                        _ => "before the last chunk".to_owned(),
                    };
                    return this.fail(
                        format!("upstream closed the connection {missing} of its response body")
                            .into(),
                    );
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => {
                    return this.fail(
                        format!("upstream connection failed during the response body: {e}").into(),
                    );
                }
                Poll::Pending => {}
            }
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
            return this.fail(
                format!(
                    "upstream sent nothing for {:?} while sending its response body (read timeout)",
                    this.idle_timeout
                )
                .into(),
            );
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.framing,
            Framing::Done | Framing::Upgrade | Framing::Length(0)
        )
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            Framing::Done | Framing::Upgrade => SizeHint::with_exact(0),
            Framing::Chunked(_) | Framing::Close => SizeHint::default(),
        }
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

/// The client's request body on its way to the upstream.
pub(crate) struct RequestBody {
    inner: Incoming,
    progress: Option<Arc<SendProgress>>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, progress: Option<Arc<SendProgress>>) -> Self {
        RequestBody { inner, progress }
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
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(frame), Some(progress)) = (&polled, &this.progress) {
            if let Some(Ok(f)) = frame
                && let Some(data) = f.data_ref()
            {
                progress
                    .received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            match frame {
                Some(Ok(_)) if !this.inner.is_end_stream() => progress.touch(),
                _ => progress.finish(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
