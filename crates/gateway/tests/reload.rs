//! Hot reload on a real gateway process: SIGHUP, a changed config file and `POST /admin/reload`
//! put a new configuration in force for new requests while those in flight finish on theirs;
//! what stays keeps its state; an invalid configuration changes nothing and says why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // a failed unwrap is a failed test

mod support;

use nix::sys::signal::Signal;
use rampart_testkit::{Process, admin_addr, closed_port, spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::{path::Path, time::Duration};
use support::{expect_problem, get_json, peers::Upstream, wait_until};

/// Health checks fast enough for a test; routes as given.
fn config_with(routes: &[(&str, &Upstream)], extra: &str) -> String {
    let mut text = String::from("[health]\ninterval = \"200ms\"\n\n");
    for (prefix, upstream) in routes {
        text.push_str(&format!("[[routes]]\nprefix = \"{prefix}\"\nupstreams = [\"{}\"]\n\n", upstream.url));
    }
    text + extra
}

/// Writes the config file the way an editor or a deployment tool does: a new file moved over
/// the old one.
fn write_config(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

struct Reloadable {
    gateway: Process,
    dir: tempfile::TempDir,
    base: String,
    admin: String,
    http: Client,
}

impl Reloadable {
    async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        // No worker answers: these tests are about routes.
        let nobody = format!("http://127.0.0.1:{}", closed_port());
        let gateway = spawn_gateway(&[nobody], &["--config", path.to_str().unwrap()]).await;
        let (base, admin) = (format!("http://{}", gateway.listen_addr()), format!("http://{}", admin_addr(&gateway)));
        Self { gateway, dir, base, admin, http: Client::new() }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("gateway.toml")
    }

    async fn status(&self, path: &str) -> StatusCode {
        self.http.get(format!("{}{path}", self.base)).send().await.unwrap().status()
    }

    async fn version(&self) -> u64 {
        get_json(&self.http, &format!("{}/admin/config", self.admin)).await["version"].as_u64().unwrap()
    }

    async fn reload(&self) -> reqwest::Response {
        self.http.post(format!("{}/admin/reload", self.admin)).send().await.unwrap()
    }

    async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.admin)).send().await.unwrap().text().await.unwrap()
    }

    /// The endpoint view of `upstream` on the route under `prefix`, from `/admin/backends`.
    async fn endpoint(&self, prefix: &str, upstream: &Upstream) -> Value {
        let backends = get_json(&self.http, &format!("{}/admin/backends", self.admin)).await;
        let route = backends["routes"].as_array().unwrap().iter().find(|route| route["prefix"] == prefix).cloned();
        let endpoints = route.unwrap_or_default()["upstreams"].as_array().cloned().unwrap_or_default();
        endpoints.into_iter().find(|endpoint| endpoint["url"] == upstream.url.as_str()).unwrap_or_default()
    }
}

#[tokio::test]
async fn routes_change_under_traffic_while_requests_in_flight_finish_on_their_own_config() {
    let (shop, blog) = (Upstream::start("shop"), Upstream::start("blog"));
    let gateway = Reloadable::start(&config_with(&[("/shop", &shop)], "")).await;
    assert_eq!(gateway.status("/shop/cart").await, StatusCode::OK);
    assert_eq!(gateway.status("/blog/post").await, StatusCode::NOT_FOUND);
    assert_eq!(gateway.version().await, 1);

    // A slow request starts on the first configuration and is still running through the reload.
    let slow = tokio::spawn({
        let (http, url) = (gateway.http.clone(), format!("{}/shop/slow?delay_ms=1500", gateway.base));
        async move { http.get(url).send().await.unwrap() }
    });
    wait_until("the slow request reaches the upstream", Duration::from_secs(5), async || {
        gateway.endpoint("/shop", &shop).await["in_flight"] == 1
    })
    .await;

    // SIGHUP: the new route serves at once.
    write_config(&gateway.path(), &config_with(&[("/shop", &shop), ("/blog", &blog)], ""));
    gateway.gateway.signal(Signal::SIGHUP);
    let in_force = wait_until("the new route serves", Duration::from_secs(5), async || {
        gateway.status("/blog/post").await == StatusCode::OK
    })
    .await;
    eprintln!("SIGHUP to the new route serving: {in_force:?}");
    let kept = gateway.endpoint("/shop", &shop).await;
    assert_eq!(kept["in_flight"], 1, "the endpoint that stayed is the same one, still counting the slow call: {kept}");
    assert_eq!(gateway.status("/shop/cart").await, StatusCode::OK, "the route that stayed serves on");
    assert_eq!(gateway.version().await, 2);

    // The config file changes again (no signal): the route it drops stops at once for new
    // requests, and the slow one started before finishes normally.
    write_config(&gateway.path(), &config_with(&[("/blog", &blog)], ""));
    wait_until("the file change is noticed", Duration::from_secs(5), async || {
        gateway.status("/shop/cart").await == StatusCode::NOT_FOUND
    })
    .await;
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), StatusCode::OK, "the request in flight finished on the route it started on");
    let answer: Value = slow.json().await.unwrap();
    assert_eq!(answer["upstream"], "shop");
    assert_eq!(gateway.status("/blog/post").await, StatusCode::OK);
    assert_eq!(gateway.version().await, 3);
    let metrics = gateway.metrics().await;
    assert!(metrics.contains("rampart_config_reloads_total{trigger=\"signal\",result=\"applied\"} 1"), "{metrics}");
    assert!(metrics.contains("rampart_config_reloads_total{trigger=\"file\",result=\"applied\"} 1"), "{metrics}");
    assert!(metrics.contains("rampart_config_version 3"), "{metrics}");
}

