//! A private PostgreSQL server for one test: its own data directory and port, started from the
//! installed binaries and shut down when the handle drops. Tests need nothing running
//! beforehand; on a machine without PostgreSQL, the package is installed first when possible.

#![allow(clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running PostgreSQL server.
pub struct Postgres {
    /// `postgres://rampart@127.0.0.1:PORT/postgres`: superuser `rampart`, trust authentication.
    pub url: String,
    child: Child,
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the data directory is thrown away anyway.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT);
        }
        let _ = self.child.wait();
    }
}

/// The directory holding `initdb` and `postgres`, installing PostgreSQL if it is missing.
fn binaries() -> PathBuf {
    let find = || -> Option<PathBuf> {
        if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
            && output.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            if dir.join("initdb").exists() {
                return Some(dir);
            }
        }
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
            .filter(|dir| dir.join("initdb").exists())
            .collect();
        versions.sort();
        versions.pop()
    };
    if let Some(dir) = find() {
        return dir;
    }
    if nix::unistd::geteuid().is_root() {
        eprintln!("PostgreSQL is not installed: installing it (apt-get install -y postgresql)");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-qq", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success());
        if installed && let Some(dir) = find() {
            return dir;
        }
    }
    panic!("PostgreSQL's server binaries are needed for this test: apt-get install postgresql");
}

/// Runs `program` as the `postgres` user when we are root (the server refuses to run as root).
fn command(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid", "postgres", "--regid", "postgres", "--init-groups", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Starts the server on the data directory under `dir`.
fn spawn(bin: &Path, dir: &Path, port: u16) -> Child {
    command(&bin.join("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postgres")
}

impl Postgres {
    /// Starts a fresh server on a free loopback port.
    pub fn start() -> Self {
        let bin = binaries();
        let dir = tempfile::tempdir().expect("temporary directory");
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres").ok().flatten().expect("the postgres user exists");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("hand the directory to postgres");
        }
        let data = dir.path().join("data");
        let initdb = command(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "rampart", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run initdb");
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        let port = crate::closed_port();
        let child = spawn(&bin, dir.path(), port);
        let server = Self { url: format!("postgres://rampart@127.0.0.1:{port}/postgres"), child, bin, port, dir };
        server.wait_ready(&data);
        server
    }

    /// Restarts the server as an operator would (a fast shutdown: every connection is closed),
    /// on the same data and port; returns once it accepts connections again.
    pub fn restart(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
        }
        let _ = self.child.wait();
        self.child = spawn(&self.bin, self.dir.path(), self.port);
        self.wait_ready(&self.dir.path().join("data"));
    }

    /// Waits until the server says it is ready in `postmaster.pid`.
    fn wait_ready(&self, data: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let status = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
            if status.lines().nth(7).is_some_and(|line| line.trim() == "ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PostgreSQL did not become ready within 30 s");
    }
}
