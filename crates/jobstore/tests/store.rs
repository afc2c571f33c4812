//! The job store's contract, checked on a real SQLite file and on a real PostgreSQL server with
//! the same scenarios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use rampart_jobstore::{
    cluster::{Heard, Member, Signal},
    model::{ClaimAtAccept, Completion, EXPIRED_ERROR, JobFilter, NewJob, NextDue, Outcome, Page, Status, Unique},
    rules::{ClaimRequest, PauseScope, RunningLimits},
    store::{self, CancelOutcome, Depth, JobStore, Lease},
};
use rampart_testkit::postgres::Postgres;
use std::{sync::Arc, time::Duration};

const SECOND: i64 = 1_000_000;
const T0: i64 = 1_800_000_000 * SECOND;

fn job(id: &str, priority: i16, key: Option<&str>) -> NewJob {
    NewJob {
        id: id.to_owned(),
        kind: "echo".into(),
        payload: Bytes::from(format!("{{\"job\":\"{id}\"}}")),
        priority: rampart_jobstore::model::Priority::from_stored(priority),
        max_attempts: 2,
        timeout_ms: 1000,
        idempotency_key: key.map(str::to_owned),
        fingerprint: key.map(|_| "the same request".to_owned()),
        tenant: "acme".into(),
        created_at: T0,
        run_after: T0,
        start_by: None,
        claim: None,
        unique: None,
        traceparent: None,
    }
}

fn ended_before(before: i64) -> JobFilter {
    JobFilter { finished_before: Some(before), ..JobFilter::default() }
}

fn only(statuses: &[Status]) -> JobFilter {
    JobFilter { statuses: statuses.to_vec(), ..JobFilter::default() }
}

/// Every page of a listing, following the cursor.
async fn all_pages(store: &dyn JobStore, filter: &JobFilter, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut page = Page { limit, before_id: None };
    loop {
        let jobs = store.list(filter, &page).await.unwrap();
        assert!(jobs.len() <= limit);
        let ids: Vec<String> = jobs.into_iter().map(|job| job.id).collect();
        let Some(last) = ids.last().cloned() else { return pages };
        pages.push(ids);
        page.before_id = Some(last);
    }
}

fn done(id: &str, token: i64, outcome: Outcome) -> Completion {
    Completion { id: id.to_owned(), token, outcome, at: T0 + SECOND, progress: None, run: None }
}

async fn status(store: &dyn JobStore, id: &str) -> Status {
    store.get(id).await.unwrap().expect("the job exists").status
}

/// Accepting, idempotent replay, priority order and payloads on claim.
async fn accepts_and_claims_by_priority(store: Arc<dyn JobStore>) {
    let accepted = store
        .insert(vec![job("a-low", 2, None), job("a-high", 0, Some("key-1")), job("a-normal", 1, None)])
        .await
        .unwrap();
    assert!(accepted.iter().all(|accepted| accepted.created));
    let replay = store.insert(vec![job("a-other", 1, Some("key-1"))]).await.unwrap();
    assert_eq!((replay[0].id.as_str(), replay[0].created), ("a-high", false), "a replay returns the first job");
    assert!(!replay[0].key_reused, "the same request again is a replay");
    assert!(store.get("a-other").await.unwrap().is_none(), "a replay stores nothing new");
    let reuse = store
        .insert(vec![NewJob { fingerprint: Some("another request".into()), ..job("a-reuse", 1, Some("key-1")) }])
        .await
        .unwrap();
    assert_eq!((reuse[0].id.as_str(), reuse[0].created, reuse[0].key_reused), ("a-high", false, true));
    assert!(store.get("a-reuse").await.unwrap().is_none(), "a reused key stores nothing new");
    assert_eq!(store.depth().await.unwrap(), Depth { queued: 3, running: 0 });

    let claimed = store.claim(&ClaimRequest::new(2, "g1", T0 + 10 * SECOND, T0)).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|job| job.id.as_str()).collect();
    assert_eq!(ids, ["a-high", "a-normal"], "most urgent first");
    assert_eq!(&claimed[0].payload[..], b"{\"job\":\"a-high\"}");
    assert_eq!(claimed[0].attempt, 1);
    assert_eq!(status(&*store, "a-high").await, Status::Running);
    assert_eq!(store.depth().await.unwrap(), Depth { queued: 1, running: 2 });

    let excluded =
        store.claim(&ClaimRequest::new(10, "g1", T0 + 10 * SECOND, T0).excluding(&["echo".to_owned()])).await.unwrap();
    assert!(excluded.is_empty(), "a kind at its cap is not claimed");

    let high = &claimed[0];
    let ok = store.complete(vec![done(&high.id, high.token, Outcome::Succeeded(Bytes::from_static(b"{\"ok\":1}")))]);
    assert_eq!(ok.await.unwrap(), [true]);
    let record = store.get("a-high").await.unwrap().unwrap();
    assert_eq!(record.tenant.as_deref(), Some("acme"), "the tenant is stored with the job");
    assert_eq!(record.status, Status::Succeeded);
    assert_eq!(record.result.as_deref(), Some(&b"{\"ok\":1}"[..]));
    assert_eq!(record.view().result.map(|raw| raw.get().to_owned()).as_deref(), Some("{\"ok\":1}"));
}

