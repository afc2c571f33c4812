//! Sending the load: a task per connection (or per stream in flight) drawing request slots from
//! one schedule, so the run ends exactly at its count or time, and an open-loop rate holds.

use crate::{
    connect::Connector,
    http1,
    record::{Progress, Recorder, error_kind},
    target::{RequestSpec, Target},
};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_proto::v1::{JobRequest, JobStatus, worker_client::WorkerClient};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

/// Requests in flight per HTTP/2 or gRPC connection.
const STREAMS_PER_CONNECTION: u64 = 100;

/// Pause after a failed connect, so a dead target is not hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// How to speak to the target.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// HTTP/1.1 keep-alive, one request at a time per connection.
    Http1,
    /// HTTP/2 over cleartext, multiplexed.
    Http2,
    /// A Rampart worker's `Execute`.
    Grpc {
        /// The job kind.
        kind: String,
        /// The JSON payload.
        payload: Bytes,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The target.
    pub target: Target,
    /// How connections to it are opened (plain, or TLS for `https://`).
    pub connector: Connector,
    /// The request.
    pub request: RequestSpec,
    /// The protocol.
    pub protocol: Protocol,
    /// Connections (HTTP/1.1) or requests in flight (HTTP/2, gRPC).
    pub connections: u64,
    /// Stop after this long.
    pub time_limit: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Open loop: requests per second.
    pub rate: Option<f64>,
    /// Each request's time limit.
    pub timeout: Duration,
}

/// Why the run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The target refused or did not answer the first connection.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
}

/// The slots every task draws from: when each request is due, and when the run is over.
struct Schedule {
    start: Instant,
    deadline: Option<Instant>,
    requests: Option<u64>,
    rate: Option<f64>,
    next: AtomicU64,
}

impl Schedule {
    /// When the next request is due, or `None` once the run is over.
    fn next(&self) -> Option<Instant> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        if self.requests.is_some_and(|count| slot >= count) {
            return None;
        }
        let due = match self.rate {
            #[allow(clippy::cast_precision_loss)] // slot counts far below 2^52
            Some(rate) => self.start + Duration::from_secs_f64(slot as f64 / rate),
            None => Instant::now(),
        };
        if self.deadline.is_some_and(|deadline| due >= deadline) {
            return None;
        }
        Some(due)
    }
}

/// The records of a finished run.
#[derive(Debug)]
pub struct Outcome {
    /// Everything recorded.
    pub records: Recorder,
    /// From the first request due to the last answer.
    pub elapsed: Duration,
}

