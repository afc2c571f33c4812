//! Helpers shared by the worker's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a subset

use rampart_proto::v1::{
    DescribeRequest, JobRequest, JobResult, PoolInfo, PoolKind, Priority, WorkerInfo, worker_client::WorkerClient,
};
use rampart_testkit::{Process, worker_url};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// A client connected to `worker`.
pub(crate) async fn client(worker: &Process) -> WorkerClient<Channel> {
    WorkerClient::connect(worker_url(worker)).await.expect("connect to worker")
}

/// A job of `kind` with a JSON `payload`.
pub(crate) fn job(kind: &str, payload: &str) -> JobRequest {
    JobRequest {
        id: format!("test-{kind}"),
        kind: kind.into(),
        payload: payload.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

/// The same job at `priority`.
pub(crate) fn with_priority(mut job: JobRequest, priority: Priority) -> JobRequest {
    job.set_priority(priority);
    job
}

/// Runs one job.
pub(crate) async fn run(
    client: &mut WorkerClient<Channel>,
    kind: &str,
    payload: &str,
) -> Result<JobResult, tonic::Status> {
    client.execute(job(kind, payload)).await.map(tonic::Response::into_inner)
}

/// What the worker says of itself.
pub(crate) async fn describe(client: &mut WorkerClient<Channel>) -> WorkerInfo {
    client.describe(DescribeRequest {}).await.unwrap().into_inner()
}

/// One pool's figures.
pub(crate) async fn pool(client: &mut WorkerClient<Channel>, kind: PoolKind) -> PoolInfo {
    describe(client).await.pools.into_iter().find(|pool| pool.kind() == kind).unwrap()
}

/// Waits until the worker reports `busy` running and `queued` waiting jobs in `kind`'s pool.
pub(crate) async fn wait_for_load(client: &mut WorkerClient<Channel>, kind: PoolKind, busy: u32, queued: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = pool(client, kind).await;
        if (stats.busy, stats.queued) == (busy, queued) {
            return;
        }
        assert!(Instant::now() < deadline, "pool {kind:?} never reached {busy} busy, {queued} queued: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `job` in the background with a call deadline of `deadline`.
pub(crate) fn spawn_call(
    client: &WorkerClient<Channel>,
    job: JobRequest,
    deadline: Duration,
) -> tokio::task::JoinHandle<(Result<JobResult, tonic::Status>, Instant)> {
    let mut client = client.clone();
    tokio::spawn(async move {
        let mut request = tonic::Request::new(job);
        request.set_timeout(deadline);
        let result = client.execute(request).await.map(tonic::Response::into_inner);
        (result, Instant::now())
    })
}