/// Several jobs read at once: those that exist, with their state and result; unknown ids are skipped.
async fn reads_many_jobs_at_once(store: Arc<dyn JobStore>) {
    store.insert(vec![job("m-1", 1, None), job("m-2", 1, None), job("m-3", 1, None)]).await.unwrap();
    let claimed = store.claim(&ClaimRequest::new(1, "g1", T0 + 10 * SECOND, T0)).await.unwrap();
    let first = &claimed[0];
    let ok = store.complete(vec![done(&first.id, first.token, Outcome::Succeeded(Bytes::from_static(b"{\"n\":1}")))]);
    assert_eq!(ok.await.unwrap(), [true]);

    let ids = [first.id.clone(), "m-3".to_owned(), "nobody".to_owned()];
    let mut found = store.get_many(&ids).await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    let seen: Vec<_> = found.iter().map(|record| (record.id.as_str(), record.status)).collect();
    let mut expected = vec![(first.id.as_str(), Status::Succeeded), ("m-3", Status::Queued)];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(seen, expected, "an unknown id is skipped");
    let done_one = found.iter().find(|record| record.id == first.id).unwrap();
    assert_eq!(done_one.result.as_deref(), Some(&b"{\"n\":1}"[..]), "results come along");
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

/// A completion with a stale token changes nothing; failures retry, then end dead.
async fn fences_completions_and_retries(store: Arc<dyn JobStore>) {
    store.insert(vec![job("b", 1, None)]).await.unwrap();
    let first = store.claim(&ClaimRequest::new(1, "g1", T0 + 10 * SECOND, T0)).await.unwrap().remove(0);
    let stale = done("b", first.token.wrapping_add(1), Outcome::Succeeded(Bytes::from_static(b"1")));
    assert_eq!(store.complete(vec![stale]).await.unwrap(), [false], "a stale token is refused");
    assert_eq!(status(&*store, "b").await, Status::Running);

    let retry = Outcome::Failed { error: "boom 1".into(), retry_at: Some(T0 + 5 * SECOND) };
    assert_eq!(store.complete(vec![done("b", first.token, retry)]).await.unwrap(), [true]);
    assert_eq!(status(&*store, "b").await, Status::Queued);
    assert!(
        store.claim(&ClaimRequest::new(1, "g1", T0 + 10 * SECOND, T0 + SECOND)).await.unwrap().is_empty(),
        "not before its time"
    );

    let second = store.claim(&ClaimRequest::new(1, "g1", T0 + 20 * SECOND, T0 + 5 * SECOND)).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.token, first.token, "every attempt has its own token");
    let late = done("b", first.token, Outcome::Succeeded(Bytes::from_static(b"1")));
    assert_eq!(store.complete(vec![late]).await.unwrap(), [false], "the first attempt's answer comes too late");
    let last = Outcome::Failed { error: "boom 2".into(), retry_at: None };
    assert_eq!(store.complete(vec![done("b", second.token, last)]).await.unwrap(), [true]);
    let record = store.get("b").await.unwrap().unwrap();
    assert_eq!((record.status, record.attempt, record.error.as_deref()), (Status::Dead, 2, Some("boom 2")));
    assert!(record.finished_at.is_some());
}

/// A failure no retry can fix ends the job `failed` at once.
async fn refused_jobs_fail_without_retry(store: Arc<dyn JobStore>) {
    store.insert(vec![job("r", 1, None)]).await.unwrap();
    let claimed = store.claim(&ClaimRequest::new(1, "g1", T0 + 10 * SECOND, T0)).await.unwrap().remove(0);
    let refused = Outcome::Refused("unknown kind".into());
    assert_eq!(store.complete(vec![done("r", claimed.token, refused)]).await.unwrap(), [true]);
    let record = store.get("r").await.unwrap().unwrap();
    assert_eq!((record.status, record.error.as_deref()), (Status::Failed, Some("unknown kind")));
}

/// A job that never started goes back without using an attempt.
async fn not_started_keeps_the_attempt(store: Arc<dyn JobStore>) {
    store.insert(vec![job("c", 1, None)]).await.unwrap();
    let claimed = store.claim(&ClaimRequest::new(1, "g1", T0 + 10 * SECOND, T0)).await.unwrap().remove(0);
    let back = Outcome::NotStarted { retry_at: T0 };
    assert_eq!(store.complete(vec![done("c", claimed.token, back)]).await.unwrap(), [true]);
    let again = store.claim(&ClaimRequest::new(1, "g1", T0 + 10 * SECOND, T0)).await.unwrap().remove(0);
    assert_eq!(again.attempt, 1, "the attempt that never started is not counted");
}

/// Renewing leases reports cancellations; expired leases are rescued, using up an attempt.
async fn leases_cancel_and_rescue(store: Arc<dyn JobStore>) {
    store.insert(vec![job("d1", 1, None), job("d2", 1, None), job("d3", 1, None)]).await.unwrap();
    let claimed = store.claim(&ClaimRequest::new(3, "g1", T0 + 10 * SECOND, T0)).await.unwrap();
    let leases: Vec<_> = claimed.iter().map(|job| Lease { id: job.id.clone(), token: job.token }).collect();

    assert_eq!(store.cancel("d1", T0).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(store.cancel("nope", T0).await.unwrap(), CancelOutcome::NotFound);
    let renewal = store.renew("g1", leases.clone(), T0 + 20 * SECOND).await.unwrap();
    assert_eq!(renewal.cancel, ["d1"], "the owner learns of the cancellation when it renews");
    assert!(renewal.lost.is_empty());
    let stranger = store.renew("g2", leases.clone(), T0 + 90 * SECOND).await.unwrap();
    assert_eq!(stranger.lost.len(), 3, "only the owner renews a lease");
    assert_eq!(store.complete(vec![done("d1", claimed[0].token, Outcome::Cancelled)]).await.unwrap(), [true]);
    assert_eq!(status(&*store, "d1").await, Status::Cancelled);
    assert_eq!(store.cancel("d1", T0).await.unwrap(), CancelOutcome::AlreadyFinished);

    assert_eq!(store.rescue(T0 + 15 * SECOND).await.unwrap(), 0, "renewed leases hold");
    assert_eq!(store.rescue(T0 + 21 * SECOND).await.unwrap(), 2, "expired leases are rescued");
    let record = store.get("d2").await.unwrap().unwrap();
    assert_eq!((record.status, record.attempt), (Status::Queued, 1));
    let retried = store.claim(&ClaimRequest::new(2, "g2", T0 + 40 * SECOND, T0 + 21 * SECOND)).await.unwrap();
    assert!(retried.iter().all(|job| job.attempt == 2));
    assert_eq!(store.rescue(T0 + 41 * SECOND).await.unwrap(), 2);
    let record = store.get("d2").await.unwrap().unwrap();
    assert_eq!(record.status, Status::Dead, "a job that keeps losing its gateway ends dead, not looping");
    let stale = done("d3", retried[1].token, Outcome::Succeeded(Bytes::from_static(b"1")));
    assert_eq!(store.complete(vec![stale]).await.unwrap(), [false], "a rescued attempt's answer is stale");
}

/// A restarting gateway takes back what it held; a queued job cancelled never starts; old
/// finished jobs are pruned.
async fn recovers_cancels_and_prunes(store: Arc<dyn JobStore>) {
    store.insert(vec![job("e1", 1, None), job("e2", 1, None), job("e3", 1, None)]).await.unwrap();
    assert_eq!(store.cancel("e3", T0).await.unwrap(), CancelOutcome::Cancelled);
    let claimed = store.claim(&ClaimRequest::new(10, "g1", T0 + 10 * SECOND, T0)).await.unwrap();
    assert_eq!(claimed.len(), 2, "a cancelled job is never claimed");
    assert_eq!(store.recover("g1", T0 + SECOND).await.unwrap(), 2);
    assert_eq!(status(&*store, "e1").await, Status::Queued);

    let again = store.claim(&ClaimRequest::new(10, "g1", T0 + 10 * SECOND, T0 + SECOND)).await.unwrap();
    let finish = again.iter().map(|job| done(&job.id, job.token, Outcome::Succeeded(Bytes::from_static(b"2"))));
    store.complete(finish.collect()).await.unwrap();
    assert_eq!(store.purge(&ended_before(T0 + 1)).await.unwrap(), 1, "only jobs that ended before the cut");
    assert_eq!(store.purge(&ended_before(T0 + 2 * SECOND)).await.unwrap(), 2);
    assert!(store.get("e1").await.unwrap().is_none());
}

/// Many concurrent writers: every job accepted once, every claim distinct.
async fn concurrent_claims_never_overlap(store: Arc<dyn JobStore>) {
    let mut inserts = Vec::new();
    for batch in 0..20 {
        let store = Arc::clone(&store);
        inserts.push(tokio::spawn(async move {
            let jobs = (0..50).map(|n| job(&format!("f{batch}-{n}"), 1, Some(&format!("f{batch}-{n}")))).collect();
            store.insert(jobs).await.unwrap()
        }));
    }
    for insert in inserts {
        insert.await.unwrap();
    }
    let mut claims = Vec::new();
    for gateway in 0..8 {
        let store = Arc::clone(&store);
        claims.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got =
                    store.claim(&ClaimRequest::new(16, &format!("g{gateway}"), T0 + 10 * SECOND, T0)).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|job| job.id));
            }
        }));
    }
    let mut all = Vec::new();
    for claim in claims {
        all.extend(claim.await.unwrap());
    }
    let count = all.len();
    all.sort();
    all.dedup();
    assert_eq!((count, all.len()), (1000, 1000), "each job claimed exactly once");
}