/// Checks that the target accepts a connection (and, for HTTP/2, speaks h2c), so a wrong
/// address fails at once and clearly.
pub async fn probe(plan: &Plan) -> Result<(), RunError> {
    let address = plan.target.address;
    let limit = plan.timeout.min(Duration::from_secs(5));
    match tokio::time::timeout(limit, plan.connector.connect()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(RunError::Connect { address, reason: error.to_string() }),
        Err(_) => return Err(RunError::Connect { address, reason: "no answer within 5 s".into() }),
    }
    if matches!(plan.protocol, Protocol::Http2) {
        let no_h2 = |reason: String| RunError::Connect {
            address,
            reason: format!("no HTTP/2 here (h2c, or h2 over TLS), or the server refused it: {reason}"),
        };
        let mut sender = h2_connect(plan).await.map_err(|error| no_h2(error.to_string()))?;
        let request = http::Request::get(format!("http://{}{}", plan.target.authority, plan.target.path))
            .body(Full::new(Bytes::new()))
            .map_err(|error| no_h2(error.to_string()))?;
        match tokio::time::timeout(limit, sender.send_request(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(no_h2(error.to_string())),
            Err(_) => return Err(no_h2("no answer within 5 s".into())),
        }
    }
    Ok(())
}

/// Runs the plan to its end.
pub async fn run(plan: Plan, progress: Arc<Progress>) -> Outcome {
    let start = Instant::now();
    let schedule = Arc::new(Schedule {
        start,
        deadline: plan.time_limit.map(|limit| start + limit),
        requests: plan.requests,
        rate: plan.rate,
        next: AtomicU64::new(0),
    });
    let plan = Arc::new(plan);
    let mut tasks = Vec::new();
    match &plan.protocol {
        Protocol::Http1 => {
            let request: Arc<[u8]> = plan.request.http1_bytes(&plan.target).into();
            for _ in 0..plan.connections {
                let task =
                    http1_task(Arc::clone(&plan), Arc::clone(&schedule), Arc::clone(&request), Arc::clone(&progress));
                tasks.push(tokio::spawn(task));
            }
        }
        Protocol::Http2 => {
            let mut sender = None;
            for index in 0..plan.connections {
                if index % STREAMS_PER_CONNECTION == 0 {
                    sender = h2_connect(&plan).await.ok();
                }
                let task = http2_task(Arc::clone(&plan), Arc::clone(&schedule), sender.clone(), Arc::clone(&progress));
                tasks.push(tokio::spawn(task));
            }
        }
        Protocol::Grpc { kind, payload } => {
            let job = JobRequest { kind: kind.clone(), payload: payload.clone(), attempt: 1, ..JobRequest::default() };
            let url = format!("http://{}", plan.target.address);
            let mut client = None;
            for index in 0..plan.connections {
                if index % STREAMS_PER_CONNECTION == 0 {
                    client = tonic::transport::Endpoint::from_shared(url.clone())
                        .ok()
                        .map(|endpoint| WorkerClient::new(endpoint.tcp_nodelay(true).connect_lazy()));
                }
                let task = grpc_task(
                    Arc::clone(&plan),
                    Arc::clone(&schedule),
                    client.clone(),
                    job.clone(),
                    Arc::clone(&progress),
                );
                tasks.push(tokio::spawn(task));
            }
        }
    }
    let mut records = Recorder::new();
    for task in tasks {
        if let Ok(recorded) = task.await {
            records.merge(&recorded);
        }
    }
    Outcome { records, elapsed: start.elapsed() }
}

/// Waits for a slot; when its latency is measured from, or `None` when the run is over.
///
/// A request that is late because the connection was busy (the server was slow) is measured
/// from when it was due, so that wait counts: coordinated omission corrected. A request whose
/// connection was free waits for its time and is measured from when it actually goes, so the
/// timer's own lateness (up to a millisecond) is not charged to the server.
async fn next_slot(schedule: &Schedule) -> Option<Instant> {
    let due = schedule.next()?;
    if schedule.rate.is_none() || Instant::now() >= due {
        return Some(due);
    }
    tokio::time::sleep_until(due).await;
    Some(Instant::now())
}

/// Three-digit status code as text without allocating.
fn status_text(code: u16, buffer: &mut [u8; 3]) -> &str {
    let code = code.min(999);
    buffer[0] = b'0' + u8::try_from(code / 100).unwrap_or(0);
    buffer[1] = b'0' + u8::try_from(code / 10 % 10).unwrap_or(0);
    buffer[2] = b'0' + u8::try_from(code % 10).unwrap_or(0);
    std::str::from_utf8(buffer).unwrap_or("???")
}

fn http_success(status: u16) -> bool {
    (200..400).contains(&status)
}

async fn http1_task(plan: Arc<Plan>, schedule: Arc<Schedule>, request: Arc<[u8]>, progress: Arc<Progress>) -> Recorder {
    let mut records = Recorder::new();
    let mut connection: Option<http1::Connection> = None;
    let head = plan.request.method == http::Method::HEAD;
    let mut text = [0_u8; 3];
    while let Some(due) = next_slot(&schedule).await {
        if connection.is_none() {
            match tokio::time::timeout(plan.timeout, http1::Connection::connect(&plan.connector, head)).await {
                Ok(Ok(fresh)) => connection = Some(fresh),
                outcome => {
                    let kind = match outcome {
                        Ok(Err(error)) => error_kind("connect", &error),
                        _ => "connect: timeout".to_owned(),
                    };
                    let now = Instant::now();
                    records.error(&kind, now - schedule.start, now - due);
                    progress.count(false);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else { continue };
        let answer = tokio::time::timeout(plan.timeout, open.send(&request)).await;
        let now = Instant::now();
        let (at, latency) = (now - schedule.start, now - due);
        match answer {
            Ok(Ok(answer)) => {
                let success = http_success(answer.status);
                records.answer(status_text(answer.status, &mut text), success, answer.bytes, at, latency);
                progress.count(success);
                if answer.closes {
                    connection = None;
                }
            }
            Ok(Err(error)) => {
                records.error(&error_kind("request", &error), at, latency);
                progress.count(false);
                connection = None;
            }
            Err(_) => {
                records.error("timeout", at, latency);
                progress.count(false);
                connection = None;
            }
        }
    }
    records
}

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2_connect(plan: &Plan) -> std::io::Result<H2Sender> {
    let stream = plan.connector.connect().await?;
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn http2_task(
    plan: Arc<Plan>,
    schedule: Arc<Schedule>,
    mut sender: Option<H2Sender>,
    progress: Arc<Progress>,
) -> Recorder {
    let mut records = Recorder::new();
    let scheme = if plan.target.secure { "https" } else { "http" };
    let uri: http::Uri =
        format!("{scheme}://{}{}", plan.target.authority, plan.target.path).parse().unwrap_or_default();
    let mut text = [0_u8; 3];
    while let Some(due) = next_slot(&schedule).await {
        if sender.as_ref().is_none_or(hyper::client::conn::http2::SendRequest::is_closed) {
            match h2_connect(&plan).await {
                Ok(fresh) => sender = Some(fresh),
                Err(error) => {
                    let now = Instant::now();
                    records.error(&error_kind("connect", &error), now - schedule.start, now - due);
                    progress.count(false);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
        }
        let Some(open) = sender.as_mut() else { continue };
        let mut request = http::Request::new(Full::new(plan.request.body.clone()));
        *request.method_mut() = plan.request.method.clone();
        *request.uri_mut() = uri.clone();
        for (name, value) in &plan.request.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let exchange = async {
            let response = open.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body.len()))
        };
        let answer = tokio::time::timeout(plan.timeout, exchange).await;
        let now = Instant::now();
        let (at, latency) = (now - schedule.start, now - due);
        match answer {
            Ok(Ok((status, bytes))) => {
                let success = http_success(status);
                records.answer(status_text(status, &mut text), success, bytes, at, latency);
                progress.count(success);
            }
            Ok(Err(error)) => {
                let kind = if error.is_closed() || error.is_canceled() {
                    "request: connection closed"
                } else if error.is_timeout() {
                    "timeout"
                } else {
                    "request: http2 error"
                };
                records.error(kind, at, latency);
                progress.count(false);
            }
            Err(_) => {
                records.error("timeout", at, latency);
                progress.count(false);
            }
        }
    }
    records
}

async fn grpc_task(
    plan: Arc<Plan>,
    schedule: Arc<Schedule>,
    client: Option<WorkerClient<tonic::transport::Channel>>,
    job: JobRequest,
    progress: Arc<Progress>,
) -> Recorder {
    let mut records = Recorder::new();
    let Some(mut client) = client else {
        records.error("connect: invalid address", Duration::ZERO, Duration::ZERO);
        return records;
    };
    while let Some(due) = next_slot(&schedule).await {
        let mut request = tonic::Request::new(job.clone());
        request.set_timeout(plan.timeout);
        let answer = tokio::time::timeout(plan.timeout, client.execute(request)).await;
        let now = Instant::now();
        let (at, latency) = (now - schedule.start, now - due);
        match answer {
            Ok(Ok(response)) => {
                let result = response.get_ref();
                let succeeded = result.status() == JobStatus::Succeeded;
                let label = if succeeded { "OK" } else { "OK (job failed)" };
                records.answer(label, succeeded, result.output.len(), at, latency);
                progress.count(succeeded);
            }
            Ok(Err(status)) => {
                records.answer(code_name(status.code()), false, 0, at, latency);
                progress.count(false);
            }
            Err(_) => {
                records.error("timeout", at, latency);
                progress.count(false);
            }
        }
    }
    records
}

/// A gRPC status code's canonical name.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_render_without_allocating() {
        let mut buffer = [0_u8; 3];
        assert_eq!(status_text(200, &mut buffer), "200");
        assert_eq!(status_text(503, &mut buffer), "503");
        assert_eq!(status_text(1000, &mut buffer), "999");
    }

    #[tokio::test]
    async fn an_open_loop_schedule_spaces_slots_and_ends_on_time() {
        let start = Instant::now();
        let schedule = Schedule {
            start,
            deadline: Some(start + Duration::from_secs(1)),
            requests: None,
            rate: Some(100.0),
            next: AtomicU64::new(0),
        };
        let mut slots = Vec::new();
        while let Some(due) = schedule.next() {
            slots.push(due - start);
        }
        assert_eq!(slots.len(), 100, "a second at 100/s");
        assert_eq!(slots[1], Duration::from_millis(10));
    }
}
