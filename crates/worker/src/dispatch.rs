//! The worker's side of `Dispatch`: many jobs over one gRPC stream. Each job runs as a task of
//! its own, exactly as an `Execute` call would run it; answers are gathered into few replies,
//! and every reply hands back the credit its answers (and cancellations) freed, so a caller
//! never has more jobs outstanding than the window granted at the start.

use crate::service::{WorkerService, job_span};
use prost::Message as _;
use rampart_proto::{
    limits::{DEFAULT_MESSAGE_BYTES, ENVELOPE_BYTES},
    v1::{Answered, DispatchReply, DispatchRequest, Dispatched, JobRefusal, answered::Answer},
};
use std::{collections::HashMap, pin::Pin, time::Duration};
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
    let (answered, mut answers) = mpsc::unbounded_channel::<Answered>();
    let mut running = Running::default();
    let limit = service.message_limit().saturating_sub(ENVELOPE_BYTES).max(ENVELOPE_BYTES);
    // Answers are gathered into messages no bigger than the smallest limit any caller reads;
    // only an answer bigger than that on its own needs the caller's limit to match ours.
    let reply_limit = limit.min(DEFAULT_MESSAGE_BYTES - ENVELOPE_BYTES);
    let window = window(&service);
    let first =
        DispatchReply { answers: Vec::new(), credit: window, max_message_bytes: service.message_limit() as u64 };
    if replies.send(Ok(first)).await.is_err() {
        return;
    }
    let mut credit = 0u32;
    let mut batch = Vec::with_capacity(MAX_ANSWERS);
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
            _ = answers.recv_many(&mut batch, MAX_ANSWERS) => {
                // An answer that raced its cancellation is not sent: the caller forgot the tag.
                batch.retain(|answer| running.0.remove(&answer.tag).is_some());
                credit += u32::try_from(batch.len()).unwrap_or(u32::MAX);
            }
        }
        if (credit > 0 || !batch.is_empty()) && !send(&replies, &mut batch, &mut credit, reply_limit).await {
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

/// Sends `batch` and `credit` in as many replies as the message limit needs.
async fn send(
    replies: &mpsc::Sender<Result<DispatchReply, Status>>,
    batch: &mut Vec<Answered>,
    credit: &mut u32,
    limit: usize,
) -> bool {
    let mut answers = batch.drain(..).peekable();
    loop {
        let mut reply = DispatchReply { answers: Vec::new(), credit: std::mem::take(credit), max_message_bytes: 0 };
        let mut size = 0;
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
    answers: mpsc::UnboundedSender<Answered>,
    limit: usize,
) {
    let Dispatched { tag, job, deadline_ms, traceparent } = dispatched;
    let job = job.unwrap_or_default();
    let span = job_span(&job, |span| {
        if !traceparent.is_empty() {
            rampart_common::trace_context::adopt_from_traceparent(span, &traceparent);
        }
    });
    let call_limit = (deadline_ms > 0).then(|| Duration::from_millis(deadline_ms));
    let answer = match service.run_job(job, call_limit, span).await {
        Ok(result) if result.encoded_len() > limit => Answer::Refusal(JobRefusal::of_status(&Status::out_of_range(
            format!("the job's output is {} bytes, over the {limit} a message may carry", result.output.len()),
        ))),
        Ok(result) => Answer::Result(result),
        Err(status) => Answer::Refusal(JobRefusal::of_status(&status)),
    };
    // The stream may be gone; then nobody waits for the answer.
    let _ = answers.send(Answered { tag, answer: Some(answer) });
}