/// A job claimed as it is accepted is stored as its first attempt, running under that lease:
/// no claim returns it, its owner renews and completes it, and it is rescued like any other.
async fn a_job_claimed_at_acceptance_runs_under_its_lease(store: Arc<dyn JobStore>) {
    let claim = ClaimAtAccept { owner: "g1".into(), lease_until: T0 + 10 * SECOND, token: 77 };
    let direct = [
        NewJob { claim: Some(claim.clone()), ..job("f1", 1, None) },
        NewJob { claim: Some(claim.clone()), ..job("f2", 1, Some("key-f")) },
    ];
    assert_eq!(direct[0].claimed(&claim).attempt, 1);
    let accepted = store.insert(direct.to_vec()).await.unwrap();
    assert!(accepted.iter().all(|accepted| accepted.created));
    assert_eq!(store.depth().await.unwrap(), Depth { queued: 0, running: 2 });
    let record = store.get("f1").await.unwrap().unwrap();
    assert_eq!((record.status, record.attempt, record.started_at), (Status::Running, 1, Some(T0)));
    assert!(
        store.claim(&ClaimRequest::new(10, "g2", T0 + 10 * SECOND, T0)).await.unwrap().is_empty(),
        "nobody claims it again"
    );
    let replay =
        store.insert(vec![NewJob { claim: Some(claim.clone()), ..job("f3", 1, Some("key-f")) }]).await.unwrap();
    assert_eq!((replay[0].id.as_str(), replay[0].created), ("f2", false), "a replay is still the first job");
    assert!(store.get("f3").await.unwrap().is_none());

    let leases = vec![Lease { id: "f1".into(), token: 77 }, Lease { id: "f2".into(), token: 77 }];
    let renewal = store.renew("g1", leases, T0 + 20 * SECOND).await.unwrap();
    assert!(renewal.lost.is_empty() && renewal.cancel.is_empty(), "its owner renews it");
    let wrong = done("f1", 78, Outcome::Succeeded(Bytes::from_static(b"1")));
    assert_eq!(store.complete(vec![wrong]).await.unwrap(), [false], "fenced by its token");
    let right = done("f1", 77, Outcome::Succeeded(Bytes::from_static(b"2")));
    assert_eq!(store.complete(vec![right]).await.unwrap(), [true]);
    assert_eq!(status(&*store, "f1").await, Status::Succeeded);
    assert_eq!(store.rescue(T0 + 21 * SECOND).await.unwrap(), 1, "an expired lease is rescued");
    let record = store.get("f2").await.unwrap().unwrap();
    assert_eq!((record.status, record.attempt), (Status::Queued, 1));
}

/// Inserts sent at once, as many requests do (PostgreSQL gathers them into one statement), each
/// get their own answers; one key sent by several of them makes one job.
async fn concurrent_inserts_each_get_their_own_answers(store: Arc<dyn JobStore>) {
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let jobs = vec![
                    job(&format!("g{n}-a"), 1, None),
                    job(&format!("g{n}-b"), 1, Some("shared")),
                    job(&format!("g{n}-c"), 0, None),
                ];
                store.insert(jobs).await.unwrap()
            })
        })
        .collect();
    let mut shared = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        let accepted = task.await.unwrap();
        assert_eq!(accepted.len(), 3);
        assert_eq!((accepted[0].id.clone(), accepted[0].created), (format!("g{n}-a"), true));
        assert_eq!((accepted[2].id.clone(), accepted[2].created), (format!("g{n}-c"), true));
        shared.push(accepted[1].clone());
    }
    let created: Vec<_> = shared.iter().filter(|accepted| accepted.created).collect();
    assert_eq!(created.len(), 1, "one key, one job");
    assert!(shared.iter().all(|accepted| accepted.id == created[0].id && !accepted.key_reused));
    assert_eq!(store.depth().await.unwrap(), Depth { queued: 81, running: 0 });
}

