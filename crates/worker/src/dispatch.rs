//! The worker's side of `Dispatch`: many jobs over one gRPC stream. Each job runs as a task of
//! its own, exactly as an `Execute` call would run it; answers are gathered into few replies,
//! and every reply hands back the credit its answers (and cancellations) freed, so a caller
//! never has more jobs outstanding than the window granted at the start.

use crate::{
    progress::{Progress, ProgressSink},
    service::{WorkerService, job_span},
};
use prost::Message as _;
use rampart_proto::{
    limits::{DEFAULT_MESSAGE_BYTES, ENVELOPE_BYTES},
    v1::{Answered, DispatchReply, DispatchRequest, Dispatched, JobProgress, JobRefusal, answered::Answer},
};
use std::{
    collections::{BTreeMap, HashMap},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::{sync::mpsc, task::AbortHandle};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Status, Streaming};

/// Most jobs one stream may have outstanding: enough to keep a worker busy between two replies,
/// few enough that a stream's jobs are a small part of what its pools can queue.
const MAX_WINDOW: usize = 1024;

/// Most answers gathered into one reply.
const MAX_ANSWERS: usize = 1024;

/// The stream of replies a `Dispatch` call answers with.
pub(crate) type Replies = Pin<Box<dyn Stream<Item = Result<DispatchReply, Status>> + Send>>;

/// Starts serving one dispatch stream and returns its replies.
pub(crate) fn serve(service: WorkerService, requests: Streaming<DispatchRequest>) -> Replies {
    let (replies, stream) = mpsc::channel(16);
    tokio::spawn(drive(service, requests, replies));
    Box::pin(ReceiverStream::new(stream))
}

/// A job's latest progress report not yet sent. A job that reports faster than replies go out
/// overwrites it: the stream carries the latest of each job, and its queue never grows.
type Pending = Arc<Mutex<Option<Progress>>>;

/// What a stream's jobs hand back to it.
enum Outgoing {
    /// A job's answer.
    Answer(Answered),
    /// A job has a new progress report in its slot.
    Progress(u64, Pending),
}

/// The jobs of one stream still running, by tag; they are cancelled if the stream goes away, as
/// an `Execute` call's job is when its connection does.
#[derive(Default)]
struct Running(HashMap<u64, AbortHandle>);

impl Drop for Running {
    fn drop(&mut self) {
        for job in self.0.values() {
            job.abort();
        }
    }
}

/// Reads jobs and cancellations, runs the jobs and sends their answers, until the caller has
/// finished sending and every job is answered (or either side goes away).
async fn drive(
    service: WorkerService,
    mut requests: Streaming<DispatchRequest>,
    replies: mpsc::Sender<Result<DispatchReply, Status>>,
) {
    let (answered, mut answers) = mpsc::unbounded_channel::<Outgoing>();
    let mut running = Running::default();
    let limit = service.message_limit().saturating_sub(ENVELOPE_BYTES).max(ENVELOPE_BYTES);
    // Answers are gathered into messages no bigger than the smallest limit any caller reads;
    // only an answer bigger than that on its own needs the caller's limit to match ours.
    let reply_limit = limit.min(DEFAULT_MESSAGE_BYTES - ENVELOPE_BYTES);
    let window = window(&service);
    let first =
        DispatchReply { credit: window, max_message_bytes: service.message_limit() as u64, ..DispatchReply::default() };
    if replies.send(Ok(first)).await.is_err() {
        return;
    }
    let mut credit = 0u32;
    let mut batch = Vec::with_capacity(MAX_ANSWERS);
    let mut incoming = Vec::with_capacity(MAX_ANSWERS);
    let mut progress = BTreeMap::new();
    let mut reading = true;
    loop {
        tokio::select! {
            request = requests.message(), if reading => match request {
                Ok(Some(request)) => {
                    for tag in request.cancel {
                        if let Some(job) = running.0.remove(&tag) {
                            job.abort();
                            credit += 1;
                        }
                    }
                    for dispatched in request.jobs {
                        let tag = dispatched.tag;
                        let job = tokio::spawn(answer(service.clone(), dispatched, answered.clone(), limit));
                        running.0.insert(tag, job.abort_handle());
                    }
                }
                // The caller sends no more jobs: answer those running, then end.
                Ok(None) => reading = false,
                Err(status) => {
                    tracing::debug!(%status, "a dispatch stream's caller went away; its jobs are cancelled");
                    return;
                }
            },
            _ = answers.recv_many(&mut incoming, MAX_ANSWERS) => {
                for outgoing in incoming.drain(..) {
                    match outgoing {
                        // An answer that raced its cancellation is not sent: the caller forgot
                        // the tag.
                        Outgoing::Answer(answer) => {
                            if running.0.remove(&answer.tag).is_some() {
                                batch.push(answer);
                                credit += 1;
                            }
                        }
                        // A job's reports come before its answer, while it still runs.
                        Outgoing::Progress(tag, pending) => {
                            let latest = pending.lock().unwrap_or_else(PoisonError::into_inner).take();
                            if let Some(Progress { fraction, message }) = latest
                                && running.0.contains_key(&tag)
                            {
                                progress.insert(tag, JobProgress { tag, fraction, message });
                            }
                        }
                    }
                }
            }
        }
        let news = credit > 0 || !batch.is_empty() || !progress.is_empty();
        if news && !send(&replies, &mut progress, &mut batch, &mut credit, reply_limit).await {
            return;
        }
        if !reading && running.0.is_empty() {
            return;
        }
    }
}

