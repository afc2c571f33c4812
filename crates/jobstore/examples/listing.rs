//! How long listing queries take with many jobs in a store: fills a store with `--jobs` jobs (a
//! fifth of them run to `succeeded`, a tenth to `dead`, the rest queued, over eight kinds), then
//! times each query of `GET /api/jobs` and `/api/jobs/stats` as the gateway sends it.
//!
//!   cargo run --release -p rampart-jobstore --example listing -- --store sqlite:///tmp/l.db --jobs 1000000
//!   cargo run --release -p rampart-jobstore --example listing -- --store postgres://... --jobs 1000000
//!
//! With `--fill-only` it only fills the store (`bench/console-pages.sh` then times the console
//! on it). Every tenth job has an idempotency key (`order-N`); each dead job's attempt is kept
//! with its worker.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use rampart_jobstore::{
    model::{AttemptRun, Completion, JobFilter, NewJob, Outcome, Page, Priority, Status, now_micros},
    store,
};
use std::time::Instant;

const KINDS: usize = 8;
const BATCH: usize = 10_000;

fn job(n: usize, now: i64) -> NewJob {
    NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: format!("kind-{}", n % KINDS),
        payload: Bytes::from_static(b"{}"),
        priority: Priority::Normal,
        max_attempts: 1,
        timeout_ms: 1000,
        idempotency_key: n.is_multiple_of(10).then(|| format!("order-{n}")),
        fingerprint: n.is_multiple_of(10).then(|| "listing".to_owned()),
        tenant: format!("tenant-{}", n % 4),
        created_at: now,
        run_after: now,
        start_by: None,
        claim: None,
        unique: None,
        traceparent: None,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1)).cloned();
    let url = value("--store").expect("--store URL");
    let jobs: usize = value("--jobs").map_or(1_000_000, |text| text.parse().expect("--jobs N"));
    let store = store::open(&url).await.unwrap();

    let filling = Instant::now();
    for start in (0..jobs).step_by(BATCH) {
        let now = now_micros();
        store.insert((start..(start + BATCH).min(jobs)).map(|n| job(n, now)).collect()).await.unwrap();
    }
    // Run some to an end: claimed oldest first, a fifth succeeded and a tenth dead.
    let mut ended = 0;
    while ended < jobs * 3 / 10 {
        let now = now_micros();
        let claimed = store
            .claim(&rampart_jobstore::rules::ClaimRequest::new(BATCH, "bench", now + 60_000_000, now))
            .await
            .unwrap();
        let completions = claimed
            .iter()
            .map(|job| {
                ended += 1;
                let (outcome, run) = if ended % 3 == 0 {
                    let run = AttemptRun { attempt: 1, worker: Some("http://w1:50051".into()), started: now - 1000 };
                    (Outcome::Failed { error: "boom".into(), retry_at: None }, Some(run))
                } else {
                    (Outcome::Succeeded(Bytes::from_static(b"1")), None)
                };
                Completion { id: job.id.clone(), token: job.token, outcome, at: now, progress: None, run }
            })
            .collect();
        store.complete(completions).await.unwrap();
    }
    println!("{jobs} jobs stored ({ended} ended) in {:.1?}", filling.elapsed());
    if args.iter().any(|arg| arg == "--fill-only") {
        return;
    }

    let middle = store
        .list(&JobFilter::default(), &Page { limit: jobs / 2, before_id: None })
        .await
        .unwrap()
        .last()
        .map(|job| job.id.clone());
    let queries: Vec<(&str, JobFilter, Page)> = vec![
        ("newest 100", JobFilter::default(), Page { limit: 100, before_id: None }),
        ("100 from the middle (cursor)", JobFilter::default(), Page { limit: 100, before_id: middle }),
        (
            "status=queued, 100",
            JobFilter { statuses: vec![Status::Queued], ..JobFilter::default() },
            Page { limit: 100, before_id: None },
        ),
        (
            "status=dead, 100",
            JobFilter { statuses: vec![Status::Dead], ..JobFilter::default() },
            Page { limit: 100, before_id: None },
        ),
        (
            "kind=kind-3, 100",
            JobFilter { kind: Some("kind-3".into()), ..JobFilter::default() },
            Page { limit: 100, before_id: None },
        ),
        (
            "status=succeeded&kind=kind-5, 100",
            JobFilter { statuses: vec![Status::Succeeded], kind: Some("kind-5".into()), ..JobFilter::default() },
            Page { limit: 100, before_id: None },
        ),
        (
            "tenant=tenant-2, 100",
            JobFilter { tenant: Some("tenant-2".into()), ..JobFilter::default() },
            Page { limit: 100, before_id: None },
        ),
        ("newest 1000", JobFilter::default(), Page { limit: 1000, before_id: None }),
    ];
    for (name, filter, page) in &queries {
        let mut times = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            let found = store.list(filter, page).await.unwrap();
            times.push(started.elapsed());
            assert!(!found.is_empty(), "{name}");
        }
        times.sort();
        println!("list {name}: median {:.2?}, max {:.2?}", times[3], times[6]);
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        store.stats(&JobFilter::default(), now_micros()).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    println!("stats (counts by status and kind): median {:.2?}", times[1]);
}
