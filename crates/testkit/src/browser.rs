//! A real browser for tests: Debian's headless Chromium driven over WebDriver by its
//! `chromedriver`, installed with apt when missing (as the PostgreSQL tests install their
//! server), and a [`fantoccini`] client on it.

pub use fantoccini::{Client, Locator};

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long chromedriver may take to start answering.
const DRIVER_START: Duration = Duration::from_secs(20);

/// A chromedriver process and a browser session on it; both end when this is dropped (call
/// [`Browser::close`] first to end the session cleanly).
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: fantoccini::Client,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let dirs = ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"];
    names.iter().flat_map(|name| dirs.iter().map(move |dir| Path::new(dir).join(name))).find(|path| path.exists())
}

/// The paths of chromium and chromedriver, installing Debian's packages when they are missing.
fn installed() -> (PathBuf, PathBuf) {
    let both = || Some((find(&["chromium", "chromium-browser"])?, find(&["chromedriver"])?));
    if let Some(found) = both() {
        return found;
    }
    if nix::unistd::geteuid().is_root() {
        eprintln!("Chromium is not installed: installing it (apt-get install -y chromium chromium-driver)");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success());
        if installed && let Some(found) = both() {
            return found;
        }
    }
    panic!("the browser tests need Chromium and its driver: apt-get install chromium chromium-driver");
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Self {
        let (chromium, chromedriver) = installed();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--hide-scrollbars", format!("--window-size={width},{height}")],
            }),
        );
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector).capabilities(capabilities.clone()).connect(&url).await {
                Ok(client) => break client,
                Err(error) if started.elapsed() < DRIVER_START => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("chromedriver did not start a session: {error}"),
            }
        };
        Self { driver, client }
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