#[tokio::test]
async fn an_invalid_config_changes_nothing_and_the_reload_says_where_and_why() {
    let shop = Upstream::start("shop");
    let gateway = Reloadable::start(&config_with(&[("/shop", &shop)], "")).await;
    let path = gateway.path();

    // A wrong value: refused with its key, nothing changes.
    write_config(&path, &config_with(&[("shop", &shop)], ""));
    let refused = expect_problem(gateway.reload().await, StatusCode::UNPROCESSABLE_ENTITY, "config_invalid").await;
    assert_eq!(refused["key"], "routes[0].prefix", "{refused}");
    assert!(refused["file"].as_str().unwrap().contains("gateway.toml"), "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("must start with /"), "{refused}");
    assert_eq!(refused["version"], 1);
    assert_eq!(gateway.status("/shop/cart").await, StatusCode::OK, "the configuration in force stays");

    // Not TOML at all: refused with the file and line.
    write_config(&path, "[[routes]\nprefix = ");
    let broken = expect_problem(gateway.reload().await, StatusCode::UNPROCESSABLE_ENTITY, "config_invalid").await;
    assert!(broken["detail"].as_str().unwrap().contains("line 1"), "{broken}");
    let shown = get_json(&gateway.http, &format!("{}/admin/config", gateway.admin)).await;
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["last_reload"]["refused"]["reason"], broken["detail"], "{shown}");
    assert_eq!(shown["config"]["routes"][0]["prefix"], "/shop", "{shown}");
    assert!(gateway.gateway.output().contains("the new configuration is refused"), "logged");
    let metrics = gateway.metrics().await;
    assert!(metrics.contains("rampart_config_reloads_total{trigger=\"admin\",result=\"invalid\"} 2"), "{metrics}");

    // A key a running gateway cannot change is reported, and keeps its value; the rest applies.
    let moved = format!("drain_timeout = \"5s\"\nmax_body_bytes = 2048\n{}", config_with(&[("/shop", &shop)], ""));
    write_config(&path, &moved);
    let applied = gateway.reload().await;
    assert_eq!(applied.status(), StatusCode::OK);
    let applied: Value = applied.json().await.unwrap();
    assert_eq!(applied["restart_needed"], serde_json::json!(["drain_timeout"]), "{applied}");
    assert_eq!(applied["applied"], serde_json::json!(["max_body_bytes"]), "{applied}");
    assert_eq!(applied["version"], 2);
    let shown = get_json(&gateway.http, &format!("{}/admin/config", gateway.admin)).await;
    assert_eq!(shown["config"]["drain_timeout"], "30s", "the value in force stays: {shown}");
    assert_eq!(shown["config"]["max_body_bytes"], 2048);
    assert_eq!(gateway.status("/shop/cart").await, StatusCode::OK);

    // The same file again: nothing to do.
    let again: Value = gateway.reload().await.json().await.unwrap();
    assert_eq!((again["version"].as_u64(), again["applied"].as_array().map(Vec::len)), (Some(2), Some(0)));
}

