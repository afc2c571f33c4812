//! Support for Rampart's integration tests: finds the workspace's binaries and runs them as real
//! processes on free loopback ports, reading the address each prints once it listens.
//!
//! Every process started here is killed when its handle drops, so a failing test leaves nothing
//! behind; its captured output is printed if the test is panicking.

#![allow(clippy::expect_used, clippy::print_stderr)] // test support: failing loudly is the point

pub mod browser;
pub mod partition;
pub mod pki;
pub mod postgres;
pub mod redis;

use nix::{sys::signal::Signal, unistd::Pid};
use std::{
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader},
    process::{Child, Command},
};

/// How long a process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of a binary of this workspace, brought up to date first.
///
/// `cargo test --workspace` builds every binary before any test runs, but one package's tests
/// run alone (`cargo test -p rampart-gateway`) would otherwise find another package's binary
/// missing or stale. So the first request in a test process runs `cargo build` for the
/// workspace's binaries, which is a no-op when they are current.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let test_exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = test_exe.parent().and_then(|deps| deps.parent()).expect("target profile directory");
    let path = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        // The same build `cargo test --workspace` makes (same packages, so same features): a
        // no-op after that command, and a complete, current build after `cargo test -p ...`.
        build.args(["test", "--quiet", "--workspace", "--no-run"]);
        if profile_dir.file_name().is_some_and(|profile| profile == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success() && path.exists(), "cannot build {name} at {}", path.display());
        *built = true;
    }
    path
}

/// A process under test.
pub struct Process {
    name: String,
    child: Child,
    ready_line: String,
    output: Arc<Mutex<String>>,
    /// A directory the process uses, removed after it is gone.
    scratch: Option<tempfile::TempDir>,
}

impl Process {
    /// Starts `binary ARGS` and waits until it prints a line containing `ready_marker`.
    pub async fn start(binary_name: &str, args: &[&str], ready_marker: &str) -> Self {
        Self::start_in(binary(binary_name), binary_name, args, ready_marker, None).await
    }

    /// Like [`Process::start`], with extra environment variables.
    pub async fn start_with_env(binary_name: &str, args: &[&str], ready_marker: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(binary(binary_name), binary_name, args, ready_marker, None, env).await
    }

    /// Like [`Process::start`], with an explicit executable path and working directory.
    pub async fn start_in(
        path: PathBuf,
        name: &str,
        args: &[&str],
        ready_marker: &str,
        cwd: Option<&std::path::Path>,
    ) -> Self {
        Self::launch(path, name, args, ready_marker, cwd, &[]).await
    }

    async fn launch(
        path: PathBuf,
        name: &str,
        args: &[&str],
        ready_marker: &str,
        cwd: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(&path);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", path.display()));
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        capture(stderr, Arc::clone(&output), None);
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        capture(stdout, Arc::clone(&output), Some((ready_marker.to_owned(), ready_tx)));
        let ready_line = match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(line)) => line,
            _ => {
                let log = output.lock().map(|log| log.clone()).unwrap_or_default();
                panic!("{name} did not print {ready_marker:?}; its output:\n{log}");
            }
        };
        Self { name: name.to_owned(), child, ready_line, output, scratch: None }
    }

    /// The line that announced readiness.
    pub fn ready_line(&self) -> &str {
        &self.ready_line
    }

    /// The address after "listening on " in the ready line.
    pub fn listen_addr(&self) -> String {
        self.ready_line
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {:?}", self.ready_line))
            .to_owned()
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id().expect("process still running")).expect("pid fits"))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("send signal");
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub async fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        self.child.wait().await.expect("reap killed process");
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for process"),
            Err(_) => panic!("{} did not exit within {limit:?}; output:\n{}", self.name, self.output()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- output of {} -----\n{}", self.name, self.output());
        }
    }
}

/// Copies `stream` into `output`; if `ready` is given, sends the first line containing its
/// marker.
fn capture<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    output: Arc<Mutex<String>>,
    mut ready: Option<(String, tokio::sync::oneshot::Sender<String>)>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut log) = output.lock() {
                log.push_str(&line);
                log.push('\n');
            }
            let is_ready = ready.as_ref().is_some_and(|(marker, _)| line.contains(marker.as_str()));
            if let Some((_, sender)) = ready.take_if(|_| is_ready) {
                let _ = sender.send(line);
            }
        }
    });
}

/// A worker process (`rampart-worker`) on a free port, with extra `args`.
pub async fn spawn_worker(args: &[&str]) -> Process {
    spawn_worker_with_env(args, &[]).await
}

/// Like [`spawn_worker`], with extra environment variables.
pub async fn spawn_worker_with_env(args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Process::start_with_env("rampart-worker", &all, "listening on", env).await
}

/// A gateway process (`rampart-gateway`) on free ports for `workers`, with extra `args`. Unless
/// `args` name a `--store`, its job store is a fresh SQLite file removed with the process.
pub async fn spawn_gateway(workers: &[String], args: &[&str]) -> Process {
    spawn_gateway_with_env(workers, args, &[]).await
}

/// Like [`spawn_gateway`], with extra environment variables.
pub async fn spawn_gateway_with_env(workers: &[String], args: &[&str], env: &[(&str, &str)]) -> Process {
    let workers = workers.join(",");
    let mut all = vec!["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--workers", &workers];
    let scratch = (!args.contains(&"--store")).then(|| tempfile::tempdir().expect("temporary directory"));
    let store = scratch.as_ref().map(|dir| format!("sqlite://{}", dir.path().join("rampart.db").display()));
    if let Some(store) = &store {
        all.extend(["--store", store]);
    }
    all.extend_from_slice(args);
    let mut gateway = Process::start_with_env("rampart-gateway", &all, "listening on", env).await;
    gateway.scratch = scratch;
    gateway
}

/// A gateway whose admin listener is bound to every address (`0.0.0.0`), so it needs `token`,
/// given by file through `RAMPART_ADMIN_TOKEN_FILE` as compose and Kubernetes give it. Returns
/// the gateway, its admin listener's loopback URL, and the directory of its token and store.
pub async fn spawn_gateway_with_admin_token(worker: &str, token: &str) -> (Process, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file written");
    let store = format!("sqlite://{}", dir.path().join("rampart.db").display());
    let token_variable = token_file.display().to_string();
    let args =
        ["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--workers", worker, "--store", store.as_str()];
    let gateway = Process::start_with_env(
        "rampart-gateway",
        &args,
        "listening on",
        &[("RAMPART_ADMIN_TOKEN_FILE", &token_variable)],
    )
    .await;
    let port = admin_addr(&gateway).rsplit_once(':').map(|(_, port)| port.to_owned()).expect("an admin port");
    (gateway, format!("http://127.0.0.1:{port}"), dir)
}

/// The `http://` URL of a worker process.
pub fn worker_url(worker: &Process) -> String {
    format!("http://{}", worker.listen_addr())
}

/// A loopback port with nothing listening on it (it was free a moment ago).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The plain-HTTP address in a TLS gateway's ready line (`... (plain ADDR) ...`).
pub fn plain_addr(gateway: &Process) -> String {
    gateway
        .ready_line()
        .split_once("(plain ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_else(|| panic!("no plain address in {:?}", gateway.ready_line()))
}

/// The admin address in a gateway's or worker's ready line (`... (admin ADDR)`).
pub fn admin_addr(gateway: &Process) -> String {
    gateway
        .ready_line()
        .split_once("(admin ")
        .map(|(_, rest)| rest.trim_end_matches(')').to_owned())
        .unwrap_or_else(|| panic!("no admin address in {:?}", gateway.ready_line()))
}
