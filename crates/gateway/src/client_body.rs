//! Request bodies as the gateway reads them: bounded in time, and every way they can fail marked
//! as the client's doing.
//!
//! A body that pauses longer than `body_read_timeout`, or whose average rate falls below
//! `min_body_rate` once that long has passed since it started, ends with an error (408 for the
//! client); so does a body the client cuts off or frames wrongly (400). Whoever forwards the body
//! learns afterwards, through [`BodyProgress`], that a failed upstream call was the client's
//! fault, so that it is never counted against the upstream.

use bytes::Bytes;
use http::StatusCode;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::{Instant, Sleep};

/// How fast a body must arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The longest pause between two pieces of the body, and the grace before the rate counts.
    pub idle: Duration,
    /// Bytes per second the body must average after the grace.
    pub min_rate: u64,
}

/// Why a client's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// Nothing arrived for too long.
    #[error("the request body stalled: nothing arrived for {} s", .0.as_secs_f64())]
    Stalled(Duration),
    /// It arrived, but too slowly.
    #[error("the request body arrived too slowly: {received} bytes in {} s, under {min_rate} bytes/s", .elapsed.as_secs())]
    TooSlow {
        /// Bytes received.
        received: u64,
        /// Time since the body started.
        elapsed: Duration,
        /// The rate required.
        min_rate: u64,
    },
    /// The client cut it off, or its framing (chunked encoding, length) is broken.
    #[error("the request body was cut off or malformed: {0}")]
    Broken(hyper::Error),
}

impl ClientBodyError {
    /// The status the client gets for it: 408 for slowness, 400 for a broken body.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Stalled(_) | Self::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Finds a client body error among the causes of `error`.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(found) = error.downcast_ref::<Self>() {
                return Some(found);
            }
            cause = error.source();
        }
        None
    }
}

const READING: u8 = 0;
const DONE: u8 = 1;
const TOO_SLOW: u8 = 2;
const BROKEN: u8 = 3;

/// How far a body has got, shared with whoever sends it on.
#[derive(Debug, Default)]
pub struct BodyProgress(AtomicU8);

/// What [`BodyProgress`] knows of a body that did not arrive whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The client is still sending it (or stopped without closing).
    StillArriving,
    /// It arrived too slowly, or stalled.
    TooSlow,
    /// The client cut it off or framed it wrongly.
    Broken,
}

impl ClientFault {
    /// The status the client gets for it.
    pub fn status(self) -> StatusCode {
        match self {
            Self::StillArriving | Self::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::Broken => StatusCode::BAD_REQUEST,
        }
    }

    /// A sentence for the problem's detail.
    pub fn detail(self) -> &'static str {
        match self {
            Self::StillArriving => "the request body was still arriving when the request's time ran out",
            Self::TooSlow => "the request body arrived too slowly",
            Self::Broken => "the request body was cut off or malformed",
        }
    }
}

impl BodyProgress {
    /// The client's fault, if the body has not arrived whole.
    pub fn fault(&self) -> Option<ClientFault> {
        match self.0.load(Ordering::Acquire) {
            READING => Some(ClientFault::StillArriving),
            TOO_SLOW => Some(ClientFault::TooSlow),
            BROKEN => Some(ClientFault::Broken),
            _ => None,
        }
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Release);
    }
}

/// A client's request body, held to [`BodyLimits`].
pub struct ClientBody {
    inner: Incoming,
    limits: BodyLimits,
    started: Instant,
    last_arrival: Instant,
    received: u64,
    /// Armed only once the body has had to wait, so bodies that arrive at once cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
    progress: Option<Arc<BodyProgress>>,
}

impl ClientBody {
    /// `inner` held to `limits`, reporting to `progress` if given.
    pub fn new(inner: Incoming, limits: BodyLimits, progress: Option<Arc<BodyProgress>>) -> Self {
        let now = Instant::now();
        Self { inner, limits, started: now, last_arrival: now, received: 0, timer: None, progress }
    }

    fn report(&self, state: u8) {
        if let Some(progress) = &self.progress {
            progress.set(state);
        }
    }

    /// When the body is next due to have failed, given what has arrived: a pause past the idle
    /// limit, or the rate falling under the minimum after the grace.
    fn due(&self) -> Instant {
        let stall = self.last_arrival + self.limits.idle;
        if self.limits.min_rate == 0 {
            return stall;
        }
        #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
        let covered = Duration::from_secs_f64(self.received as f64 / self.limits.min_rate as f64);
        // A millisecond past the instant the average would fall short, so the check then fails.
        stall.min(self.started + (covered + Duration::from_millis(1)).max(self.limits.idle))
    }

    fn failure(&self, now: Instant) -> Option<ClientBodyError> {
        if now.duration_since(self.last_arrival) >= self.limits.idle {
            return Some(ClientBodyError::Stalled(self.limits.idle));
        }
        let elapsed = now.duration_since(self.started);
        if self.limits.min_rate > 0 && elapsed > self.limits.idle {
            let required = u128::from(self.limits.min_rate) * elapsed.as_millis() / 1000;
            if u128::from(self.received) < required {
                return Some(ClientBodyError::TooSlow {
                    received: self.received,
                    elapsed,
                    min_rate: self.limits.min_rate,
                });
            }
        }
        None
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.received += data.len() as u64;
                        this.last_arrival = Instant::now();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(error))) => {
                    this.report(BROKEN);
                    return Poll::Ready(Some(Err(ClientBodyError::Broken(error))));
                }
                Poll::Ready(None) => {
                    this.report(DONE);
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            let now = Instant::now();
            if let Some(error) = this.failure(now) {
                this.report(TOO_SLOW);
                return Poll::Ready(Some(Err(error)));
            }
            let due = this.due();
            let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: look at the body once more, then judge it.
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