/// A scheduled job waits for its time; a job not started by its `start_by` expires and never
/// runs; the store says when the next of either comes.
async fn schedules_wait_and_deadlines_expire(store: Arc<dyn JobStore>) {
    assert_eq!(store.next_due(T0).await.unwrap(), NextDue::default(), "nothing queued, nothing to wake for");
    store
        .insert(vec![
            job("s-now", 1, None),
            NewJob { run_after: T0 + 10 * SECOND, ..job("s-later", 0, None) },
            NewJob { start_by: Some(T0 + SECOND), ..job("s-expiring", 0, None) },
            NewJob { run_after: T0 + 20 * SECOND, start_by: Some(T0 + 30 * SECOND), ..job("s-window", 2, None) },
        ])
        .await
        .unwrap();
    let next = store.next_due(T0).await.unwrap();
    assert_eq!(next, NextDue { run: Some(T0 + 10 * SECOND), expiry: Some(T0 + SECOND) });
    let record = store.get("s-later").await.unwrap().unwrap();
    assert_eq!((record.status, record.run_after), (Status::Queued, T0 + 10 * SECOND));
    assert_eq!(record.view().run_at, rampart_jobstore::model::rfc3339(T0 + 10 * SECOND));

    let claimed = store.claim(&ClaimRequest::new(10, "g1", T0 + 60 * SECOND, T0 + 2 * SECOND)).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|job| job.id.as_str()).collect();
    assert_eq!(ids, ["s-now"], "neither a job not yet due nor one past its start_by is claimed");
    assert_eq!(store.expire(T0 + 2 * SECOND).await.unwrap(), ["s-expiring"]);
    let record = store.get("s-expiring").await.unwrap().unwrap();
    assert_eq!((record.status, record.attempt, record.error.as_deref()), (Status::Expired, 0, Some(EXPIRED_ERROR)));
    assert_eq!(record.finished_at, Some(T0 + 2 * SECOND));
    assert!(store.expire(T0 + 3 * SECOND).await.unwrap().is_empty(), "expired once");
    let next = store.next_due(T0 + 2 * SECOND).await.unwrap();
    assert_eq!(next, NextDue { run: Some(T0 + 10 * SECOND), expiry: Some(T0 + 30 * SECOND) });

    let later = store.claim(&ClaimRequest::new(10, "g1", T0 + 60 * SECOND, T0 + 10 * SECOND)).await.unwrap();
    assert_eq!(later.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(), ["s-later"], "due at its time");
    let window = store.claim(&ClaimRequest::new(10, "g1", T0 + 60 * SECOND, T0 + 25 * SECOND)).await.unwrap();
    assert_eq!(window.len(), 1, "due and not yet past its start_by: it runs");
    assert_eq!(store.next_due(T0 + 25 * SECOND).await.unwrap(), NextDue::default());
}

/// Listings go newest first, page by page, each job once, whatever is added meanwhile; every
/// filter narrows them.
async fn lists_jobs_page_by_page_with_filters(store: Arc<dyn JobStore>) {
    let jobs: Vec<NewJob> = (0..25)
        .map(|n| NewJob {
            kind: if n % 5 == 0 { "sleep".into() } else { "echo".into() },
            tenant: if n % 2 == 0 { "even" } else { "odd" }.into(),
            created_at: T0 + n * SECOND,
            ..job(&format!("l-{n:02}"), 1, None)
        })
        .collect();
    store.insert(jobs).await.unwrap();
    let everything = JobFilter::default();
    let pages = all_pages(&*store, &everything, 10).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let ids: Vec<String> = pages.concat();
    let expected: Vec<String> = (0..25).rev().map(|n| format!("l-{n:02}")).collect();
    assert_eq!(ids, expected, "newest first, each once");

    // Jobs added while paging come before the first page, never inside it.
    let first = store.list(&everything, &Page { limit: 10, before_id: None }).await.unwrap();
    store.insert(vec![job("l-99", 1, None)]).await.unwrap();
    let second = store.list(&everything, &Page { limit: 10, before_id: Some(first[9].id.clone()) }).await.unwrap();
    assert_eq!(second[0].id, "l-14");

    let sleep = JobFilter { kind: Some("sleep".into()), ..JobFilter::default() };
    assert_eq!(all_pages(&*store, &sleep, 2).await.concat(), ["l-20", "l-15", "l-10", "l-05", "l-00"]);
    let odd_recent =
        JobFilter { tenant: Some("odd".into()), created_after: Some(T0 + 18 * SECOND), ..JobFilter::default() };
    assert_eq!(all_pages(&*store, &odd_recent, 10).await.concat(), ["l-23", "l-21", "l-19"]);
    let claimed = store.claim(&ClaimRequest::new(3, "g1", T0 + 60 * SECOND, T0)).await.unwrap();
    let running: Vec<String> = all_pages(&*store, &only(&[Status::Running]), 10).await.concat();
    let mut claimed_ids: Vec<String> = claimed.into_iter().map(|job| job.id).collect();
    claimed_ids.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(running, claimed_ids);
    let one = JobFilter { id: Some("l-07".into()), ..JobFilter::default() };
    let found = store.list(&one, &Page { limit: 10, before_id: None }).await.unwrap();
    assert_eq!((found.len(), found[0].tenant.as_deref(), found[0].created_at), (1, Some("odd"), T0 + 7 * SECOND));
}

/// Counts by status and kind, and how long the oldest due job has waited.
async fn counts_jobs_by_status_and_kind(store: Arc<dyn JobStore>) {
    let everything = JobFilter::default();
    assert_eq!(store.stats(&everything, T0).await.unwrap().counts, []);
    store
        .insert(vec![
            job("c-1", 1, None),
            NewJob { kind: "sleep".into(), run_after: T0 + 5 * SECOND, ..job("c-2", 2, None) },
            job("c-3", 0, None),
        ])
        .await
        .unwrap();
    let claimed = store.claim(&ClaimRequest::new(1, "g1", T0 + 60 * SECOND, T0 + SECOND)).await.unwrap();
    assert_eq!(claimed[0].id, "c-3");
    let stats = store.stats(&everything, T0 + 2 * SECOND).await.unwrap();
    assert_eq!(
        stats.counts,
        [
            (Status::Queued, "echo".to_owned(), 1),
            (Status::Queued, "sleep".to_owned(), 1),
            (Status::Running, "echo".to_owned(), 1)
        ]
    );
    assert_eq!(stats.oldest_due, Some(T0), "c-1, due since T0; c-2 is not due yet");
    let sleep = JobFilter { kind: Some("sleep".into()), ..JobFilter::default() };
    let stats = store.stats(&sleep, T0 + 2 * SECOND).await.unwrap();
    assert_eq!((stats.counts, stats.oldest_due), (vec![(Status::Queued, "sleep".to_owned(), 1)], None));
    let stats = store.stats(&sleep, T0 + 6 * SECOND).await.unwrap();
    assert_eq!(stats.oldest_due, Some(T0 + 5 * SECOND));
}

