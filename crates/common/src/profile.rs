//! CPU profiles of the running process, sampled with `pprof`: as pprof protobuf (what
//! `go tool pprof` reads) or as an SVG flame graph.

use std::time::Duration;

/// How often the profiler samples, per second (an odd rate, so it does not beat with timers).
const FREQUENCY: i32 = 99;

/// The output of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pprof protobuf, uncompressed (`go tool pprof` and `pprof` read it).
    Protobuf,
    /// An SVG flame graph.
    FlameGraph,
}

/// Why no profile could be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Another profile is being taken (the sampler is process-wide).
    #[error("a profile is already being taken; try again when it ends")]
    Busy,
    /// The profiler failed.
    #[error("profiling failed: {0}")]
    Failed(String),
    /// The profile was stopped before its end because nobody waits for it any more.
    #[error("the profile was abandoned by its client")]
    Abandoned,
}

/// How often a profile in progress checks whether it was abandoned.
const ABANDON_CHECK: Duration = Duration::from_millis(50);

/// Samples every thread for `duration` and renders the profile. Blocks the calling thread: run
/// it on a blocking thread. Stops early, releasing the sampler, once `abandoned` is set.
pub fn capture(
    duration: Duration,
    format: Format,
    abandoned: &std::sync::atomic::AtomicBool,
) -> Result<Vec<u8>, ProfileError> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|error| match error {
            pprof::Error::Running => ProfileError::Busy,
            other => ProfileError::Failed(other.to_string()),
        })?;
    let until = std::time::Instant::now() + duration;
    loop {
        if abandoned.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ProfileError::Abandoned);
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(ABANDON_CHECK));
    }
    let report = guard.report().build().map_err(|error| ProfileError::Failed(error.to_string()))?;
    let mut out = Vec::new();
    match format {
        Format::Protobuf => {
            use pprof::protos::Message as _;
            let profile = report.pprof().map_err(|error| ProfileError::Failed(error.to_string()))?;
            profile.encode(&mut out).map_err(|error| ProfileError::Failed(error.to_string()))?;
        }
        Format::FlameGraph if report.data.is_empty() => {
            // A flame graph of nothing renders as nothing; say so instead.
            out.extend_from_slice(
                format!(
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\">\
                     <text x=\"10\" y=\"25\">No CPU samples in {:.1} s: the process was idle.</text></svg>\n",
                    duration.as_secs_f64()
                )
                .as_bytes(),
            );
        }
        Format::FlameGraph => {
            report.flamegraph(&mut out).map_err(|error| ProfileError::Failed(error.to_string()))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sampler is process-wide: tests that profile take turns.
    static SAMPLER: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_busy_thread_shows_in_the_profile() {
        let _turn = SAMPLER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0_u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                }
            })
        };
        let bytes =
            capture(Duration::from_millis(500), Format::Protobuf, &std::sync::atomic::AtomicBool::new(false)).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        use pprof::protos::Message as _;
        let profile = pprof::protos::Profile::decode(bytes.as_slice()).unwrap();
        assert!(!profile.sample.is_empty(), "the spinning thread was sampled");
        assert!(profile.string_table.iter().any(|name| name.contains("a_busy_thread_shows_in_the_profile")));
    }

    #[test]
    fn an_abandoned_profile_stops_and_frees_the_sampler() {
        let _turn = SAMPLER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&abandoned);
        let started = std::time::Instant::now();
        let long = std::thread::spawn(move || capture(Duration::from_secs(60), Format::Protobuf, &flag));
        std::thread::sleep(Duration::from_millis(100));
        abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(long.join().unwrap(), Err(ProfileError::Abandoned)));
        assert!(started.elapsed() < Duration::from_secs(5));
        let next = capture(Duration::from_millis(10), Format::Protobuf, &std::sync::atomic::AtomicBool::new(false));
        assert!(next.is_ok(), "the sampler is free again: {next:?}");
    }
}
