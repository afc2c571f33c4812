//! The job platform through a real gateway and real workers: scheduled jobs fire on time, jobs
//! past their start deadline expire without running, listings page through every job once while
//! jobs are added, and ended jobs are retried in bulk and purged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rampart_jobs::durable::model::{now_micros, parse_rfc3339, rfc3339};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::{
    collections::HashSet,
    time::{Duration, Instant},
};
use support::{expect_problem, jobs::Setup, wait_until};

fn micros_of(time: &Value) -> i64 {
    parse_rfc3339(time.as_str().unwrap_or_else(|| panic!("not a time: {time}"))).unwrap()
}

/// The `q`-quantile of sorted samples.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test]
async fn a_delayed_job_starts_on_time() {
    let setup = Setup::start(1).await;
    // Twenty jobs a second apart from each other's acceptance, each due one second after it.
    let mut submitted = Vec::new();
    for _ in 0..20 {
        let sent = Instant::now();
        let response = setup.submit(&json!({"kind": "echo", "payload": 1, "delay": "1s"}), "", None).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "queued");
        assert_eq!(micros_of(&job["run_at"]) - micros_of(&job["created_at"]), 1_000_000, "{job}");
        submitted.push((sent, job["id"].as_str().unwrap().to_owned()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut late_ms = Vec::new();
    for (sent, id) in &submitted {
        wait_until("a delayed job to succeed", Duration::from_secs(5), async || {
            setup.job(id).await["status"] == "succeeded"
        })
        .await;
        let job = setup.job(id).await;
        let started = micros_of(&job["started_at"]) - micros_of(&job["created_at"]);
        assert!((1_000_000..=1_050_000).contains(&started), "started {started} µs after acceptance: {job}");
        assert!(sent.elapsed() >= Duration::from_secs(1));
        #[allow(clippy::cast_precision_loss)]
        late_ms.push((started - 1_000_000) as f64 / 1000.0);
    }
    late_ms.sort_by(f64::total_cmp);
    println!(
        "firing lateness of 20 delayed jobs: p50 {:.2} ms, p99 {:.2} ms",
        quantile(&late_ms, 0.5),
        quantile(&late_ms, 0.99)
    );
}

#[tokio::test]
async fn a_job_not_started_by_its_deadline_expires_and_never_runs() {
    // One slot: a long job holds it while the next waits past its deadline.
    let setup = Setup::start_with(1, "worker_slots = 1\n").await;
    let long = setup.submit(&json!({"kind": "sleep", "payload": {"ms": 1500}}), "", None).await;
    assert_eq!(long.status(), StatusCode::ACCEPTED);
    let long: Value = long.json().await.unwrap();
    wait_until("the long job to run", Duration::from_secs(5), async || {
        setup.job(long["id"].as_str().unwrap()).await["status"] == "running"
    })
    .await;
    let accepted = Instant::now();
    let late = setup.submit(&json!({"kind": "echo", "start_within": "300ms"}), "", None).await;
    let late: Value = late.json().await.unwrap();
    let id = late["id"].as_str().unwrap().to_owned();
    assert_eq!(micros_of(&late["start_by"]) - micros_of(&late["created_at"]), 300_000);
    let events = setup.http.get(format!("{}/api/jobs/{id}/events", setup.base)).send().await.unwrap();
    let events = events.text();
    wait_until("the job to expire", Duration::from_secs(5), async || setup.job(&id).await["status"] == "expired").await;
    let expired = setup.job(&id).await;
    let took = accepted.elapsed();
    assert!(took < Duration::from_millis(1200), "it expired at its deadline, not when the slot freed: {took:?}");
    assert_eq!(expired["attempts"], 0);
    assert!(expired["started_at"].is_null(), "{expired}");
    assert!(expired["error"].as_str().unwrap().contains("start_by"), "{expired}");
    assert!(micros_of(&expired["finished_at"]) >= micros_of(&expired["start_by"]));
    let events = tokio::time::timeout(Duration::from_secs(5), events).await.unwrap().unwrap();
    assert!(events.contains("event: queued") && events.contains("event: expired"), "{events}");

    // The slot frees; the expired job still never runs.
    let long = setup.submit(&json!({"kind": "echo"}), "?wait=5s", None).await;
    assert_eq!(long.status(), StatusCode::OK, "the slot is free again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = setup.job(&id).await;
    assert_eq!((still["status"].as_str(), still["attempts"].as_i64()), (Some("expired"), Some(0)));
    assert_eq!(setup.counter("rampart_jobs_expired_total ").await, 1);
}

#[tokio::test]
async fn a_unique_job_submitted_a_hundred_times_at_once_exists_once() {
    let setup = Setup::start(1).await;
    let body = json!({"kind": "sleep", "payload": {"ms": 1000}, "unique": {}});
    let answers = futures_util::future::join_all((0..100).map(|_| setup.submit(&body, "", None))).await;
    let mut created = Vec::new();
    let mut holders = HashSet::new();
    for answer in answers {
        let conflict = answer.headers().get("unique-conflict").is_some();
        let status = answer.status();
        let job: Value = answer.json().await.unwrap();
        holders.insert(job["id"].as_str().unwrap().to_owned());
        if conflict {
            assert_eq!(status, StatusCode::OK, "a duplicate answers with the job that holds the key");
        } else {
            assert_eq!(status, StatusCode::ACCEPTED);
            created.push(job);
        }
    }
    assert_eq!((created.len(), holders.len()), (1, 1), "one job, named by every answer");
    let stats = setup.get_json("/api/jobs/stats?kind=sleep").await;
    let total: i64 = stats["by_status"].as_object().unwrap().values().map(|count| count.as_i64().unwrap()).sum();
    assert_eq!(total, 1, "{stats}");
    // Once it ended, the same job may be queued again.
    let id = created[0]["id"].as_str().unwrap();
    wait_until("the unique job to end", Duration::from_secs(10), async || setup.job(id).await["status"] == "succeeded")
        .await;
    let again = setup.submit(&body, "", None).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert!(again.headers().get("unique-conflict").is_none());
    let batch = json!({"jobs": [body]});
    let refused = setup.http.post(format!("{}/api/batch", setup.base)).json(&batch).send().await.unwrap();
    expect_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
}

#[tokio::test]
async fn listing_pages_through_every_job_once_while_jobs_are_added() {
    let setup = Setup::start(1).await;
    // Scheduled an hour out, so they stay queued while listed.
    let batch = json!({"jobs": vec![json!({"kind": "echo", "delay": "1h"}); 10_000]});
    let started = Instant::now();
    for _ in 0..10 {
        let response = setup.http.post(format!("{}/api/batch?wait=1ms", setup.base)).json(&batch).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // The answer's lines are not needed: the jobs are accepted once the answer starts.
        drop(response);
    }
    println!("100,000 jobs accepted in {:?}", started.elapsed());
    let stats: Value = setup.get_json("/api/jobs/stats").await;
    assert_eq!(stats["by_status"]["queued"], 100_000, "{stats}");
    assert_eq!(stats["by_kind"]["echo"]["queued"], 100_000, "{stats}");
    assert!(stats["oldest_queued_age_seconds"].is_null(), "none is due yet: {stats}");

    // Jobs keep arriving while the listing pages through.
    let adding = {
        let (http, base) = (setup.http.clone(), setup.base.clone());
        tokio::spawn(async move {
            let mut added = 0;
            while added < 200 {
                let body = json!({"kind": "echo", "delay": "1h"});
                let response = http.post(format!("{base}/api/jobs")).json(&body).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::ACCEPTED);
                added += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut previous_last: Option<String> = None;
    let mut cursor: Option<String> = None;
    let listing_started = Instant::now();
    let mut slowest = Duration::ZERO;
    loop {
        let mut url = format!("{}/api/jobs?status=queued&kind=echo&limit=1000", setup.base);
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let asked = Instant::now();
        let response = setup.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        slowest = slowest.max(asked.elapsed());
        let jobs = page["jobs"].as_array().unwrap();
        for job in jobs {
            let id = job["id"].as_str().unwrap().to_owned();
            if let Some(last) = &previous_last {
                assert!(id < *last, "newest first: {id} after {last}");
            }
            previous_last = Some(id.clone());
            assert!(seen.insert(id), "a job listed twice");
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    adding.await.unwrap();
    println!("listed in {pages} pages of 1000 in {:?}, slowest page {slowest:?}", listing_started.elapsed());
    // Every job accepted before the listing began is there once; the ones added meanwhile are
    // newer than the first page and so are not.
    assert_eq!(seen.len(), 100_000);
    let all: Value = setup.get_json("/api/jobs/stats").await;
    assert_eq!(all["by_status"]["queued"], 100_200);

    let bad = setup.http.get(format!("{}/api/jobs?status=zombie", setup.base)).send().await.unwrap();
    expect_problem(bad, StatusCode::BAD_REQUEST, "invalid_request").await;
    let bad = setup.http.get(format!("{}/api/jobs?limit=100000", setup.base)).send().await.unwrap();
    expect_problem(bad, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn dead_jobs_are_retried_in_bulk_and_purged() {
    let setup = Setup::start(2).await;
    let fail = json!({"kind": "fail", "payload": {"rate": 1.0}, "max_attempts": 1});
    let batch = json!({"jobs": vec![fail; 1000]});
    let lines = setup.http.post(format!("{}/api/batch?wait=60s", setup.base)).json(&batch).send().await.unwrap();
    let lines = lines.text().await.unwrap();
    assert_eq!(lines.lines().filter(|line| line.contains("\"status\":\"dead\"")).count(), 1000);
    let dead_attempts = "rampart_job_attempts_total{kind=\"fail\",outcome=\"dead\"} ";
    assert_eq!(setup.counter(dead_attempts).await, 1000);

    let ok = setup.submit(&json!({"kind": "echo"}), "?wait=5s", None).await;
    let ok: Value = ok.json().await.unwrap();
    let not_retryable =
        setup.http.post(format!("{}/api/jobs/{}/retry", setup.base, ok["id"].as_str().unwrap())).send().await.unwrap();
    let problem = expect_problem(not_retryable, StatusCode::CONFLICT, "job_not_retryable").await;
    assert_eq!(problem["job_status"], "succeeded");
    let missing = setup.http.post(format!("{}/api/jobs/nope/retry", setup.base)).send().await.unwrap();
    expect_problem(missing, StatusCode::NOT_FOUND, "job_not_found").await;
    let wrong = setup.http.post(format!("{}/api/jobs/retry?status=succeeded", setup.base)).send().await.unwrap();
    expect_problem(wrong, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;

    let first = setup.http.post(format!("{}/api/jobs/retry?status=dead&kind=fail&limit=600", setup.base));
    let first: Value = first.send().await.unwrap().json().await.unwrap();
    assert_eq!(first, json!({"retried": 600, "more": true}));
    let rest = setup.http.post(format!("{}/api/jobs/retry?status=dead&kind=fail", setup.base));
    let rest: Value = rest.send().await.unwrap().json().await.unwrap();
    assert_eq!(rest["retried"].as_u64().unwrap() + 600, 1000, "{rest}");
    // Each ran once more, with its attempts counted afresh, and died again.
    wait_until("the retried jobs to die again", Duration::from_secs(30), async || {
        setup.counter(dead_attempts).await == 2000
    })
    .await;
    let stats: Value = setup.get_json("/api/jobs/stats").await;
    assert_eq!(stats["by_kind"]["fail"], json!({"dead": 1000}), "{stats}");
    let page: Value = setup.get_json("/api/jobs?status=dead&limit=1").await;
    assert_eq!(page["jobs"][0]["attempts"], 1, "{page}");

    let one = page["jobs"][0]["id"].as_str().unwrap().to_owned();
    let again = setup.http.post(format!("{}/api/jobs/{one}/retry", setup.base)).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!((again["status"].as_str(), again["attempts"].as_i64()), (Some("queued"), Some(0)));
    wait_until("the job retried alone to die again", Duration::from_secs(10), async || {
        setup.job(&one).await["status"] == "dead"
    })
    .await;

    // Purge: a cut is required, live jobs are never purged, dead ones before the cut are.
    let no_cut = setup.http.delete(format!("{}/api/jobs?status=dead", setup.base)).send().await.unwrap();
    expect_problem(no_cut, StatusCode::BAD_REQUEST, "invalid_request").await;
    let live = setup.http.delete(format!("{}/api/jobs?status=queued&before=2100-01-01T00:00:00Z", setup.base));
    expect_problem(live.send().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    let cut = rfc3339(now_micros() + 1);
    let purged = setup.http.delete(format!("{}/api/jobs?status=dead&before={cut}", setup.base)).send().await.unwrap();
    let purged: Value = purged.json().await.unwrap();
    assert_eq!(purged, json!({"deleted": 1000}));
    let gone = setup.http.get(format!("{}/api/jobs/{one}", setup.base)).send().await.unwrap();
    expect_problem(gone, StatusCode::NOT_FOUND, "job_not_found").await;
    let stats: Value = setup.get_json("/api/jobs/stats").await;
    assert_eq!(stats["by_status"]["dead"], 0, "{stats}");
    assert_eq!(stats["by_status"]["succeeded"], 1, "{stats}");
}

#[tokio::test]
async fn progress_reports_arrive_in_order_on_the_event_stream() {
    let setup = Setup::start(1).await;
    let body = json!({"kind": "sleep", "payload": {"ms": 1200, "steps": 6}});
    let job: Value = setup.submit(&body, "", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let events = setup.http.get(format!("{}/api/jobs/{id}/events", setup.base)).send().await.unwrap();
    let events = tokio::spawn(events.text());
    wait_until("a progress report to be stored", Duration::from_secs(5), async || {
        setup.job(&id).await["progress"]["fraction"].as_f64().is_some_and(|fraction| fraction > 0.0)
    })
    .await;
    let running = setup.job(&id).await;
    assert_eq!(running["status"], "running", "{running}");
    let events = tokio::time::timeout(Duration::from_secs(10), events).await.unwrap().unwrap().unwrap();
    // Each SSE message as (event, data).
    let messages: Vec<(String, Value)> = events
        .split("\n\n")
        .filter_map(|message| {
            let name = message.lines().find_map(|line| line.strip_prefix("event: "))?;
            let data = message.lines().find_map(|line| line.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect();
    let names: Vec<&str> = messages.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.last(), Some(&"succeeded"), "{events}");
    let reports: Vec<(f64, String)> = messages
        .iter()
        .filter(|(name, _)| name == "progress")
        .map(|(_, data)| {
            (data["progress"]["fraction"].as_f64().unwrap(), data["progress"]["message"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: Vec<(f64, String)> =
        (1..=6).map(|step| (f64::from(step) / 6.0, format!("step {step} of 6"))).collect();
    assert_eq!(reports, expected, "every report, in order: {events}");
    let first_progress = names.iter().position(|name| *name == "progress").unwrap();
    assert!(names[..first_progress].contains(&"running"), "running comes first: {names:?}");
    let ended = setup.job(&id).await;
    assert_eq!(ended["progress"], json!({"fraction": 1.0, "message": "step 6 of 6"}), "the last report stays");
}