#[tokio::test]
async fn rate_limit_buckets_and_key_digests_survive_a_reload_and_secrets_are_not_shown() {
    let shop = Upstream::start("shop");
    let limits = "[rate_limit]\nrate = 0.01\nburst = 3\n";
    let gateway = Reloadable::start(&config_with(&[("/shop", &shop)], limits)).await;
    for _ in 0..3 {
        assert_eq!(gateway.status("/shop/cart").await, StatusCode::OK);
    }
    assert_eq!(gateway.status("/shop/cart").await, StatusCode::TOO_MANY_REQUESTS);

    // Another change leaves the limit as it was: the spent bucket stays spent.
    let blog = Upstream::start("blog");
    write_config(&gateway.path(), &config_with(&[("/shop", &shop), ("/blog", &blog)], limits));
    assert_eq!(gateway.reload().await.status(), StatusCode::OK);
    assert_eq!(gateway.status("/shop/cart").await, StatusCode::TOO_MANY_REQUESTS, "a reload refills no bucket");

    // A new limit is a new bucket.
    let wider = "[rate_limit]\nrate = 0.01\nburst = 10\nredis = \"redis://:hunter2@127.0.0.1:1/0\"\n";
    write_config(&gateway.path(), &config_with(&[("/shop", &shop)], wider));
    assert_eq!(gateway.reload().await.status(), StatusCode::OK);
    assert_eq!(gateway.status("/shop/cart").await, StatusCode::OK, "the new limit starts full");
    let shown = get_json(&gateway.http, &format!("{}/admin/config", gateway.admin)).await;
    assert_eq!(shown["config"]["rate_limit"]["redis"], "redis://:[redacted]@127.0.0.1:1/0", "{shown}");
    assert!(!shown.to_string().contains("hunter2"));
}

#[tokio::test]
async fn a_pool_takes_new_workers_at_once_and_a_new_pool_waits_for_a_restart() {
    let (first, second) = (spawn_worker(&["--name", "first"]).await, spawn_worker(&["--name", "second"]).await);
    let pool = |worker: &Process| {
        format!("[[pools]]\nname = \"main\"\nkinds = [\"echo\"]\nworkers = [\"{}\"]\n", worker_url(worker))
    };
    let gateway = Reloadable::start(&config_with(&[], &pool(&first))).await;
    let served_by = async || -> String {
        let echo = serde_json::json!({"kind": "echo", "payload": "who?"});
        let answer = gateway.http.post(format!("{}/api/process", gateway.base)).json(&echo).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        answer.json::<Value>().await.unwrap()["worker"].as_str().unwrap().to_owned()
    };
    assert_eq!(served_by().await, "first");

    write_config(&gateway.path(), &config_with(&[], &pool(&second)));
    let applied: Value = gateway.reload().await.json().await.unwrap();
    assert_eq!(applied["applied"], serde_json::json!(["pools"]), "{applied}");
    for _ in 0..10 {
        assert_eq!(served_by().await, "second", "the new worker serves from the first request after the reload");
    }

    let more = format!(
        "{}[[pools]]\nname = \"extra\"\nkinds = [\"sleep\"]\nworkers = [\"{}\"]\n",
        pool(&second),
        worker_url(&first)
    );
    write_config(&gateway.path(), &config_with(&[], &more));
    let answer: Value = gateway.reload().await.json().await.unwrap();
    assert_eq!(answer["restart_needed"], serde_json::json!(["pools"]), "{answer}");
    assert_eq!(served_by().await, "second", "the pools in force stay");
}

#[tokio::test]
async fn a_cron_entry_added_by_a_reload_ticks_and_one_removed_stops() {
    let worker = spawn_worker(&["--name", "w0"]).await;
    let pool = format!("[[pools]]\nname = \"main\"\nkinds = [\"echo\"]\nworkers = [\"{}\"]\n", worker_url(&worker));
    let gateway = Reloadable::start(&config_with(&[], &pool)).await;
    let echoes = async || -> usize {
        let page = get_json(&gateway.http, &format!("{}/api/jobs?kind=echo&limit=1000", gateway.base)).await;
        page["jobs"].as_array().unwrap().len()
    };
    assert_eq!(echoes().await, 0);

    let cron = "[[cron]]\nname = \"every-second\"\nschedule = \"* * * * * *\"\nkind = \"echo\"\npayload = { from = \"cron\" }\n";
    write_config(&gateway.path(), &config_with(&[], &format!("{pool}{cron}")));
    let applied: Value = gateway.reload().await.json().await.unwrap();
    assert_eq!(applied["applied"], serde_json::json!(["cron"]), "{applied}");
    wait_until("the new entry ticks", Duration::from_secs(6), async || echoes().await >= 2).await;
    let listed = get_json(&gateway.http, &format!("{}/api/cron", gateway.base)).await;
    assert_eq!(listed["entries"][0]["name"], "every-second", "{listed}");

    write_config(&gateway.path(), &config_with(&[], &pool));
    assert_eq!(gateway.reload().await.status(), StatusCode::OK);
    let stopped = echoes().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(echoes().await <= stopped + 1, "the removed entry stops ticking (one may have been due as it went)");
}
