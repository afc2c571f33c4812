//! Dispatch streams: the gateway's side of `rampart.v1.Worker/Dispatch`. One long-lived gRPC
//! stream per worker endpoint carries many jobs, gathered into few messages, instead of an
//! HTTP/2 stream, headers and a trailer per job. It is a way of sending, not a way of choosing:
//! each job still goes through the call loop (pick, breaker, deadline, retry) and is answered
//! with what `Execute` would answer, so the loop reads both alike.
//!
//! A stream sends no more jobs than the worker granted credit for; the rest wait here. A job its
//! caller stops waiting for (deadline, cancel, lost lease) is cancelled on the worker by its tag.
//! When a stream breaks, jobs it had sent may have run (answered UNAVAILABLE, as a broken
//! `Execute` call); jobs it had not sent certainly did not ([`NotSent`]). A worker without
//! `Dispatch` (an older version) is called with `Execute` for a while before it is asked again.

use super::{Link, channel::worker_client};
use prost::Message as _;
use rampart_balance::endpoint::Endpoint;
use rampart_proto::{
    limits::ENVELOPE_BYTES,
    v1::{DispatchReply, DispatchRequest, Dispatched, JobRequest, JobResult, answered::Answer},
};
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

/// How long a stream with nothing outstanding stays open: a worker that left the pool (or a
/// quiet one) does not keep a stream forever.
const IDLE: Duration = Duration::from_secs(30);

/// How long a worker that does not know `Dispatch` is called with `Execute` before it is asked
/// again (it may have been upgraded under the same address).
const UNSUPPORTED_RECHECK: Duration = Duration::from_secs(60);

/// Most jobs taken from the queue of callers at once.
const INTAKE: usize = 1024;

/// The failure for a job that never left the gateway: another worker may run it.
#[derive(Debug, thiserror::Error)]
#[error("the job was not sent: {0}")]
pub(crate) struct NotSent(String);

/// What follows a job's progress reports as they arrive.
pub trait ProgressReceiver: Send + Sync {
    /// A report: the fraction done (0 to 1) and what the job is doing.
    fn report(&self, fraction: f64, message: String);
}

/// Where a job's progress reports go.
pub type OnProgress = Arc<dyn ProgressReceiver>;

/// How a job on a stream ended, for the caller.
pub(crate) enum Streamed {
    /// What `Execute` would have answered.
    Answered(Result<JobResult, Status>),
    /// The worker has no `Dispatch`: call it with `Execute`.
    Unsupported,
}

/// The dispatch streams of one pool, one per endpoint, opened when first used.
#[derive(Debug, Default)]
pub(crate) struct DispatchStreams {
    streams: Mutex<HashMap<u64, Arc<DispatchStream>>>,
}

impl DispatchStreams {
    /// Runs `job` on `endpoint` over its stream, waiting up to `remaining`.
    pub(crate) async fn run(
        &self,
        endpoint: &Arc<Endpoint>,
        link: &Link,
        job: JobRequest,
        remaining: Duration,
        traceparent: String,
        progress: Option<OnProgress>,
    ) -> Streamed {
        let Some(stream) = self.stream(endpoint, link) else { return Streamed::Unsupported };
        stream.run(job, remaining, traceparent, progress).await
    }

    /// The endpoint's open stream, a new one if it has none, or none if it has no `Dispatch`.
    fn stream(&self, endpoint: &Arc<Endpoint>, link: &Link) -> Option<Arc<DispatchStream>> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stream) = streams.get(&endpoint.id()) {
            if stream.unsupported_until().is_some_and(|until| Instant::now() < until) {
                return None;
            }
            if !stream.outgoing.is_closed() {
                return Some(Arc::clone(stream));
            }
        }
        // Streams of endpoints gone from the pool end when idle; forget them with the next one.
        streams.retain(|_, stream| !stream.outgoing.is_closed());
        let stream = DispatchStream::open(Arc::clone(endpoint), link.clone());
        streams.insert(endpoint.id(), Arc::clone(&stream));
        Some(stream)
    }
}

/// A message from callers to a stream's task.
enum Outgoing {
    Job { tag: u64, dispatched: Dispatched, waiting: Waiting },
    Cancel(u64),
}

/// A caller waiting for its job's answer, and following its progress if it wants.
struct Waiting {
    reply: oneshot::Sender<Streamed>,
    progress: Option<OnProgress>,
}

/// One endpoint's stream: where callers hand their jobs to the task that drives it.
#[derive(Debug)]
struct DispatchStream {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    next_tag: AtomicU64,
    /// Set when the worker answered that it has no `Dispatch`.
    unsupported: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Job { tag, .. } => write!(f, "Job({tag})"),
            Self::Cancel(tag) => write!(f, "Cancel({tag})"),
        }
    }
}

