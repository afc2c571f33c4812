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
}

/// Samples every thread for `duration` and renders the profile. Blocks the calling thread: run
/// it on a blocking thread.
pub fn capture(duration: Duration, format: Format) -> Result<Vec<u8>, ProfileError> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|error| match error {
            pprof::Error::Running => ProfileError::Busy,
            other => ProfileError::Failed(other.to_string()),
        })?;
    std::thread::sleep(duration);
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

    #[test]
    fn a_busy_thread_shows_in_the_profile() {
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
        let bytes = capture(Duration::from_millis(500), Format::Protobuf).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        use pprof::protos::Message as _;
        let profile = pprof::protos::Profile::decode(bytes.as_slice()).unwrap();
        assert!(!profile.sample.is_empty(), "the spinning thread was sampled");
        assert!(profile.string_table.iter().any(|name| name.contains("a_busy_thread_shows_in_the_profile")));
    }
}
