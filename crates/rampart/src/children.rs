//! Child processes started by `rampart up`: spawned from this same executable, their output
//! relayed with a name prefix, stopped with SIGTERM and, if they linger, SIGKILL.

use anyhow::{Context as _, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use std::{process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

/// How long a child may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running child process.
pub(crate) struct Managed {
    pub(crate) name: String,
    child: Child,
    /// Held open for the child's lifetime: the child stops when it closes. (Kept apart from
    /// `child` because `Child::wait` closes the stdin it holds.)
    _stdin: ChildStdin,
}

impl Managed {
    /// Starts `current_exe ARGS` and waits for the line it prints once listening
    /// (`... listening on ADDR ...`), which is returned. The child gets a pipe as standard input
    /// and `--exit-with-parent` (which the caller passes) makes it stop when that pipe closes,
    /// so it never outlives this process.
    pub(crate) async fn start(name: &str, args: &[String]) -> anyhow::Result<(Self, String)> {
        let exe = std::env::current_exe().context("cannot find the rampart executable")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal reaches only `rampart up`, which
            // then stops the children in order (gateway first) instead of all at once.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdin = child.stdin.take().context("child has no stdin")?;
        let stdout = child.stdout.take().context("child has no stdout")?;
        let stderr = child.stderr.take().context("child has no stderr")?;
        relay(name, BufReader::new(stderr).lines(), true);
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, first_listening_line(&mut lines)).await;
        let line = match ready {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None) | Err(_)) => {
                bail!("{name} exited before it was ready; its log above says why")
            }
            Err(_) => bail!("{name} was not ready within {} s", START_TIMEOUT.as_secs()),
        };
        relay(name, lines, false);
        Ok((Self { name: name.to_owned(), child, _stdin: stdin }, line))
    }

    /// Waits for the child to exit.
    pub(crate) async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// Asks the child to stop with SIGTERM, then kills it if it has not exited after `grace`.
    pub(crate) async fn stop(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _gone = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            tracing::warn!(child = %self.name, "did not stop within {} s, killing it", grace.as_secs());
            let _gone = self.child.kill().await;
        }
    }
}

async fn first_listening_line(lines: &mut Lines<BufReader<ChildStdout>>) -> std::io::Result<Option<String>> {
    while let Some(line) = lines.next_line().await? {
        if line.contains("listening on ") {
            return Ok(Some(line));
        }
        println!("{line}");
    }
    Ok(None)
}

/// Copies a child's output lines to ours, each prefixed with the child's name.
fn relay<R: AsyncRead + Unpin + Send + 'static>(name: &str, mut lines: Lines<BufReader<R>>, to_stderr: bool) {
    let prefix = format!("[{name}]");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if to_stderr {
                #[allow(clippy::print_stderr)] // relaying the child's log is this task's job
                {
                    eprintln!("{prefix} {line}");
                }
            } else {
                println!("{prefix} {line}");
            }
        }
    });
}

/// The address in a `... listening on ADDR ...` line.
pub(crate) fn listening_address(line: &str) -> Option<&str> {
    line.split_once("listening on ")?.1.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_from_listening_lines() {
        assert_eq!(listening_address("rampart-worker listening on 127.0.0.1:5"), Some("127.0.0.1:5"));
        assert_eq!(
            listening_address("rampart-gateway listening on 127.0.0.1:8080 (admin 127.0.0.1:9901)"),
            Some("127.0.0.1:8080")
        );
        assert_eq!(listening_address("something else"), None);
    }
}