impl DispatchStream {
    fn open(endpoint: Arc<Endpoint>, link: Link) -> Arc<Self> {
        let (outgoing, inbox) = mpsc::unbounded_channel();
        let unsupported = Arc::new(Mutex::new(None));
        tokio::spawn(drive(endpoint, link, inbox, Arc::clone(&unsupported)));
        Arc::new(Self { outgoing, next_tag: AtomicU64::new(1), unsupported })
    }

    fn unsupported_until(&self) -> Option<Instant> {
        *self.unsupported.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(
        &self,
        job: JobRequest,
        remaining: Duration,
        traceparent: String,
        progress: Option<OnProgress>,
    ) -> Streamed {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let deadline_ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX).max(1);
        let dispatched = Dispatched { tag, job: Some(job), deadline_ms, traceparent };
        let (reply, answer) = oneshot::channel();
        if self.outgoing.send(Outgoing::Job { tag, dispatched, waiting: Waiting { reply, progress } }).is_err() {
            return not_sent("the stream to the worker closed");
        }
        // Dropped before the answer (deadline, cancel, lost lease): the worker stops the job.
        let cancel = CancelOnDrop { outgoing: &self.outgoing, tag: Some(tag) };
        let answer = answer.await;
        cancel.disarm();
        answer.unwrap_or_else(|_| not_sent("the stream to the worker closed before sending the job"))
    }
}

fn not_sent(reason: &str) -> Streamed {
    Streamed::Answered(Err(Status::from_error(Box::new(NotSent(reason.to_owned())))))
}

/// Tells the stream to cancel a job its caller stopped waiting for.
struct CancelOnDrop<'a> {
    outgoing: &'a mpsc::UnboundedSender<Outgoing>,
    tag: Option<u64>,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.tag = None;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(tag) = self.tag {
            // A closed stream has no job to cancel.
            let _ = self.outgoing.send(Outgoing::Cancel(tag));
        }
    }
}

/// A stream's jobs: those waiting for credit, those sent and not answered, the cancellations
/// to send.
struct Book {
    queued: VecDeque<(u64, Dispatched, Waiting)>,
    sent: HashMap<u64, Waiting>,
    cancels: Vec<u64>,
    credit: u64,
    /// The most a message may carry.
    limit: usize,
}

impl Book {
    fn take(&mut self, message: Outgoing) {
        match message {
            Outgoing::Job { tag, dispatched, waiting } => self.queued.push_back((tag, dispatched, waiting)),
            Outgoing::Cancel(tag) => {
                if self.sent.remove(&tag).is_some() {
                    self.cancels.push(tag);
                } else {
                    self.queued.retain(|(queued, ..)| *queued != tag);
                }
            }
        }
    }

    fn answer(&mut self, reply: DispatchReply) {
        self.credit += u64::from(reply.credit);
        if reply.max_message_bytes > 0 {
            // The worker reads no bigger message: a job over it would break the whole stream.
            let worker = usize::try_from(reply.max_message_bytes).unwrap_or(usize::MAX);
            self.limit = self.limit.min(worker.saturating_sub(ENVELOPE_BYTES).max(1));
        }
        // A job's reports come before its answer.
        for report in reply.progress {
            if let Some(Waiting { progress: Some(progress), .. }) = self.sent.get(&report.tag) {
                progress.report(report.fraction, report.message);
            }
        }
        for answered in reply.answers {
            let Some(Waiting { reply: waiting, .. }) = self.sent.remove(&answered.tag) else { continue };
            let answer = match answered.answer {
                Some(Answer::Result(result)) => Ok(result),
                Some(Answer::Refusal(refusal)) => Err(refusal.into_status()),
                None => Err(Status::internal("the worker answered a job with neither a result nor a refusal")),
            };
            let _ = waiting.send(Streamed::Answered(answer));
        }
    }

    /// The next message the credit allows, if there is anything to send.
    fn next_request(&mut self) -> Option<DispatchRequest> {
        let mut request = DispatchRequest { jobs: Vec::new(), cancel: std::mem::take(&mut self.cancels) };
        let mut size = 0;
        while self.credit > 0 {
            let Some((_, front, _)) = self.queued.front() else { break };
            let len = front.encoded_len();
            if !request.jobs.is_empty() && size + len > self.limit {
                break;
            }
            let Some((tag, dispatched, waiting)) = self.queued.pop_front() else { break };
            if waiting.reply.is_closed() {
                continue;
            }
            if len > self.limit {
                let too_large =
                    format!("the job is {len} bytes, over the {} a message to the worker may carry", self.limit);
                let _ = waiting.reply.send(Streamed::Answered(Err(Status::out_of_range(too_large))));
                continue;
            }
            size += len;
            self.credit -= 1;
            self.sent.insert(tag, waiting);
            request.jobs.push(dispatched);
        }
        (!request.jobs.is_empty() || !request.cancel.is_empty()).then_some(request)
    }

