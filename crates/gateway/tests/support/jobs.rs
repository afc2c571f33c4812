//! A real gateway with fast retries in front of real workers, for the durable-jobs tests.

use super::config_file;
use rampart_testkit::{Process, spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, StatusCode};
use serde_json::Value;

/// A gateway with fast retries in front of `workers` workers.
pub(crate) struct Setup {
    pub(crate) workers: Vec<Process>,
    pub(crate) _gateway: Process,
    _config: tempfile::NamedTempFile,
    pub(crate) base: String,
    pub(crate) http: Client,
}

impl Setup {
    /// A counter from the gateway's `/metrics` (0 before it is first counted).
    pub(crate) async fn counter(&self, name: &str) -> u64 {
        let admin = format!("http://{}/metrics", rampart_testkit::admin_addr(&self._gateway));
        let text = self.http.get(admin).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0)
    }

    pub(crate) async fn start(workers: usize) -> Self {
        Self::start_with(workers, "").await
    }

    /// Like [`Setup::start`], with more `[jobs]` settings.
    pub(crate) async fn start_with(workers: usize, jobs_config: &str) -> Self {
        let mut started = Vec::new();
        for index in 0..workers {
            started.push(spawn_worker(&["--name", &format!("w{index}")]).await);
        }
        let urls: Vec<_> = started.iter().map(worker_url).collect();
        let config = config_file(&format!("[jobs]\nbackoff_base = \"50ms\"\nbackoff_max = \"200ms\"\n{jobs_config}"));
        let gateway = spawn_gateway(&urls, &["--config", config.path().to_str().unwrap()]).await;
        let base = format!("http://{}", gateway.listen_addr());
        Self { workers: started, _gateway: gateway, _config: config, base, http: Client::new() }
    }

    pub(crate) async fn submit(&self, body: &Value, query: &str, key: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(format!("{}/api/jobs{query}", self.base)).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap()
    }

    /// The JSON answer of `GET path`.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        super::get_json(&self.http, &format!("{}{path}", self.base)).await
    }

    pub(crate) async fn job(&self, id: &str) -> Value {
        let response = self.http.get(format!("{}/api/jobs/{id}", self.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}