/// A job that ended without succeeding can be run again, with all its attempts; any other
/// cannot, and bulk retries stop at their limit.
async fn retries_jobs_that_ended_unsuccessfully(store: Arc<dyn JobStore>) {
    let ids = ["t-dead", "t-failed", "t-cancelled", "t-ok", "t-queued"];
    store.insert(ids.iter().map(|id| NewJob { max_attempts: 1, ..job(id, 1, None) }).collect()).await.unwrap();
    assert_eq!(store.cancel("t-cancelled", T0).await.unwrap(), CancelOutcome::Cancelled);
    let claimed = store.claim(&ClaimRequest::new(3, "g1", T0 + 60 * SECOND, T0)).await.unwrap();
    let token = |id: &str| claimed.iter().find(|job| job.id == id).unwrap().token;
    store
        .complete(vec![
            done("t-dead", token("t-dead"), Outcome::Failed { error: "boom".into(), retry_at: None }),
            done("t-failed", token("t-failed"), Outcome::Refused("bad payload".into())),
            done("t-ok", token("t-ok"), Outcome::Succeeded(Bytes::from_static(b"1"))),
        ])
        .await
        .unwrap();
    store.insert(vec![NewJob { start_by: Some(T0), ..job("t-late", 1, None) }]).await.unwrap();
    assert_eq!(store.expire(T0 + 1).await.unwrap(), ["t-late"]);

    let one = JobFilter { id: Some("t-ok".into()), ..JobFilter::default() };
    assert!(store.retry(&one, 10, T0 + SECOND).await.unwrap().is_empty(), "a succeeded job is not retried");
    let one = JobFilter { id: Some("t-queued".into()), ..JobFilter::default() };
    assert!(store.retry(&one, 10, T0 + SECOND).await.unwrap().is_empty(), "nor a queued one");
    let two = store.retry(&JobFilter::default(), 2, T0 + SECOND).await.unwrap();
    assert_eq!(two.len(), 2, "a bulk retry stops at its limit");
    let mut rest = store.retry(&JobFilter::default(), 10, T0 + SECOND).await.unwrap();
    rest.extend(two);
    rest.sort_unstable();
    assert_eq!(rest, ["t-cancelled", "t-dead", "t-failed", "t-late"]);

    let record = store.get("t-dead").await.unwrap().unwrap();
    assert_eq!((record.status, record.attempt, record.error, record.finished_at), (Status::Queued, 0, None, None));
    let record = store.get("t-late").await.unwrap().unwrap();
    assert_eq!((record.status, record.start_by), (Status::Queued, None), "its old deadline would expire it again");
    let again = store.claim(&ClaimRequest::new(10, "g1", T0 + 60 * SECOND, T0 + SECOND)).await.unwrap();
    assert_eq!(again.len(), 5, "the four retried and the one still queued");
    assert!(again.iter().all(|job| job.attempt == 1), "a retried job has all its attempts again");
}

/// Purging deletes ended jobs the filter matches, with their payloads and results, and never a
/// queued or running job.
async fn purges_only_ended_jobs(store: Arc<dyn JobStore>) {
    store.insert(vec![job("p-1", 1, None), job("p-2", 1, None), job("p-3", 1, None)]).await.unwrap();
    let claimed = store.claim(&ClaimRequest::new(2, "g1", T0 + 60 * SECOND, T0)).await.unwrap();
    let dead = |job: &rampart_jobstore::model::Claimed| {
        done(&job.id, job.token, Outcome::Failed { error: "boom".into(), retry_at: None })
    };
    store.complete(vec![dead(&claimed[0])]).await.unwrap();
    assert_eq!(store.purge(&only(&[Status::Queued, Status::Running])).await.unwrap(), 0, "never a live job");
    assert_eq!(store.purge(&only(&[Status::Succeeded])).await.unwrap(), 0);
    assert_eq!(store.purge(&JobFilter { statuses: vec![Status::Dead], ..ended_before(T0) }).await.unwrap(), 0);
    let dead_before = JobFilter { statuses: vec![Status::Dead], ..ended_before(T0 + 2 * SECOND) };
    assert_eq!(store.purge(&dead_before).await.unwrap(), 1);
    assert!(store.get(&claimed[0].id).await.unwrap().is_none());
    assert_eq!(store.depth().await.unwrap(), Depth { queued: 1, running: 1 });
}

/// Each cron entry's last enqueued tick is kept, the later of two winning.
async fn remembers_the_last_tick_of_each_cron_entry(store: Arc<dyn JobStore>) {
    assert!(store.cron_runs().await.unwrap().is_empty());
    store.cron_ran("nightly", T0 + 2 * SECOND).await.unwrap();
    store.cron_ran("nightly", T0 + SECOND).await.unwrap();
    store.cron_ran("hourly", T0).await.unwrap();
    let runs = store.cron_runs().await.unwrap();
    assert_eq!(
        runs,
        [("hourly".to_owned(), T0), ("nightly".to_owned(), T0 + 2 * SECOND)],
        "a late writer never moves it back"
    );
}

fn unique(id: &str, key: &str, states: &[Status], since: Option<i64>) -> NewJob {
    NewJob { unique: Some(Unique { key: key.into(), since, states: states.to_vec() }), ..job(id, 1, None) }
}

/// A unique job is accepted once while a job holding its key is in one of the states that
/// count (and recent enough, with a period), however many ask for it at once.
async fn unique_jobs_are_accepted_once(store: Arc<dyn JobStore>) {
    let live = [Status::Queued, Status::Running];
    let first = store.insert(vec![unique("u-1", "report", &live, None)]).await.unwrap();
    assert_eq!(first[0], rampart_jobstore::model::Accepted::created("u-1".into(), false));
    let again = store.insert(vec![unique("u-2", "report", &live, None), job("u-plain", 1, None)]).await.unwrap();
    assert_eq!((again[0].id.as_str(), again[0].created, again[0].unique_conflict), ("u-1", false, true));
    assert!(again[1].created, "a plain job beside it is accepted");
    assert!(store.get("u-2").await.unwrap().is_none(), "a refused duplicate stores nothing");

    // Once its holder ended, the key is free for a new job.
    let claimed = store.claim(&ClaimRequest::new(10, "g1", T0 + 60 * SECOND, T0)).await.unwrap();
    let holder = claimed.iter().find(|job| job.id == "u-1").unwrap();
    store.complete(vec![done("u-1", holder.token, Outcome::Succeeded(Bytes::from_static(b"1")))]).await.unwrap();
    let counted = [Status::Queued, Status::Running, Status::Succeeded];
    let blocked = store.insert(vec![unique("u-3", "report", &counted, None)]).await.unwrap();
    assert!(blocked[0].unique_conflict, "succeeded counts when the states say so");
    let recent_only = store.insert(vec![unique("u-4", "report", &counted, Some(T0 + 1))]).await.unwrap();
    assert!(recent_only[0].created, "a holder accepted before the period does not count");
    let after = store.insert(vec![unique("u-5", "report", &live, None)]).await.unwrap();
    assert_eq!((after[0].id.as_str(), after[0].unique_conflict), ("u-4", true), "the key now names the newest holder");

    // Fifty at once, each from its own writer: one job.
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.insert(vec![unique(&format!("race-{n}"), "race", &live, None)]).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut holders = std::collections::HashSet::new();
    for task in tasks {
        let accepted = task.await.unwrap().unwrap().remove(0);
        holders.insert(accepted.id.clone());
        if accepted.created {
            winners.push(accepted.id);
        } else {
            assert!(accepted.unique_conflict);
        }
    }
    assert_eq!(winners.len(), 1, "one job for the key");
    assert_eq!(holders.len(), 1, "every other answer names it");
}

