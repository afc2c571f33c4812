//! What each sending task records, merged at the end: a latency histogram, answers by status,
//! failures by kind, bytes, and completions over time.

use hdrhistogram::Histogram;
use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Width of one step of the throughput timeline.
pub const TIMELINE_STEP: Duration = Duration::from_millis(100);

/// The longest latency the histogram holds (longer ones are recorded as this).
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// One task's records.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latencies in microseconds.
    pub latencies: Histogram<u64>,
    /// Answers by status (`200`, `503`, or a gRPC code name).
    pub statuses: BTreeMap<String, u64>,
    /// Requests with no answer, by why (`connect: connection refused`, `timeout`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Requests that succeeded.
    pub succeeded: u64,
    /// Requests that failed (an error status or no answer).
    pub failed: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Completions per [`TIMELINE_STEP`] since the start.
    pub timeline: Vec<u64>,
    /// Failures per [`TIMELINE_STEP`] since the start.
    pub failure_timeline: Vec<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// Empty records.
    pub fn new() -> Self {
        // Three significant digits: latencies exact to 0.1%.
        let latencies = Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).unwrap_or_else(|_| {
            Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is a valid precision"))
        });
        Self {
            latencies,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            succeeded: 0,
            failed: 0,
            bytes: 0,
            timeline: Vec::new(),
            failure_timeline: Vec::new(),
        }
    }

    fn mark(&mut self, at: Duration, latency: Duration, success: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_LATENCY_MICROS);
        self.latencies.saturating_record(micros);
        let step = usize::try_from(at.as_nanos() / TIMELINE_STEP.as_nanos()).unwrap_or(usize::MAX);
        if step < 100_000_000 {
            bump(&mut self.timeline, step);
            if !success {
                bump(&mut self.failure_timeline, step);
            }
        }
    }

    /// An answer with `status`, `at` since the start, `latency` after it was due.
    pub fn answer(&mut self, status: &str, success: bool, bytes: usize, at: Duration, latency: Duration) {
        self.mark(at, latency, success);
        if let Some(count) = self.statuses.get_mut(status) {
            *count += 1;
        } else {
            self.statuses.insert(status.to_owned(), 1);
        }
        if success {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        self.bytes += bytes as u64;
    }

    /// A request that got no answer.
    pub fn error(&mut self, kind: &str, at: Duration, latency: Duration) {
        self.mark(at, latency, false);
        *self.errors.entry(kind.to_owned()).or_default() += 1;
        self.failed += 1;
    }

    /// Adds `other`'s records to these.
    pub fn merge(&mut self, other: &Self) {
        let _ = self.latencies.add(&other.latencies);
        for (status, count) in &other.statuses {
            *self.statuses.entry(status.clone()).or_default() += count;
        }
        for (error, count) in &other.errors {
            *self.errors.entry(error.clone()).or_default() += count;
        }
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.bytes += other.bytes;
        add_timeline(&mut self.timeline, &other.timeline);
        add_timeline(&mut self.failure_timeline, &other.failure_timeline);
    }

    /// Requests recorded.
    pub fn total(&self) -> u64 {
        self.succeeded + self.failed
    }
}

fn bump(timeline: &mut Vec<u64>, step: usize) {
    if timeline.len() <= step {
        timeline.resize(step + 1, 0);
    }
    timeline[step] += 1;
}

fn add_timeline(into: &mut Vec<u64>, other: &[u64]) {
    if into.len() < other.len() {
        into.resize(other.len(), 0);
    }
    for (step, count) in other.iter().enumerate() {
        into[step] += count;
    }
}

/// Counts every task bumps as it goes, for the live progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests finished.
    pub done: AtomicU64,
    /// Of which failed.
    pub failed: AtomicU64,
}

impl Progress {
    /// Counts one finished request.
    pub fn count(&self, success: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if !success {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A short, stable name for an I/O failure, for the error breakdown.
pub fn error_kind(stage: &str, error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let what = match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::BrokenPipe => "broken pipe",
        ErrorKind::UnexpectedEof => "closed mid-answer",
        ErrorKind::TimedOut => "timeout",
        ErrorKind::InvalidData => "invalid answer",
        ErrorKind::AddrNotAvailable => "no local port free",
        _ => "other",
    };
    format!("{stage}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merge() {
        let mut a = Recorder::new();
        a.answer("200", true, 10, Duration::from_millis(50), Duration::from_millis(2));
        a.error("connect: connection refused", Duration::from_millis(150), Duration::from_millis(1));
        let mut b = Recorder::new();
        b.answer("503", false, 5, Duration::from_millis(250), Duration::from_millis(4));
        a.merge(&b);
        assert_eq!((a.total(), a.succeeded, a.failed, a.bytes), (3, 1, 2, 15));
        assert_eq!(a.statuses["503"], 1);
        assert_eq!(a.timeline, [1, 1, 1]);
        assert_eq!(a.failure_timeline, [0, 1, 1]);
        assert_eq!(a.latencies.len(), 3);
        assert!(a.latencies.value_at_quantile(1.0) >= 4000);
    }
}
