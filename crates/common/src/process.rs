//! Process set-up shared by the binaries: file-descriptor limits, and stopping with a parent.

/// Raises the soft limit on open files to the hard limit, so a busy gateway is not capped at the
/// common default of 1,024 sockets. Returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(error) => {
                tracing::warn!(%error, soft, hard, "cannot raise the open-files limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-files limit");
            0
        }
    }
}

/// Resolves when standard input reaches end of file.
///
/// A supervisor such as `rampart up` hands each child a pipe as standard input and never writes
/// to it; when the supervisor dies, even by `kill -9`, the pipe closes and the child stops instead
/// of living on as an orphan holding its port.
///
/// The blocking read runs on a detached thread rather than tokio's blocking pool, because the
/// runtime waits for its blocking reads at shutdown and a read of an open pipe never returns.
pub async fn stdin_closed() {
    let (closed, on_closed) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("stdin-watch".into()).spawn(move || {
        use std::io::Read as _;
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0_u8; 64];
        while let Ok(1..) = stdin.read(&mut buffer) {}
        let _ = closed.send(());
    });
    match spawned {
        Ok(_detached) => {
            let _ = on_closed.await;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch standard input; the parent's exit will go unnoticed");
            std::future::pending::<()>().await;
        }
    }
}

/// Installs the stop-signal handlers now and returns a future that resolves on SIGINT or
/// SIGTERM, or also, when `with_parent` is set, once standard input closes (see
/// [`stdin_closed`]).
pub fn stop_requested(with_parent: bool) -> impl Future<Output = ()> + Send + 'static {
    let signal = crate::shutdown::signal();
    async move {
        if with_parent {
            tokio::select! {
                () = signal => {}
                () = stdin_closed() => tracing::info!("parent went away, shutting down"),
            }
        } else {
            signal.await;
        }
    }
}

/// Memory figures of this process, from `/proc/self/statm` (Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Resident set size: bytes in RAM now.
    pub resident_bytes: u64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: u64,
}

/// Reads this process's memory figures; `None` where `/proc` is not available.
pub fn memory_usage() -> Option<MemoryUsage> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().map(|field| field.parse::<u64>().ok());
    let virtual_pages = fields.next()??;
    let resident_pages = fields.next()??;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    let page = u64::try_from(page).ok()?;
    Some(MemoryUsage { resident_bytes: resident_pages * page, virtual_bytes: virtual_pages * page })
}

/// The most resident memory this process has used so far (`VmHWM`), in bytes; `None` where
/// `/proc` is not available.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time this process has used, user and system together; `None` if it cannot be read.
pub fn cpu_time() -> Option<std::time::Duration> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
    let to_duration = |time: nix::sys::time::TimeVal| {
        let seconds = u64::try_from(time.tv_sec()).unwrap_or(0);
        let micros = u64::try_from(time.tv_usec()).unwrap_or(0);
        std::time::Duration::from_secs(seconds) + std::time::Duration::from_micros(micros)
    };
    Some(to_duration(usage.user_time()) + to_duration(usage.system_time()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_time().unwrap();
        let mut x = 0_u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_time().unwrap() > before, "{x}");
    }

    #[test]
    fn memory_usage_grows_with_a_touched_allocation() {
        let before = memory_usage().unwrap();
        assert!(before.resident_bytes > 0 && before.virtual_bytes >= before.resident_bytes);
        let block = vec![1_u8; 64 << 20];
        let after = memory_usage().unwrap();
        assert!(after.resident_bytes >= before.resident_bytes + (32 << 20), "{before:?} {after:?}");
        assert!(peak_resident_bytes().unwrap() >= after.resident_bytes);
        drop(block);
    }
}