/// The trace context of the request that accepted a job comes back with every claim of it.
async fn claims_carry_the_accepting_requests_trace(store: Arc<dyn JobStore>) {
    let traceparent = "00-5af92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01";
    store
        .insert(vec![NewJob { traceparent: Some(traceparent.into()), ..job("tp-1", 0, None) }, job("tp-2", 1, None)])
        .await
        .unwrap();
    let claimed = store.claim(&ClaimRequest::new(2, "g1", T0 + 60 * SECOND, T0)).await.unwrap();
    let traces: Vec<Option<&str>> = claimed.iter().map(|job| job.traceparent.as_deref()).collect();
    assert_eq!(traces, [Some(traceparent), None]);
}

fn of_tenant(id: &str, tenant: &str, kind: &str, priority: i16) -> NewJob {
    NewJob { tenant: tenant.into(), kind: kind.into(), ..job(id, priority, None) }
}

fn tenants_of(claimed: &[rampart_jobstore::model::Claimed]) -> Vec<&str> {
    claimed.iter().map(|job| job.tenant.as_str()).collect()
}

/// Claims take turns over the tenants with due jobs, each tenant's most urgent first, starting
/// after the tenant served last: a long queue delays another tenant's job by one claim at most.
async fn tenants_take_turns(store: Arc<dyn JobStore>) {
    let mut jobs: Vec<NewJob> = (0..50).map(|n| of_tenant(&format!("ta-{n:02}"), "a", "echo", 1)).collect();
    jobs.push(of_tenant("tb-low", "b", "echo", 2));
    jobs.push(of_tenant("tb-high", "b", "echo", 0));
    jobs.push(of_tenant("tc-1", "c", "echo", 1));
    store.insert(jobs).await.unwrap();
    let lease = T0 + 60 * SECOND;
    let first = store.claim(&ClaimRequest::new(5, "g1", lease, T0)).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|job| job.id.as_str()).collect();
    assert_eq!(ids, ["ta-00", "tb-high", "tc-1", "ta-01", "tb-low"], "round by round, each tenant's most urgent first");
    // Only a's jobs are left; the round after c starts over at a.
    let after = store.claim(&ClaimRequest::new(1, "g1", lease, T0).after_tenant(Some("c"))).await.unwrap();
    assert_eq!(tenants_of(&after), ["a"]);
    store.insert(vec![of_tenant("tb-late", "b", "echo", 2)]).await.unwrap();
    let next = store.claim(&ClaimRequest::new(1, "g1", lease, T0).after_tenant(Some("a"))).await.unwrap();
    assert_eq!(next[0].id, "tb-late", "a tenant with one job waits one claim, not behind 47 others");
    let rest = store.claim(&ClaimRequest::new(100, "g1", lease, T0)).await.unwrap();
    assert_eq!(rest.len(), 47, "a lone tenant takes every slot");
}

/// Kind and tenant limits count the running jobs of every gateway on the store.
async fn store_wide_limits_hold_across_claimers(store: Arc<dyn JobStore>) {
    let mut jobs = Vec::new();
    for n in 0..6 {
        jobs.push(of_tenant(&format!("as-{n}"), "a", "slow", 1));
        jobs.push(of_tenant(&format!("at-{n}"), "a", "fast", 1));
        jobs.push(of_tenant(&format!("fa-b{n}"), "b", "fast", 1));
    }
    store.insert(jobs).await.unwrap();
    let limits = Arc::new(RunningLimits { kinds: [("slow".to_owned(), 2)].into(), tenant: Some(4) });
    let claim = |owner: &str| ClaimRequest::new(100, owner, T0 + 60 * SECOND, T0).with_limits(Arc::clone(&limits));
    let first = store.claim(&claim("g1")).await.unwrap();
    let second = store.claim(&claim("g2")).await.unwrap();
    let all: Vec<_> = first.iter().chain(&second).collect();
    let count = |test: &dyn Fn(&&rampart_jobstore::model::Claimed) -> bool| all.iter().filter(|job| test(job)).count();
    assert_eq!(count(&|job| job.kind == "slow"), 2, "two slow jobs at most, on both claimers together");
    assert_eq!((count(&|job| job.tenant == "a"), count(&|job| job.tenant == "b")), (4, 4), "four per tenant");
    assert!(second.is_empty(), "the second claimer finds every limit reached: {second:?}");
    let slow = first.iter().find(|job| job.kind == "slow").unwrap();
    let finished = done(&slow.id, slow.token, Outcome::Succeeded(Bytes::from_static(b"1")));
    store.complete(vec![finished]).await.unwrap();
    let third = store.claim(&claim("g2")).await.unwrap();
    assert_eq!(tenants_of(&third), ["a"], "one of a's jobs ended, so a has room for one more");
}

/// A paused kind or tenant starts nothing (not even at acceptance) until it is resumed.
async fn paused_kinds_and_tenants_start_nothing(store: Arc<dyn JobStore>) {
    assert!(store.pause(PauseScope::Kind, "report", T0).await.unwrap());
    assert!(!store.pause(PauseScope::Kind, "report", T0 + 1).await.unwrap(), "paused already");
    assert!(store.pause(PauseScope::Tenant, "b", T0 + 2).await.unwrap());
    let pauses = store.pauses().await.unwrap();
    let named: Vec<(PauseScope, &str, i64)> = pauses.iter().map(|p| (p.scope, p.name.as_str(), p.since)).collect();
    assert_eq!(named, [(PauseScope::Kind, "report", T0), (PauseScope::Tenant, "b", T0 + 2)]);
    let claim = ClaimAtAccept { owner: "g1".into(), lease_until: T0 + 10 * SECOND, token: 5 };
    let accepted = store
        .insert(vec![
            of_tenant("p-report", "a", "report", 1),
            of_tenant("p-b", "b", "echo", 1),
            NewJob { claim: Some(claim.clone()), ..of_tenant("p-direct", "a", "report", 1) },
            NewJob { claim: Some(claim), ..of_tenant("p-runs", "a", "echo", 1) },
            of_tenant("p-a", "a", "echo", 1),
        ])
        .await
        .unwrap();
    let started: Vec<bool> = accepted.iter().map(|accepted| accepted.started).collect();
    assert_eq!(started, [false, false, false, true, false], "only the unpaused job claimed at acceptance starts");
    assert_eq!(status(&*store, "p-direct").await, Status::Queued);
    let claimed = store.claim(&ClaimRequest::new(10, "g1", T0 + 60 * SECOND, T0)).await.unwrap();
    assert_eq!(claimed.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(), ["p-a"]);
    assert!(store.resume(PauseScope::Kind, "report").await.unwrap());
    assert!(!store.resume(PauseScope::Kind, "report").await.unwrap(), "not paused any more");
    let claimed = store.claim(&ClaimRequest::new(10, "g1", T0 + 60 * SECOND, T0)).await.unwrap();
    let mut ids: Vec<&str> = claimed.iter().map(|job| job.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["p-direct", "p-report"], "the kind resumed; tenant b still paused");
    store.resume(PauseScope::Tenant, "b").await.unwrap();
    let claimed = store.claim(&ClaimRequest::new(10, "g1", T0 + 60 * SECOND, T0)).await.unwrap();
    assert_eq!(claimed.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(), ["p-b"]);
    assert!(store.pauses().await.unwrap().is_empty());
}