    fn idle(&self) -> bool {
        self.queued.is_empty() && self.sent.is_empty()
    }

    /// Ends every job: those sent with `broken` (they may have run), the others as not sent.
    fn fail(&mut self, broken: &Status, unsupported: bool) {
        for (_, waiting) in self.sent.drain() {
            let _ = waiting.reply.send(Streamed::Answered(Err(broken.clone())));
        }
        for (_, _, waiting) in self.queued.drain(..) {
            let _ = waiting.reply.send(if unsupported { Streamed::Unsupported } else { not_sent(broken.message()) });
        }
    }
}

/// Drives one stream until it breaks or stays idle for [`IDLE`].
async fn drive(
    endpoint: Arc<Endpoint>,
    link: Link,
    mut inbox: mpsc::UnboundedReceiver<Outgoing>,
    unsupported: Arc<Mutex<Option<Instant>>>,
) {
    let limit = link.message_limit.saturating_sub(ENVELOPE_BYTES).max(ENVELOPE_BYTES);
    let mut book = Book { queued: VecDeque::new(), sent: HashMap::new(), cancels: Vec::new(), credit: 0, limit };
    let (requests, request_stream) = mpsc::channel::<DispatchRequest>(4);
    // Replies are read apart and never wait: the worker may be blocked sending them while this
    // task is blocked sending it jobs. Credit bounds how many there can be.
    let (replies, mut reply_inbox) = mpsc::unbounded_channel();
    match worker_client(&endpoint, &link) {
        Ok(client) => {
            tokio::spawn(read_replies(client, ReceiverStream::new(request_stream), replies));
        }
        Err(error) => drop(replies.send(Err(Status::from_error(Box::new(NotSent(error.to_string())))))),
    }
    let mut messages = Vec::with_capacity(INTAKE);
    let mut idle_since = Instant::now();
    let ended: Option<Status> = loop {
        tokio::select! {
            biased;
            reply = reply_inbox.recv() => match reply {
                Some(Ok(reply)) => book.answer(reply),
                Some(Err(status)) => break Some(status),
                None => break Some(Status::unavailable("the worker ended the dispatch stream")),
            },
            received = inbox.recv_many(&mut messages, INTAKE) => {
                if received == 0 {
                    break None;
                }
                for message in messages.drain(..) {
                    book.take(message);
                }
            }
            () = tokio::time::sleep_until((idle_since + IDLE).into()), if book.idle() => break None,
        }
        while let Some(request) = book.next_request() {
            if requests.send(request).await.is_err() {
                break;
            }
        }
        if !book.idle() {
            idle_since = Instant::now();
        }
    };
    // Callers that raced the end get a closed channel; answer those already in it.
    inbox.close();
    while let Ok(message) = inbox.try_recv() {
        book.take(message);
    }
    let ended = ended.unwrap_or_else(|| Status::unavailable("the dispatch stream was closed"));
    let no_dispatch = ended.code() == Code::Unimplemented && book.sent.is_empty();
    if no_dispatch {
        tracing::info!(worker = endpoint.url(), "the worker has no Dispatch; calling it with Execute");
        *unsupported.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + UNSUPPORTED_RECHECK);
    } else if !book.idle() {
        tracing::warn!(worker = endpoint.url(), status = %ended, jobs = book.sent.len(), "a dispatch stream broke");
    }
    let broken = Status::unavailable(format!("the dispatch stream to the worker broke: {}", ended.message()));
    book.fail(if no_dispatch { &ended } else { &broken }, no_dispatch);
}

/// Opens the call and forwards its replies until it ends.
async fn read_replies(
    mut client: rampart_proto::v1::worker_client::WorkerClient<tonic::transport::Channel>,
    requests: ReceiverStream<DispatchRequest>,
    replies: mpsc::UnboundedSender<Result<DispatchReply, Status>>,
) {
    let mut stream = match client.dispatch(requests).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            // No reply came, so no job had credit to be sent: none of them ran.
            drop(replies.send(Err(status)));
            return;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(reply)) => {
                if replies.send(Ok(reply)).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(status) => {
                drop(replies.send(Err(status)));
                return;
            }
        }
    }
}