/// How many jobs a stream may have outstanding: its free capacity, at most [`MAX_WINDOW`].
fn window(service: &WorkerService) -> u32 {
    let free: usize = service
        .engine()
        .pools()
        .iter()
        .map(|pool| (pool.concurrency + pool.queue_capacity).saturating_sub(pool.busy + pool.queued))
        .sum();
    u32::try_from(free.clamp(1, MAX_WINDOW)).unwrap_or(1)
}

/// Sends `progress`, `batch` and `credit` in as many replies as the message limit needs (the
/// progress of jobs first, before their answers).
async fn send(
    replies: &mpsc::Sender<Result<DispatchReply, Status>>,
    progress: &mut BTreeMap<u64, JobProgress>,
    batch: &mut Vec<Answered>,
    credit: &mut u32,
    limit: usize,
) -> bool {
    let mut answers = batch.drain(..).peekable();
    loop {
        let mut reply = DispatchReply { credit: std::mem::take(credit), ..DispatchReply::default() };
        // Reports are small: one reply carries them all, before any answer.
        reply.progress = std::mem::take(progress).into_values().collect();
        let mut size = reply.progress.iter().map(prost::Message::encoded_len).sum::<usize>();
        while let Some(next) = answers.peek() {
            let len = next.encoded_len();
            if !reply.answers.is_empty() && size + len > limit {
                break;
            }
            size += len;
            reply.answers.extend(answers.next());
        }
        if replies.send(Ok(reply)).await.is_err() {
            return false;
        }
        if answers.peek().is_none() {
            return true;
        }
    }
}

/// Runs one job as `Execute` would and hands its answer back.
async fn answer(
    service: WorkerService,
    dispatched: Dispatched,
    answers: mpsc::UnboundedSender<Outgoing>,
    limit: usize,
) {
    let Dispatched { tag, job, deadline_ms, traceparent } = dispatched;
    let progress = {
        let (answers, pending) = (answers.clone(), Pending::default());
        ProgressSink::new(move |report| {
            let had_news = pending.lock().unwrap_or_else(PoisonError::into_inner).replace(report).is_some();
            if !had_news {
                // The stream may be gone; then nobody follows the job.
                let _ = answers.send(Outgoing::Progress(tag, Arc::clone(&pending)));
            }
        })
    };
    let job = job.unwrap_or_default();
    let span = job_span(&job, |span| {
        if !traceparent.is_empty() {
            rampart_common::trace_context::adopt_from_traceparent(span, &traceparent);
        }
    });
    let call_limit = (deadline_ms > 0).then(|| Duration::from_millis(deadline_ms));
    let answer = match service.run_job(job, call_limit, span, Some(progress)).await {
        Ok(result) if result.encoded_len() > limit => Answer::Refusal(JobRefusal::of_status(&Status::out_of_range(
            format!("the job's output is {} bytes, over the {limit} a message may carry", result.output.len()),
        ))),
        Ok(result) => Answer::Result(result),
        Err(status) => Answer::Refusal(JobRefusal::of_status(&status)),
    };
    // The stream may be gone; then nobody waits for the answer.
    let _ = answers.send(Outgoing::Answer(Answered { tag, answer: Some(answer) }));
}