/// A running attempt's progress is kept, fenced by its token, and its last report is stored with
/// its end.
async fn keeps_the_progress_of_the_running_attempt(store: Arc<dyn JobStore>) {
    use rampart_jobstore::model::JobProgress;
    store.insert(vec![job("pr-1", 1, None)]).await.unwrap();
    let claimed = store.claim(&ClaimRequest::new(1, "g1", T0 + 60 * SECOND, T0)).await.unwrap().remove(0);
    let report =
        |seq: u32| JobProgress { fraction: f64::from(seq) / 4.0, message: format!("step {seq}"), attempt: 1, seq };
    assert!(store.progress("pr-1", claimed.token, &report(1)).await.unwrap());
    assert!(!store.progress("pr-1", claimed.token + 1, &report(2)).await.unwrap(), "fenced by the token");
    assert_eq!(store.get("pr-1").await.unwrap().unwrap().progress, Some(report(1)));
    let mut finished = done("pr-1", claimed.token, Outcome::Succeeded(Bytes::from_static(b"1")));
    finished.progress = Some(report(4));
    assert_eq!(store.complete(vec![finished]).await.unwrap(), [true]);
    assert!(!store.progress("pr-1", claimed.token, &report(3)).await.unwrap(), "an ended job's progress stays");
    let record = store.get("pr-1").await.unwrap().unwrap();
    assert_eq!((record.status, record.progress), (Status::Succeeded, Some(report(4))));
    let listed = store.list(&JobFilter::default(), &Page { limit: 10, before_id: None }).await.unwrap();
    assert_eq!(listed[0].progress, Some(report(4)), "listings show it too");
}

/// A job's detail: payload, key, trace, the worker and start of its last attempt, and every
/// attempt that failed; purging the job removes its attempts too.
async fn keeps_each_attempts_worker_times_and_error(store: Arc<dyn JobStore>) {
    use rampart_jobstore::model::AttemptRun;
    let traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    store.insert(vec![NewJob { traceparent: Some(traced.into()), ..job("at-1", 1, Some("order-7")) }]).await.unwrap();
    let first = store.claim(&ClaimRequest::new(1, "g1", T0 + 60 * SECOND, T0)).await.unwrap().remove(0);
    let run = |attempt, worker: &str, started| Some(AttemptRun { attempt, worker: Some(worker.into()), started });
    let retry = Outcome::Failed { error: "boom".into(), retry_at: Some(T0) };
    let failed = Completion { run: run(1, "http://w1:50051", T0 + 1), ..done("at-1", first.token, retry) };
    assert_eq!(store.complete(vec![failed]).await.unwrap(), [true]);
    let second = store.claim(&ClaimRequest::new(1, "g1", T0 + 60 * SECOND, T0 + 2)).await.unwrap().remove(0);
    let ok = Outcome::Succeeded(Bytes::from_static(b"{\"ok\":true}"));
    let succeeded = Completion { run: run(2, "http://w2:50051", T0 + 3), ..done("at-1", second.token, ok) };
    assert_eq!(store.complete(vec![succeeded]).await.unwrap(), [true]);

    let detail = store.detail("at-1").await.unwrap().expect("the job exists");
    assert_eq!(&detail.payload[..], b"{\"job\":\"at-1\"}");
    assert_eq!(detail.idempotency_key.as_deref(), Some("order-7"));
    assert_eq!(detail.traceparent.as_deref(), Some(traced));
    assert_eq!((detail.worker.as_deref(), detail.attempt_started_at), (Some("http://w2:50051"), Some(T0 + 3)));
    assert_eq!((detail.record.status, detail.record.attempt), (Status::Succeeded, 2));
    assert_eq!(detail.failed_attempts.len(), 1, "{:?}", detail.failed_attempts);
    let attempt = &detail.failed_attempts[0];
    assert_eq!((attempt.attempt, attempt.worker.as_deref()), (1, Some("http://w1:50051")));
    assert_eq!((attempt.started_at, attempt.finished_at), (T0 + 1, T0 + SECOND));
    assert_eq!((attempt.status, attempt.error.as_deref()), (Status::Queued, Some("boom")));
    assert!(store.detail("no-such-job").await.unwrap().is_none());

    store.purge(&ended_before(T0 + 10 * SECOND)).await.unwrap();
    assert!(store.detail("at-1").await.unwrap().is_none());
    store.insert(vec![job("at-1", 1, None)]).await.unwrap();
    assert!(store.detail("at-1").await.unwrap().unwrap().failed_attempts.is_empty(), "the attempts went with it");
}

/// Listings find jobs by the start of their id or key, and by when they were accepted.
async fn finds_jobs_by_id_or_key_prefix_and_time(store: Arc<dyn JobStore>) {
    store
        .insert(vec![
            NewJob { created_at: T0, ..job("0190-aaaa-1", 1, Some("invoice-17")) },
            NewJob { created_at: T0 + SECOND, ..job("0190-aaab-2", 1, Some("invoice-18")) },
            NewJob { created_at: T0 + 2 * SECOND, ..job("0191-cccc-3", 1, Some("refund-1")) },
        ])
        .await
        .unwrap();
    let ids = |filter: JobFilter| {
        let store = Arc::clone(&store);
        async move { all_pages(&*store, &filter, 10).await.concat() }
    };
    let text = |text: &str| JobFilter { text: Some(text.into()), ..JobFilter::default() };
    assert_eq!(ids(text("0190-aaa")).await, ["0190-aaab-2", "0190-aaaa-1"], "by the start of the id");
    assert_eq!(ids(text("0191-cccc-3")).await, ["0191-cccc-3"], "a whole id");
    assert_eq!(ids(text("invoice-1")).await, ["0190-aaab-2", "0190-aaaa-1"], "by the start of the key");
    assert_eq!(ids(text("refund-1")).await, ["0191-cccc-3"]);
    assert!(ids(text("aaaa")).await.is_empty(), "the start only");
    assert!(ids(text("invoice-19")).await.is_empty());
    let window = JobFilter { created_after: Some(T0), created_before: Some(T0 + 2 * SECOND), ..JobFilter::default() };
    assert_eq!(ids(window).await, ["0190-aaab-2"], "accepted in the window");
}

