//! The report of a run: the article's figures (total, succeeded, failed, mean latency, QPS,
//! success rate) and more, as text for people or JSON for machines.

use crate::record::{Recorder, TIMELINE_STEP};
use serde::Serialize;
use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

/// Latency figures, in milliseconds, measured from when each request was due.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Fastest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Slowest.
    pub max: f64,
}

/// One point of the latency distribution: `percentile` of requests took at most `ms`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    /// 0 to 100.
    pub percentile: f64,
    /// Milliseconds.
    pub ms: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The target URL.
    pub target: String,
    /// `http/1.1`, `h2c` or `grpc`.
    pub protocol: &'static str,
    /// `closed` or `open` (with `--rate`).
    pub mode: &'static str,
    /// Connections or streams.
    pub connections: u64,
    /// The rate asked for, in open loop.
    pub rate_asked: Option<f64>,
    /// Seconds from the first request due to the last answer.
    pub elapsed_seconds: f64,
    /// Requests sent.
    pub requests: u64,
    /// Answered with success (HTTP 2xx/3xx; gRPC OK with a succeeded job).
    pub succeeded: u64,
    /// Failed: an error status or no answer.
    pub failed: u64,
    /// `succeeded / requests`, in percent.
    pub success_rate: f64,
    /// Requests per second over the run.
    pub qps: f64,
    /// Latency figures.
    pub latency_ms: Latency,
    /// Answers by status.
    pub statuses: BTreeMap<String, u64>,
    /// Requests with no answer, by why.
    pub errors: BTreeMap<String, u64>,
    /// Bytes received.
    pub bytes_received: u64,
    /// Requests completed per second, for each tenth of a second of the run.
    pub throughput_timeline: Vec<f64>,
    /// Requests failed in each tenth of a second of the run (to tell failures around a fault
    /// from the rest).
    pub failure_timeline: Vec<u64>,
    /// The latency distribution.
    pub distribution: Vec<Point>,
}

/// The percentiles the distribution is drawn at: dense towards the tail, as HdrHistogram plots.
fn distribution_points() -> Vec<f64> {
    let mut points = Vec::new();
    for nines in 0..=5 {
        let base = 1.0 - 10_f64.powi(-nines);
        let next = 1.0 - 10_f64.powi(-(nines + 1));
        for step in 0..10 {
            points.push(base + (next - base) * f64::from(step) / 10.0);
        }
    }
    points.push(1.0);
    points
}

