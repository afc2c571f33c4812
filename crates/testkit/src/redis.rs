//! A private Redis server for one test, on its own port, stopped when the handle drops; the
//! Debian package is installed first when it is missing and we may.

#![allow(clippy::expect_used)]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A Redis server that a test can stop and start again (an outage).
pub struct Redis {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<Child>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn installed() -> bool {
    Command::new("redis-server").arg("--version").output().is_ok_and(|output| output.status.success())
}

impl Redis {
    /// Starts a server on a free loopback port.
    pub fn start() -> Self {
        if !installed() && nix::unistd::geteuid().is_root() {
            eprintln!("Redis is not installed: installing it (apt-get install -y redis-server)");
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-qq", "redis-server"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        assert!(installed(), "redis-server is needed for this test: apt-get install redis-server");
        let port = crate::closed_port();
        let mut redis = Self { url: format!("redis://127.0.0.1:{port}"), port, child: None };
        redis.resume();
        redis
    }

    /// Stops the server (its data goes with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port; returns once it accepts connections.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "Redis did not start within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