fn member(id: &str, started_at: i64, last_seen: i64) -> Member {
    Member { id: id.into(), address: format!("{id}.local:8080"), started_at, last_seen }
}

/// Members are kept by their heartbeats, oldest first, and forgotten once they stop beating or
/// leave.
async fn members_are_kept_by_their_heartbeats(store: Arc<dyn JobStore>) {
    let within = Duration::from_secs(5);
    let members = store.heartbeat(&member("g1", T0, T0), 0, within).await.unwrap();
    assert_eq!(members, [member("g1", T0, T0)]);
    store.heartbeat(&member("g2", T0 + 1, T0 + 1), 0, within).await.unwrap();
    let members = store.heartbeat(&member("g1", T0, T0 + 5 * SECOND), 0, within).await.unwrap();
    assert_eq!(members, [member("g1", T0, T0 + 5 * SECOND), member("g2", T0 + 1, T0 + 1)], "refreshed in place");
    let members = store.heartbeat(&member("g1", T0, T0 + 10 * SECOND), T0 + 2 * SECOND, within).await.unwrap();
    assert_eq!(members, [member("g1", T0, T0 + 10 * SECOND)], "g2 stopped beating and was forgotten");
    store.heartbeat(&member("g3", T0 + 11 * SECOND, T0 + 11 * SECOND), 0, within).await.unwrap();
    store.leave("g3").await.unwrap();
    let members = store.heartbeat(&member("g1", T0, T0 + 12 * SECOND), 0, within).await.unwrap();
    assert_eq!(members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["g1"], "g3 left");
}

macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
                    super::$name(super::store::open(&url).await.unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let server = super::Postgres::start();
                    super::$name(super::store::open(&server.url).await.unwrap()).await;
                }
            )*
        }
    };
}

store_tests!(
    accepts_and_claims_by_priority,
    reads_many_jobs_at_once,
    fences_completions_and_retries,
    refused_jobs_fail_without_retry,
    not_started_keeps_the_attempt,
    leases_cancel_and_rescue,
    recovers_cancels_and_prunes,
    concurrent_claims_never_overlap,
    a_job_claimed_at_acceptance_runs_under_its_lease,
    concurrent_inserts_each_get_their_own_answers,
    schedules_wait_and_deadlines_expire,
    lists_jobs_page_by_page_with_filters,
    counts_jobs_by_status_and_kind,
    retries_jobs_that_ended_unsuccessfully,
    purges_only_ended_jobs,
    remembers_the_last_tick_of_each_cron_entry,
    unique_jobs_are_accepted_once,
    claims_carry_the_accepting_requests_trace,
    tenants_take_turns,
    store_wide_limits_hold_across_claimers,
    paused_kinds_and_tenants_start_nothing,
    keeps_the_progress_of_the_running_attempt,
    keeps_each_attempts_worker_times_and_error,
    finds_jobs_by_id_or_key_prefix_and_time,
    members_are_kept_by_their_heartbeats,
);

#[tokio::test]
async fn on_postgres_gateways_hear_each_others_signals() {
    let server = Postgres::start();
    let (first, second) = (store::open(&server.url).await.unwrap(), store::open(&server.url).await.unwrap());
    let mut listener = second.listen().await.unwrap().expect("PostgreSQL carries signals");
    first.signal("g1", &Signal::Queued).await.unwrap();
    let ids: Vec<String> = (0..500).map(|n| format!("0190c2a4-7d1e-7000-8000-{n:012}")).collect();
    first.signal("g1", &Signal::Changed(ids.clone())).await.unwrap();
    let next = async |listener: &mut Box<dyn rampart_jobstore::cluster::SignalListener>| {
        tokio::time::timeout(Duration::from_secs(5), listener.next()).await.expect("heard in time").unwrap()
    };
    assert_eq!(next(&mut listener).await, Some(Heard { from: "g1".into(), signal: Signal::Queued }));
    let mut heard = Vec::new();
    while heard.len() < ids.len() {
        match next(&mut listener).await {
            Some(Heard { signal: Signal::Changed(part), .. }) => heard.extend(part),
            other => panic!("expected changed jobs, heard {other:?}"),
        }
    }
    assert_eq!(heard, ids, "every id, split over notifications, in order");
}

#[tokio::test]
async fn on_sqlite_there_is_nobody_to_signal() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&format!("sqlite://{}", dir.path().join("jobs.db").display())).await.unwrap();
    store.signal("g1", &Signal::Queued).await.unwrap();
    assert!(store.listen().await.unwrap().is_none());
}

#[tokio::test]
async fn an_unknown_store_scheme_is_refused_clearly() {
    let error = store::open("mysql://db/jobs").await.err().expect("refused");
    assert!(error.to_string().contains("sqlite://PATH or postgres://"), "{error}");
}

#[tokio::test]
async fn one_sqlite_file_serves_one_gateway_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let first = store::open(&url).await.unwrap();
    let error = store::open(&url).await.err().expect("a second opener is refused").to_string();
    assert!(error.contains("another gateway is using"), "{error}");
    drop(first);
    store::open(&url).await.expect("free again once the first closes");
}

#[tokio::test]
async fn on_postgres_a_restarting_gateway_takes_back_only_its_own_jobs() {
    let server = Postgres::start();
    let store = store::open(&server.url).await.unwrap();
    store.insert(vec![job("h1", 1, None), job("h2", 1, None)]).await.unwrap();
    store.claim(&ClaimRequest::new(1, "g1", T0 + 10 * SECOND, T0)).await.unwrap();
    store.claim(&ClaimRequest::new(1, "g2", T0 + 10 * SECOND, T0)).await.unwrap();
    assert_eq!(store.recover("g1", T0 + SECOND).await.unwrap(), 1, "only the owner's jobs");
    assert_eq!(store.depth().await.unwrap(), Depth { queued: 1, running: 1 });
}
