//! The service crate joins a deployment: the gateway routes its kind to it by configuration, or
//! by what the service says it runs, and everything else to the ordinary workers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use rampart_testkit::{Process, spawn_gateway, spawn_worker, worker_url};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The service, an ordinary worker and a gateway whose `[[pools]]` entry `pool` (given the
/// service's URL) sends work to the service; the temporary config file lives as long as they do.
struct Deployment {
    _processes: [Process; 3],
    _config: tempfile::NamedTempFile,
    base: String,
    admin: String,
    http: reqwest::Client,
}

impl Deployment {
    async fn start(pool: impl Fn(&str) -> String) -> Self {
        let service =
            Process::start("rampart-example-service", &["--listen", "127.0.0.1:0", "--name", "words"], "listening on")
                .await;
        let worker = spawn_worker(&["--name", "general"]).await;
        let mut config = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut config, pool(&worker_url(&service)).as_bytes()).unwrap();
        let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.path().to_str().unwrap()]).await;
        let base = format!("http://{}", gateway.listen_addr());
        let admin = format!("http://{}/admin/backends", rampart_testkit::admin_addr(&gateway));
        Self { _processes: [service, worker, gateway], _config: config, base, admin, http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.base)).json(body).send().await.unwrap()
    }

    async fn process(&self, body: &Value) -> Value {
        self.post("/api/process", body).await.json().await.unwrap()
    }

    async fn backends(&self) -> Value {
        self.http.get(&self.admin).send().await.unwrap().json().await.unwrap()
    }
}

#[tokio::test]
async fn the_gateway_routes_the_services_kind_to_it() {
    let deployment = Deployment::start(|url| {
        format!("[[pools]]\nname = \"text\"\nworkers = [\"{url}\"]\nkinds = [\"wordcount\"]\n")
    })
    .await;
    let counted =
        deployment.process(&json!({"kind": "wordcount", "payload": {"text": "to be or not to be", "top": 1}})).await;
    assert_eq!(counted["worker"], "words");
    assert_eq!(counted["result"], json!({"words": 6, "unique": 4, "top": [["be", 2]]}));
    let echoed = deployment.process(&json!({"kind": "echo", "payload": 5})).await;
    assert_eq!(echoed["worker"], "general");
    let hashed = deployment.post("/api/process", &json!({"kind": "hash", "payload": {"rounds": 1}})).await;
    assert_eq!(hashed.status(), StatusCode::OK, "hash goes to the default pool");
    let admin = deployment.backends().await;
    assert_eq!(admin["pools"][1]["pool"], "text");
    assert_eq!(admin["pools"][1]["kinds"], json!(["wordcount"]));
}

#[tokio::test]
async fn a_pool_without_kinds_gets_the_kinds_its_workers_say_they_run() {
    let deployment = Deployment::start(|url| format!("[[pools]]\nname = \"text\"\nworkers = [\"{url}\"]\n")).await;
    let counted = deployment.process(&json!({"kind": "wordcount", "payload": {"text": "a b a"}})).await;
    assert_eq!(counted["worker"], "words", "learned from the service's Describe: {counted}");
    let echoed = deployment.process(&json!({"kind": "echo", "payload": 5})).await;
    assert_eq!(echoed["worker"], "general", "a kind the default pool runs stays there");

    // A kind no worker runs is answered by the gateway itself, on every route that takes one.
    for (path, body) in [
        ("/api/process", json!({"kind": "resize_image"})),
        ("/api/jobs", json!({"kind": "resize_image"})),
        ("/api/batch", json!({"jobs": [{"kind": "echo"}, {"kind": "resize_image"}]})),
    ] {
        let response = deployment.post(path, &body).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "unknown_kind", "{path}: {problem}");
        assert!(problem.get("endpoint").is_none(), "no worker was asked: {problem}");
        let kinds = problem["kinds"].as_array().unwrap();
        assert!(kinds.contains(&json!("wordcount")) && kinds.contains(&json!("echo")), "{problem}");
    }
    let admin = deployment.backends().await;
    assert_eq!(admin["pools"][1]["kinds"], json!([]));
    assert!(admin["pools"][1]["runs"].as_array().unwrap().contains(&json!("wordcount")), "{admin}");
}
