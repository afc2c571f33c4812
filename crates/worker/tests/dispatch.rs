//! `Dispatch` on the worker binary over real gRPC: credit first, one answer per job by its tag,
//! refusals that say what `Execute` would, cancellation by tag, and the stream's end.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use rampart_proto::{
    WorkerError,
    v1::{Answered, DispatchReply, DispatchRequest, Dispatched, JobStatus, answered::Answer},
};
use rampart_testkit::spawn_worker;
use std::{collections::HashMap, time::Duration};
use support::{client, job};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

/// One stream: what is sent and what comes back.
struct Stream {
    send: mpsc::Sender<DispatchRequest>,
    replies: Streaming<DispatchReply>,
}

impl Stream {
    async fn open(worker: &rampart_testkit::Process) -> Self {
        let (send, requests) = mpsc::channel(16);
        let replies = client(worker).await.dispatch(ReceiverStream::new(requests)).await.unwrap().into_inner();
        Self { send, replies }
    }

    async fn jobs(&self, jobs: Vec<Dispatched>) {
        self.send.send(DispatchRequest { jobs, cancel: Vec::new() }).await.unwrap();
    }

    async fn next(&mut self) -> DispatchReply {
        tokio::time::timeout(Duration::from_secs(10), self.replies.message()).await.unwrap().unwrap().unwrap()
    }

    /// Replies until `count` answers came, with the credit they granted.
    async fn answers(&mut self, count: usize) -> (HashMap<u64, Answered>, u32) {
        let (mut answers, mut credit) = (HashMap::new(), 0);
        while answers.len() < count {
            let reply = self.next().await;
            credit += reply.credit;
            for answer in reply.answers {
                assert!(answers.insert(answer.tag, answer).is_none(), "each job is answered once");
            }
        }
        (answers, credit)
    }
}

fn dispatched(tag: u64, kind: &str, payload: &str) -> Dispatched {
    Dispatched { tag, job: Some(job(kind, payload)), deadline_ms: 10_000, traceparent: String::new() }
}

#[tokio::test]
async fn jobs_are_answered_by_tag_and_each_answer_gives_back_its_credit() {
    let worker = spawn_worker(&["--io-concurrency", "100", "--io-queue", "100"]).await;
    let mut stream = Stream::open(&worker).await;
    let first = stream.next().await;
    assert!(first.answers.is_empty());
    assert!(first.credit >= 100 && first.credit <= 1024, "the first window is the free capacity: {}", first.credit);
    assert_eq!(first.max_message_bytes, 16 << 20, "the first reply says how big a message may be");

    let mut jobs: Vec<_> = (1..=50).map(|tag| dispatched(tag, "echo", &format!(r#"{{"n":{tag}}}"#))).collect();
    jobs.push(dispatched(51, "resize", "{}"));
    jobs.push(dispatched(52, "sleep", r#"{"ms":"long"}"#));
    stream.jobs(jobs).await;
    let (answers, credit) = stream.answers(52).await;
    assert_eq!(credit, 52, "every answer frees its slot");
    for tag in 1..=50 {
        let Some(Answer::Result(result)) = &answers[&tag].answer else { panic!("{:?}", answers[&tag]) };
        assert_eq!(result.status(), JobStatus::Succeeded);
        assert_eq!(result.output, format!(r#"{{"n":{tag}}}"#).as_bytes());
    }
    let refusal = |tag: u64| match &answers[&tag].answer {
        Some(Answer::Refusal(refusal)) => refusal.clone(),
        other => panic!("{other:?}"),
    };
    let unknown = refusal(51);
    assert_eq!(unknown.code, Code::Unimplemented as i32);
    assert!(unknown.not_started && unknown.message.contains("echo"), "{unknown:?}");
    assert!(matches!(WorkerError::from_status(&unknown.into_status()), WorkerError::UnknownKind(_)));
    assert_eq!(refusal(52).code, Code::InvalidArgument as i32);
}

#[tokio::test]
async fn a_cancelled_job_stops_unanswered_and_frees_its_slot() {
    let worker = spawn_worker(&[]).await;
    let mut stream = Stream::open(&worker).await;
    stream.next().await;
    stream.jobs(vec![dispatched(1, "sleep", r#"{"ms":30000}"#), dispatched(2, "echo", "{}")]).await;
    let (answers, _) = stream.answers(1).await;
    assert!(answers.contains_key(&2));
    stream.send.send(DispatchRequest { jobs: Vec::new(), cancel: vec![1] }).await.unwrap();
    let reply = stream.next().await;
    assert!(reply.answers.is_empty(), "a cancelled job gets no answer: {reply:?}");
    assert_eq!(reply.credit, 1, "its slot is given back");
    let mut client = client(&worker).await;
    let io = support::pool(&mut client, rampart_proto::v1::PoolKind::Io).await;
    assert_eq!(io.busy, 0, "the sleep stopped");
}

#[tokio::test]
async fn a_job_over_its_deadline_is_answered_deadline_exceeded() {
    let worker = spawn_worker(&[]).await;
    let mut stream = Stream::open(&worker).await;
    stream.next().await;
    let mut late = dispatched(7, "sleep", r#"{"ms":5000}"#);
    late.deadline_ms = 200;
    stream.jobs(vec![late]).await;
    let (answers, _) = stream.answers(1).await;
    let Some(Answer::Refusal(refusal)) = &answers[&7].answer else { panic!("{answers:?}") };
    assert_eq!(refusal.code, Code::DeadlineExceeded as i32, "{refusal:?}");
}

#[tokio::test]
async fn the_stream_ends_once_the_caller_is_done_and_every_job_is_answered() {
    let worker = spawn_worker(&[]).await;
    let mut stream = Stream::open(&worker).await;
    stream.next().await;
    stream.jobs(vec![dispatched(1, "sleep", r#"{"ms":300}"#)]).await;
    let Stream { send, mut replies } = stream;
    drop(send);
    let mut answered = 0;
    while let Some(reply) = tokio::time::timeout(Duration::from_secs(10), replies.message()).await.unwrap().unwrap() {
        answered += reply.answers.len();
    }
    assert_eq!(answered, 1, "the running job was answered before the end");
}
