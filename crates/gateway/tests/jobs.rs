//! Durable jobs through a real gateway and real workers: idempotent acceptance, waiting,
//! cancellation reaching the worker, retries ending dead, ordered SSE events and batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rampart_testkit::spawn_gateway;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{config_file, expect_problem, io_busy, jobs::Setup, wait_until};

#[tokio::test]
async fn a_job_is_accepted_once_and_its_result_awaited() {
    let setup = Setup::start(1).await;
    let body = json!({"kind": "sleep", "payload": {"ms": 200}});
    let first = setup.submit(&body, "", Some("order-42")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "queued");
    assert_eq!(location, format!("/api/jobs/{}", first["id"].as_str().unwrap()));

    let replay = setup.submit(&body, "?wait=5s", Some("order-42")).await;
    assert_eq!(replay.status(), StatusCode::OK, "the first job's result, awaited");
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"], "a replay returns the same job");
    assert_eq!(replay["status"], "succeeded");
    assert_eq!(replay["result"], json!({"slept_ms": 200}));
    assert_eq!(replay["attempts"], 1);
    // The same key for another request is refused, naming the job the key belongs to.
    let reuse = setup.submit(&json!({"kind": "sleep", "payload": {"ms": 1}}), "", Some("order-42")).await;
    let problem = expect_problem(reuse, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    assert_eq!(problem["job_id"], first["id"]);

    let quick = setup.submit(&json!({"kind": "echo", "payload": [1, 2]}), "?wait=5s", None).await;
    assert_eq!(quick.status(), StatusCode::OK);
    assert_eq!(quick.json::<Value>().await.unwrap()["result"], json!([1, 2]));
    let slow = setup.submit(&json!({"kind": "sleep", "payload": {"ms": 2000}}), "?wait=100ms", None).await;
    assert_eq!(slow.status(), StatusCode::ACCEPTED, "not finished within the wait");
}

#[tokio::test]
async fn bad_requests_get_precise_problems() {
    let setup = Setup::start(1).await;
    let url = format!("{}/api/jobs", setup.base);
    let response = setup.http.post(&url).header("content-type", "application/json").body("{").send().await.unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = setup.submit(&json!({"kind": "echo", "max_attempts": 0}), "", None).await;
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    let response = setup.submit(&json!({"kind": "echo"}), "?wait=10h", None).await;
    let problem = expect_problem(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(problem["detail"].as_str().unwrap().contains("over the limit"), "{problem}");
    let response = setup.submit(&json!({"kind": "echo"}), "", Some(&"k".repeat(300))).await;
    expect_problem(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = setup.http.get(format!("{url}/no-such-job")).send().await.unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "job_not_found").await;
    let response = setup.http.delete(format!("{url}/no-such-job")).send().await.unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "job_not_found").await;
    let response = setup.http.get(format!("{url}/no-such-job/events")).send().await.unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "job_not_found").await;
    let batch = setup.http.post(format!("{}/api/batch", setup.base)).json(&json!({"jobs": []})).send().await.unwrap();
    expect_problem(batch, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    let batch = setup
        .http
        .post(format!("{}/api/batch", setup.base))
        .json(&json!({"jobs": [{"kind": "echo"}, {"kind": ""}]}))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(batch, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(problem["index"], 1, "the bad job is named: {problem}");
    // Still serving.
    let ok = setup.submit(&json!({"kind": "echo", "payload": 1}), "?wait=5s", None).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_on_the_worker() {
    let setup = Setup::start(1).await;
    let queued: Value =
        setup.submit(&json!({"kind": "sleep", "payload": {"ms": 60000}}), "", None).await.json().await.unwrap();
    let id = queued["id"].as_str().unwrap();
    let worker = &setup.workers[0];
    wait_until("the job to run on the worker", Duration::from_secs(10), async || io_busy(worker).await == 1).await;

    let started = Instant::now();
    let response = setup.http.delete(format!("{}/api/jobs/{id}", setup.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    wait_until("the worker to stop the job", Duration::from_secs(2), async || io_busy(worker).await == 0).await;
    assert!(started.elapsed() < Duration::from_secs(3), "cancellation reached the job at once");

    let again = setup.http.delete(format!("{}/api/jobs/{id}", setup.base)).send().await.unwrap();
    let problem = expect_problem(again, StatusCode::CONFLICT, "job_finished").await;
    assert_eq!(problem["job_status"], "cancelled");
}

#[tokio::test]
async fn a_failing_job_is_retried_then_dead_with_its_last_error() {
    let setup = Setup::start(2).await;
    let body = json!({"kind": "fail", "payload": {"rate": 1.0}, "max_attempts": 3});
    let response = setup.submit(&body, "?wait=10s", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let dead: Value = response.json().await.unwrap();
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["attempts"], 3);
    assert!(dead["error"].as_str().unwrap().contains("on purpose"), "{dead}");
    assert!(dead.get("result").is_none());

    // The gateway knows what its workers run: a kind none runs is refused at the door.
    let unknown = setup.submit(&json!({"kind": "no-such-kind"}), "?wait=10s", None).await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unknown: Value = unknown.json().await.unwrap();
    assert!(unknown["detail"].as_str().unwrap().contains("no worker runs job kind"), "{unknown}");
}

#[tokio::test]
async fn sse_events_arrive_in_order_until_the_job_ends() {
    let setup = Setup::start(1).await;
    let body = json!({"kind": "fail", "payload": {"rate": 1.0}, "max_attempts": 3});
    let job: Value = setup.submit(&body, "", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let response = setup.http.get(format!("{}/api/jobs/{id}/events", setup.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(10), response.text()).await.expect("the stream ends").unwrap();

    let mut events = Vec::new();
    for message in text.split("\n\n").filter(|message| message.contains("data:")) {
        let field = |name: &str| {
            message.lines().find_map(|line| line.strip_prefix(name)).map(|value| value.trim().to_owned()).unwrap()
        };
        let data: Value = serde_json::from_str(&field("data:")).unwrap();
        assert_eq!(field("event:"), data["status"].as_str().unwrap());
        events.push((field("id:").parse::<i64>().unwrap(), data));
    }
    assert!(events.windows(2).all(|pair| pair[0].0 < pair[1].0), "ranks only grow: {events:?}");
    let statuses: Vec<_> = events.iter().map(|(_, data)| data["status"].as_str().unwrap().to_owned()).collect();
    let (_, last) = events.last().unwrap();
    assert_eq!((last["status"].as_str(), last["attempts"].as_i64()), (Some("dead"), Some(3)), "{statuses:?}");
    // Whatever the stream started from, every later attempt shows up: running, then back to
    // the queue with its error, up to the end.
    let third = events.iter().position(|(_, data)| data["status"] == "running" && data["attempts"] == 3);
    assert!(third.is_some(), "{statuses:?}");
    let retried = events.iter().find(|(_, data)| data["status"] == "queued" && data["attempts"] == 2).unwrap();
    assert!(retried.1["error"].as_str().unwrap().contains("on purpose"));
}

#[tokio::test]
async fn a_batch_fans_out_and_streams_results_as_they_finish() {
    let setup = Setup::start(2).await;
    let jobs = json!({"jobs": [
        {"kind": "sleep", "payload": {"ms": 800}},
        {"kind": "echo", "payload": "fast"},
        {"kind": "sleep", "payload": {"ms": 30000}},
        {"kind": "fail", "payload": {"rate": 1.0}, "max_attempts": 1},
    ]});
    let response = setup.http.post(format!("{}/api/batch?wait=2s", setup.base)).json(&jobs).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{text}");
    let order: Vec<_> = lines.iter().map(|line| line["index"].as_u64().unwrap()).collect();
    assert_eq!(order[3], 2, "the unfinished job comes last: {text}");
    assert_eq!(order[2], 0, "the slow sleep ends after the quick ones: {text}");
    assert_eq!(lines[2]["result"], json!({"slept_ms": 800}));
    let by_index = |index: u64| lines.iter().find(|line| line["index"] == index).unwrap();
    assert_eq!(by_index(1)["result"], "fast");
    assert_eq!(by_index(3)["status"], "dead");
    assert_eq!(by_index(2)["status"], "running");
    // The unfinished job carries on and can be followed.
    let id = by_index(2)["id"].as_str().unwrap().to_owned();
    assert_eq!(setup.job(&id).await["status"], "running");
}

#[tokio::test]
async fn the_most_urgent_waiting_job_runs_first() {
    // One slot: jobs wait their turn behind a blocker.
    let setup = Setup::start_with(1, "worker_slots = 1\n").await;
    let blocker: Value =
        setup.submit(&json!({"kind": "sleep", "payload": {"ms": 500}}), "", None).await.json().await.unwrap();
    wait_until("the blocker to run", Duration::from_secs(10), async || io_busy(&setup.workers[0]).await == 1).await;
    let mut ids = Vec::new();
    for priority in ["low", "normal", "high"] {
        let body = json!({"kind": "sleep", "payload": {"ms": 20}, "priority": priority});
        let job: Value = setup.submit(&body, "", None).await.json().await.unwrap();
        ids.push((priority, job["id"].as_str().unwrap().to_owned()));
    }
    // Last in line: low priority and the newest.
    let response = setup.submit(&json!({"kind": "echo", "priority": "low"}), "?wait=10s", None).await;
    assert_eq!(response.status(), StatusCode::OK, "the queue drained");
    let mut started = Vec::new();
    for (priority, id) in &ids {
        let job = setup.job(id).await;
        assert_eq!(job["status"], "succeeded");
        started.push((job["started_at"].as_str().unwrap().to_owned(), *priority));
    }
    started.sort();
    let order: Vec<_> = started.iter().map(|(_, priority)| *priority).collect();
    assert_eq!(order, ["high", "normal", "low"]);
    assert_eq!(setup.job(blocker["id"].as_str().unwrap()).await["status"], "succeeded");
}

#[tokio::test]
async fn a_kind_limit_caps_its_jobs_in_flight_across_workers() {
    let setup = Setup::start_with(2, "[jobs.kind_limits]\nsleep = 2\n").await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let job: Value =
            setup.submit(&json!({"kind": "sleep", "payload": {"ms": 300}}), "", None).await.json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let echo = setup.submit(&json!({"kind": "echo", "payload": 7}), "?wait=5s", None).await;
    assert_eq!(echo.status(), StatusCode::OK, "other kinds are not held back by the limit");
    let started = Instant::now();
    let mut most = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let busy = io_busy(&setup.workers[0]).await + io_busy(&setup.workers[1]).await;
        most = most.max(busy);
        let mut done = 0;
        for id in &ids {
            done += usize::from(setup.job(id).await["status"] == "succeeded");
        }
        if done == ids.len() {
            break;
        }
    }
    assert_eq!(most, 2, "at most two sleeps at once, and the limit was reached");
    assert!(started.elapsed() >= Duration::from_millis(500), "six 300 ms jobs two at a time take three rounds");
}

#[tokio::test]
async fn a_worker_without_dispatch_runs_durable_and_immediate_jobs_through_execute() {
    // Workers from before `Dispatch` answer it UNIMPLEMENTED; their jobs go a call each.
    let worker = support::peers::ScriptedWorker::start(
        "old",
        support::peers::Behaviour::Echo { delay: Duration::from_millis(1) },
    )
    .await;
    let config = config_file("[jobs]\nbackoff_base = \"50ms\"\n");
    let gateway =
        spawn_gateway(std::slice::from_ref(&worker.url), &["--config", config.path().to_str().unwrap()]).await;
    let base = format!("http://{}", gateway.listen_addr());
    let http = Client::new();
    for n in 0..3 {
        let body = json!({"kind": "echo", "payload": {"n": n}});
        let answer = http.post(format!("{base}/api/jobs?wait=5s")).json(&body).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let job: Value = answer.json().await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["result"], json!({"n": n}));
        assert_eq!(job["attempts"], 1, "falling back is not a failed attempt: {job}");
    }
    assert_eq!(worker.calls(), 3, "each job was one Execute call");
    for n in 0..3 {
        let body = json!({"kind": "echo", "payload": {"n": n}});
        let answer: Value =
            http.post(format!("{base}/api/process")).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["result"], json!({"n": n}), "{answer}");
    }
    assert_eq!(worker.calls(), 6, "a job run now falls back alike");
}

#[tokio::test]
async fn a_job_with_a_free_slot_starts_at_acceptance_and_one_without_waits_its_turn() {
    const STARTED: &str = "rampart_jobs_started_at_acceptance_total";
    let setup = Setup::start_with(1, "worker_slots = 1\n").await;
    // Until its first claim, a gateway does not know the queue is empty.
    let first = setup.submit(&json!({"kind": "echo", "payload": 0}), "?wait=5s", None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let before = setup.counter(STARTED).await;
    let quick = setup.submit(&json!({"kind": "echo", "payload": 1}), "?wait=5s", None).await;
    let quick: Value = quick.json().await.unwrap();
    assert_eq!(quick["status"], "succeeded");
    assert_eq!(quick["started_at"], quick["created_at"], "claimed in the same write that accepted it: {quick}");
    assert_eq!(setup.counter(STARTED).await, before + 1);

    let blocker: Value =
        setup.submit(&json!({"kind": "sleep", "payload": {"ms": 400}}), "", None).await.json().await.unwrap();
    wait_until("the blocker to run", Duration::from_secs(10), async || io_busy(&setup.workers[0]).await == 1).await;
    assert_eq!(setup.counter(STARTED).await, before + 2);
    let waiting = setup.submit(&json!({"kind": "echo", "payload": 2}), "?wait=10s", None).await;
    let waiting: Value = waiting.json().await.unwrap();
    assert_eq!(waiting["status"], "succeeded", "claimed once the slot freed: {waiting}");
    assert_ne!(waiting["started_at"], waiting["created_at"], "it waited in the queue: {waiting}");
    assert_eq!(setup.counter(STARTED).await, before + 2, "no slot was free when it came");
    assert_eq!(setup.job(blocker["id"].as_str().unwrap()).await["status"], "succeeded");
}
