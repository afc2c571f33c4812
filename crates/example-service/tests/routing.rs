//! The service crate joins a deployment: the gateway routes its kind to it by configuration and
//! everything else to the ordinary workers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use rampart_testkit::{Process, spawn_gateway, spawn_worker, worker_url};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_gateway_routes_the_services_kind_to_it() {
    let service =
        Process::start("rampart-example-service", &["--listen", "127.0.0.1:0", "--name", "words"], "listening on")
            .await;
    let worker = spawn_worker(&["--name", "general"]).await;
    let mut config = tempfile::NamedTempFile::new().unwrap();
    let pools =
        format!("[[pools]]\nname = \"text\"\nworkers = [\"{}\"]\nkinds = [\"wordcount\"]\n", worker_url(&service));
    std::io::Write::write_all(&mut config, pools.as_bytes()).unwrap();
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.path().to_str().unwrap()]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/process", gateway.listen_addr());

    let counted: Value = http
        .post(&url)
        .json(&json!({"kind": "wordcount", "payload": {"text": "to be or not to be", "top": 1}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counted["worker"], "words");
    assert_eq!(counted["result"], json!({"words": 6, "unique": 4, "top": [["be", 2]]}));

    let echoed: Value =
        http.post(&url).json(&json!({"kind": "echo", "payload": 5})).send().await.unwrap().json().await.unwrap();
    assert_eq!(echoed["worker"], "general");

    // The service runs only its own kind; the general workers do not know wordcount.
    let wrong = http.post(&url).json(&json!({"kind": "hash", "payload": {"rounds": 1}})).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::OK, "hash goes to the default pool");

    let admin: Value = http
        .get(format!("http://{}/admin/backends", rampart_testkit::admin_addr(&gateway)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["pools"][1]["pool"], "text");
    assert_eq!(admin["pools"][1]["kinds"], json!(["wordcount"]));
}
