//! The console in a real browser: headless Chromium, driven over WebDriver, against a real
//! gateway and real workers. Submitted jobs change the overview's counts without a reload; a
//! failed job shows its error and attempts, and retrying it from its page makes it succeed; the
//! list filters; a kind is paused and resumed from its button. Each page is photographed into
//! `target/console-screenshots/` (and into `docs/console/` with `RAMPART_UPDATE_SCREENSHOTS=1`).
//! Forms without the anti-forgery token, or from another site, are refused; on a listener with
//! a token, a browser signs in first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rampart_testkit::browser::Browser;
use rampart_testkit::browser::{Client, Locator};
use reqwest::{StatusCode, redirect::Policy};
use serde_json::{Value, json};
use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use support::{jobs::Setup, wait_until};

const CRON: &str = r#"
[[cron]]
name = "nightly-report"
schedule = "0 2 * * *"
kind = "echo"
payload = { report = "nightly" }
"#;

/// Where screenshots go: always under `target/`, and into `docs/console/` when asked.
fn screenshot_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = vec![root.join("target/console-screenshots")];
    if std::env::var_os("RAMPART_UPDATE_SCREENSHOTS").is_some() {
        dirs.push(root.join("docs/console"));
    }
    dirs
}

async fn photograph(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    for dir in screenshot_dirs() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn text(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap_or_else(|error| panic!("{css}: {error}")).text().await.unwrap()
}

fn number(text: &str) -> u64 {
    text.replace(',', "").trim().parse().unwrap_or_else(|_| panic!("not a count: {text:?}"))
}

/// Waits until the text at `css` satisfies `condition`, reading it in the page as it is now.
async fn wait_for_text(client: &Client, css: &str, what: &str, condition: impl Fn(&str) -> bool) -> String {
    let started = std::time::Instant::now();
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
            && condition(&text)
        {
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what} at {css}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(client: &Client, css: &str) {
    client.find(Locator::Css(css)).await.unwrap_or_else(|error| panic!("{css}: {error}")).click().await.unwrap();
}

/// Waits until the browser has loaded a page whose URL contains `part`.
async fn wait_for_url(client: &Client, part: &str) {
    let started = std::time::Instant::now();
    loop {
        let url = client.current_url().await.unwrap();
        let ready = client.execute("return document.readyState;", vec![]).await.unwrap();
        if url.as_str().contains(part) && ready == "complete" {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for a page at {part}, at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn submit(setup: &Setup, body: Value) -> String {
    let response = setup.submit(&body, "", None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn status(setup: &Setup, id: &str) -> String {
    setup.job(id).await["status"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_inspects_retries_filters_and_pauses_in_a_real_browser() {
    let setup = Setup::start_with(2, CRON).await;
    let admin = format!("http://{}", rampart_testkit::admin_addr(&setup._gateway));
    for n in 0..3 {
        submit(&setup, json!({"kind": "echo", "payload": {"warm": n}})).await;
    }
    let browser = Browser::start(1280, 1500).await;
    let client = &browser.client;

    // Some traffic over two of the console's sampling intervals, for its chart.
    for wave in 0..3 {
        let jobs: Vec<Value> = (0..100).map(|n| json!({"kind": "echo", "payload": {"wave": wave, "n": n}})).collect();
        let batch = setup.http.post(format!("{}/api/batch", setup.base)).json(&json!({"jobs": jobs})).send().await;
        assert_eq!(batch.unwrap().status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(2600)).await;
    }

    // Overview: counts change as jobs run, without a reload.
    client.goto(&format!("{admin}/console")).await.unwrap();
    let before =
        number(&wait_for_text(client, "[data-live='status.succeeded']", "a count", |text| !text.is_empty()).await);
    client.execute("window.rampartLoadedOnce = true;", vec![]).await.unwrap();
    for n in 0..5 {
        submit(&setup, json!({"kind": "echo", "payload": {"n": n}})).await;
    }
    wait_for_text(client, "[data-live='status.succeeded']", "5 more succeeded", |text| {
        text.replace(',', "").trim().parse::<u64>().is_ok_and(|count| count >= before + 5)
    })
    .await;
    let same_page = client.execute("return window.rampartLoadedOnce === true;", vec![]).await.unwrap();
    assert_eq!(same_page, Value::Bool(true), "the counts changed in the page, not by loading it again");
    let updates = client.execute("return document.documentElement.getAttribute('data-live-updates');", vec![]);
    assert!(number(updates.await.unwrap().as_str().unwrap()) >= 1);
    assert!(client.find(Locator::Css("svg.chart polyline[data-series='accepted']")).await.is_ok());
    photograph(client, "overview").await;

    // A job that fails until a moment a few seconds away: both its attempts fail.
    let until = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 4000;
    let failing = submit(&setup, json!({"kind": "fail", "payload": {"until_unix_ms": until}, "max_attempts": 2})).await;
    wait_until("the job to die", Duration::from_secs(10), async || status(&setup, &failing).await == "dead").await;

    // The list, filtered to dead jobs, leads to it; its page shows the error and both attempts.
    client.goto(&format!("{admin}/console/jobs")).await.unwrap();
    client.find(Locator::Css("#f-status")).await.unwrap().select_by_value("dead").await.unwrap();
    click(client, ".filters button[type=submit]").await;
    wait_for_url(client, "status=dead").await;
    let link = client.find(Locator::Css(&format!("a[href='/console/jobs/{failing}']"))).await.unwrap();
    let rows = client.find_all(Locator::Css("table.jobs tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "only the dead job");
    link.click().await.unwrap();
    wait_for_url(client, &format!("/console/jobs/{failing}")).await;
    assert_eq!(text(client, "[data-job-status]").await, "dead");
    assert!(text(client, "[data-job-error]").await.contains("failed on purpose"));
    let attempts = client.find_all(Locator::Css("table.attempts tbody tr")).await.unwrap();
    assert_eq!(attempts.len(), 2, "both attempts are listed");
    let first = attempts[0].text().await.unwrap();
    assert!(first.contains("failed on purpose") && first.contains("http://127.0.0.1:"), "{first}");
    photograph(client, "job-dead").await;

    // Retry, confirmed on the next page; the job's page follows it to success.
    let left = u64::try_from(until)
        .unwrap()
        .saturating_sub(u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap());
    tokio::time::sleep(Duration::from_millis(left + 100)).await;
    click(client, "form[action$='/retry'] button").await;
    wait_for_url(client, "/retry").await;
    assert!(text(client, "main p").await.contains("Run job"), "a confirmation is asked");
    click(client, "form.confirm button").await;
    wait_for_url(client, &format!("/console/jobs/{failing}")).await;
    wait_for_text(client, "[data-job-status]", "the retried job to succeed", |text| text == "succeeded").await;
    assert_eq!(status(&setup, &failing).await, "succeeded");
    wait_for_text(client, "table.attempts", "the succeeded attempt", |text| text.contains("succeeded")).await;
    photograph(client, "job").await;

    // The list, filtered by kind and status with the form.
    client.goto(&format!("{admin}/console/jobs")).await.unwrap();
    client.find(Locator::Css("#f-status")).await.unwrap().select_by_value("succeeded").await.unwrap();
    client.find(Locator::Css("#f-kind")).await.unwrap().send_keys("echo").await.unwrap();
    click(client, ".filters button[type=submit]").await;
    wait_for_url(client, "kind=echo").await;
    let statuses = client.find_all(Locator::Css("table.jobs tbody .badge")).await.unwrap();
    assert!(statuses.len() >= 8, "{} rows", statuses.len());
    for badge in &statuses {
        assert_eq!(badge.text().await.unwrap(), "succeeded");
    }
    let kinds = client.find_all(Locator::Css("table.jobs tbody td:nth-child(2)")).await.unwrap();
    for kind in &kinds {
        assert_eq!(kind.text().await.unwrap(), "echo");
    }
    photograph(client, "jobs").await;

    // Workers: both healthy, with the kinds they described.
    client.goto(&format!("{admin}/console/workers")).await.unwrap();
    let endpoints = client.find_all(Locator::Css("table.endpoints tbody tr")).await.unwrap();
    assert_eq!(endpoints.len(), 2);
    for row in &endpoints {
        let row = row.text().await.unwrap();
        assert!(row.contains("healthy") && row.contains("closed") && row.contains("echo"), "{row}");
    }
    photograph(client, "workers").await;

    // Schedules and kinds: pause echo with its button; a job waits; resume, and it runs.
    client.goto(&format!("{admin}/console/schedules")).await.unwrap();
    assert!(text(client, "main").await.contains("nightly-report"));
    click(client, "button[aria-label='Pause kind echo']").await;
    wait_for_text(client, "main", "echo paused", |text| {
        text.contains("Paused since") && !text.contains("Nothing is paused")
    })
    .await;
    assert!(client.find(Locator::Css("button[aria-label='Resume kind echo']")).await.is_ok());
    let held = submit(&setup, json!({"kind": "echo", "payload": {"held": true}})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&setup, &held).await, "queued", "a paused kind starts nothing");
    photograph(client, "schedules").await;
    click(client, "button[aria-label='Resume kind echo']").await;
    wait_for_text(client, "main", "echo resumed", |text| text.contains("Nothing is paused")).await;
    wait_until("the held job to run", Duration::from_secs(10), async || status(&setup, &held).await == "succeeded")
        .await;
    assert!(client.find(Locator::Css("button[aria-label='Pause kind echo']")).await.is_ok());

    // Every page in a phone-sized window: nothing wider than the window but the tables, which
    // scroll in their own box, and a label for every field.
    client.set_window_size(390, 1400).await.unwrap();
    for path in
        ["/console", "/console/jobs", &format!("/console/jobs/{failing}"), "/console/workers", "/console/schedules"]
    {
        client.goto(&format!("{admin}{path}")).await.unwrap();
        let fits = client.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1;", vec![]);
        assert_eq!(fits.await.unwrap(), Value::Bool(true), "{path} fits a narrow window");
        let unlabelled = client.execute(
            "return Array.from(document.querySelectorAll('input:not([type=hidden]), select'))\
                 .filter(field => !document.querySelector('label[for=\"' + field.id + '\"]')).length;",
            vec![],
        );
        assert_eq!(unlabelled.await.unwrap(), json!(0), "every field of {path} has a label");
    }
    client.goto(&format!("{admin}/console/jobs")).await.unwrap();
    photograph(client, "jobs-narrow").await;

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_token_or_from_another_site_are_refused() {
    let setup = Setup::start(1).await;
    let admin = format!("http://{}", rampart_testkit::admin_addr(&setup._gateway));
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let page = http.get(format!("{admin}/console/schedules")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("name=\"csrf\" value=\"{token}\"")), "forms carry the cookie's token");
    let pause = |cookie: Option<&str>, field: &str, origin: Option<&str>| {
        let mut request = http.post(format!("{admin}/console/pauses")).form(&[
            ("csrf", field),
            ("scope", "kind"),
            ("name", "echo"),
            ("action", "pause"),
        ]);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(pause(None, &token, None).await.unwrap().status(), StatusCode::FORBIDDEN, "no cookie");
    assert_eq!(pause(Some(&cookie), "0".repeat(32).as_str(), None).await.unwrap().status(), StatusCode::FORBIDDEN);
    let evil = pause(Some(&cookie), &token, Some("https://evil.example")).await.unwrap();
    assert_eq!(evil.status(), StatusCode::FORBIDDEN, "another site's form");
    assert!(setup.get_json("/api/pauses").await["pauses"].as_array().unwrap().is_empty(), "nothing was paused");
    let own = pause(Some(&cookie), &token, Some(&admin)).await.unwrap();
    assert_eq!(own.status(), StatusCode::SEE_OTHER, "the console's own form");
    assert_eq!(setup.get_json("/api/pauses").await["pauses"][0]["name"], "echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_bulk_retry_and_purge_ask_first_then_act() {
    let setup = Setup::start(1).await;
    let admin = format!("http://{}", rampart_testkit::admin_addr(&setup._gateway));
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let page = http.get(format!("{admin}/console/jobs")).send().await.unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    let post = |path: &str, fields: &[(&str, &str)]| {
        let mut form: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        form.extend_from_slice(fields);
        http.post(format!("{admin}{path}")).header("cookie", &cookie).form(&form).send()
    };

    // Cancel: asked, then done.
    let long = submit(&setup, json!({"kind": "sleep", "payload": {"ms": 30_000}})).await;
    let asked = post(&format!("/console/jobs/{long}/cancel"), &[]).await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    assert!(asked.text().await.unwrap().contains("name=\"confirm\" value=\"yes\""), "a confirmation page");
    assert_ne!(status(&setup, &long).await, "cancelled", "nothing is done before it is confirmed");
    let done = post(&format!("/console/jobs/{long}/cancel"), &[("confirm", "yes")]).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    wait_until("the cancel", Duration::from_secs(10), async || status(&setup, &long).await == "cancelled").await;

    // Bulk retry of the dead `fail` jobs only.
    let mut dead = Vec::new();
    for _ in 0..3 {
        dead.push(submit(&setup, json!({"kind": "fail", "max_attempts": 1})).await);
    }
    for id in &dead {
        wait_until("a dead job", Duration::from_secs(10), async || status(&setup, id).await == "dead").await;
    }
    let filter = [("status", "dead"), ("kind", "fail")];
    let asked = post("/console/jobs/retry", &filter).await.unwrap().text().await.unwrap();
    assert!(asked.contains("status = dead, kind = fail"), "the question names the filter: {asked}");
    let retried = post("/console/jobs/retry", &[filter[0], filter[1], ("confirm", "yes")]).await.unwrap();
    assert!(retried.text().await.unwrap().contains("Queued 3 jobs again."));
    let refused = post("/console/jobs/retry", &[("status", "succeeded"), ("confirm", "yes")]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "succeeded jobs are never retried");

    // Purge of what ended before now: the cancelled job and the dead ones.
    for id in &dead {
        wait_until("dead again", Duration::from_secs(10), async || status(&setup, id).await == "dead").await;
    }
    let before = a_second_from_now();
    let missing = post("/console/jobs/purge", &[("confirm", "yes")]).await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST, "a purge names its cut");
    let asked = post("/console/jobs/purge", &[("before", &before)]).await.unwrap().text().await.unwrap();
    assert!(asked.contains("cannot be undone"), "{asked}");
    let purged = post("/console/jobs/purge", &[("before", &before), ("confirm", "yes")]).await.unwrap();
    assert!(purged.text().await.unwrap().contains("Deleted 4 jobs."));
    let gone = setup.http.get(format!("{}/api/jobs/{long}", setup.base)).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

/// A moment a second from now, as a browser's `datetime-local` field sends it (UTC).
fn a_second_from_now() -> String {
    let later = SystemTime::now() + Duration::from_secs(1);
    humantime::format_rfc3339_seconds(later).to_string().trim_end_matches('Z').to_owned()
}

#[tokio::test]
async fn a_browser_signs_in_with_the_admin_token_on_a_listener_that_needs_one() {
    let worker = rampart_testkit::spawn_worker(&[]).await;
    let (_gateway, admin, _dir) =
        rampart_testkit::spawn_gateway_with_admin_token(&rampart_testkit::worker_url(&worker), "s3cret-admin-token")
            .await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();

    let unsigned = http.get(format!("{admin}/console/jobs?status=dead")).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::SEE_OTHER);
    assert_eq!(unsigned.headers()["location"], "/console/login?next=/console/jobs%3Fstatus%3Ddead");
    let api = http.get(format!("{admin}/admin/backends")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED, "the JSON endpoints still want the bearer token");
    let login = http.get(format!("{admin}/console/login?next=/console/jobs")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    assert!(login.text().await.unwrap().contains("type=\"password\""));

    let sign_in = |token: &'static str| {
        http.post(format!("{admin}/console/login")).form(&[("token", token), ("next", "/console/jobs")]).send()
    };
    assert_eq!(sign_in("wrong").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let signed = sign_in("s3cret-admin-token").await.unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()["location"], "/console/jobs");
    let session = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"), "{session}");
    assert!(!session.contains("s3cret"), "the cookie is not the token");
    let cookie = session.split(';').next().unwrap().to_owned();
    let page = http.get(format!("{admin}/console/jobs")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let forged = http.get(format!("{admin}/console")).header("cookie", format!("rampart_admin={}", "a".repeat(64)));
    assert_eq!(forged.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}