impl Report {
    /// Builds the report from a run's records.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        target: &str,
        protocol: &'static str,
        connections: u64,
        rate: Option<f64>,
        records: &Recorder,
        elapsed: Duration,
    ) -> Self {
        let histogram = &records.latencies;
        let ms = |micros: u64| micros as f64 / 1000.0;
        let total = records.total();
        let latency = if histogram.is_empty() {
            Latency { min: 0.0, mean: 0.0, stdev: 0.0, p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, max: 0.0 }
        } else {
            Latency {
                min: ms(histogram.min()),
                mean: histogram.mean() / 1000.0,
                stdev: histogram.stdev() / 1000.0,
                p50: ms(histogram.value_at_quantile(0.5)),
                p90: ms(histogram.value_at_quantile(0.9)),
                p99: ms(histogram.value_at_quantile(0.99)),
                p99_9: ms(histogram.value_at_quantile(0.999)),
                max: ms(histogram.max()),
            }
        };
        let per_second = 1.0 / TIMELINE_STEP.as_secs_f64();
        let distribution = if histogram.is_empty() {
            Vec::new()
        } else {
            distribution_points()
                .into_iter()
                .map(|quantile| Point { percentile: quantile * 100.0, ms: ms(histogram.value_at_quantile(quantile)) })
                .collect()
        };
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        Self {
            target: target.to_owned(),
            protocol,
            mode: if rate.is_some() { "open" } else { "closed" },
            connections,
            rate_asked: rate,
            elapsed_seconds: elapsed.as_secs_f64(),
            requests: total,
            succeeded: records.succeeded,
            failed: records.failed,
            success_rate: if total == 0 { 0.0 } else { 100.0 * records.succeeded as f64 / total as f64 },
            qps: if elapsed.is_zero() { 0.0 } else { total as f64 / elapsed.as_secs_f64() },
            latency_ms: latency,
            statuses: records.statuses.clone(),
            errors: records.errors.clone(),
            bytes_received: records.bytes,
            // Whole steps only: a last, partial step would show as a false drop.
            throughput_timeline: records
                .timeline
                .iter()
                .take(usize::try_from(elapsed.as_nanos() / TIMELINE_STEP.as_nanos()).unwrap_or(usize::MAX).max(1))
                .map(|count| *count as f64 * per_second)
                .collect(),
            failure_timeline: records.failure_timeline.clone(),
            distribution,
        }
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mode = match self.rate_asked {
            Some(rate) => format!("open loop at {rate} requests/s"),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "rampart-load {} ({}, {mode}, {} connections, {:.2} s)\n",
            self.target, self.protocol, self.connections, self.elapsed_seconds
        );
        let _ = writeln!(
            out,
            "  Requests     {} total, {} succeeded, {} failed ({:.2}% success)",
            group(self.requests),
            group(self.succeeded),
            group(self.failed),
            self.success_rate
        );
        #[allow(clippy::cast_precision_loss)]
        let megabytes = self.bytes_received as f64 / 1e6 / self.elapsed_seconds.max(1e-9);
        let _ = writeln!(out, "  Throughput   {:.1} requests/s (QPS), {megabytes:.2} MB/s received", self.qps);
        let latency = &self.latency_ms;
        let _ = writeln!(
            out,
            "  Latency      mean {} (stdev {}), min {}",
            ms(latency.mean),
            ms(latency.stdev),
            ms(latency.min)
        );
        let _ = writeln!(
            out,
            "               p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(latency.p50),
            ms(latency.p90),
            ms(latency.p99),
            ms(latency.p99_9),
            ms(latency.max)
        );
        if self.rate_asked.is_some() {
            let _ = writeln!(
                out,
                "               (measured from when each request was due: waits for a free connection count)"
            );
        }
        let statuses: Vec<String> =
            self.statuses.iter().map(|(status, count)| format!("{status}: {}", group(*count))).collect();
        let _ = writeln!(
            out,
            "  Statuses     {}",
            if statuses.is_empty() { "none".to_owned() } else { statuses.join(", ") }
        );
        let errors: Vec<String> =
            self.errors.iter().map(|(error, count)| format!("{error}: {}", group(*count))).collect();
        let _ =
            writeln!(out, "  Errors       {}", if errors.is_empty() { "none".to_owned() } else { errors.join(", ") });
        out
    }
}

/// Milliseconds, with sensible precision.
fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 1.0 {
        format!("{value:.2} ms")
    } else {
        format!("{:.0} µs", value * 1000.0)
    }
}

/// A count with thousands separators.
fn group(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_articles_figures_and_more() {
        let mut records = Recorder::new();
        for n in 1..=1000 {
            records.answer("200", true, 100, Duration::from_millis(n), Duration::from_micros(n * 10));
        }
        records.error("connect: connection refused", Duration::ZERO, Duration::from_millis(1));
        let report = Report::new("http://x/", "http/1.1", 4, None, &records, Duration::from_secs(2));
        assert_eq!((report.requests, report.succeeded, report.failed), (1001, 1000, 1));
        assert!((report.qps - 500.5).abs() < 1e-9);
        assert!((report.latency_ms.p50 - 5.0).abs() < 0.01, "{:?}", report.latency_ms);
        assert!((report.latency_ms.max - 10.0).abs() < 0.02);
        let text = report.text();
        assert!(text.contains("1,001 total, 1,000 succeeded, 1 failed (99.90% success)"), "{text}");
        assert!(text.contains("connect: connection refused: 1"), "{text}");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
