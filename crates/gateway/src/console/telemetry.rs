//! The console's memory of the last 15 minutes: every few seconds it samples this gateway's own
//! metrics (jobs accepted and ended, requests, rejections, pickup and run time histograms) and
//! keeps the samples, so rates and percentiles are differences between two of them.

use super::metric_text;
use rampart_common::shutdown::{Every, FirstTick};
use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// How often the metrics are sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How far back the samples go.
pub(super) const HISTORY: Duration = Duration::from_secs(15 * 60);

/// How far back percentiles look.
const PERCENTILE_WINDOW: Duration = Duration::from_secs(60);

/// A histogram's cumulative counts by upper bound, summed over its labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Buckets(BTreeMap<u64, f64>);

impl Buckets {
    fn add(&mut self, le: f64, count: f64) {
        *self.0.entry(le.to_bits()).or_default() += count;
    }

    /// The `q` quantile (0 to 1) of what was recorded after `earlier`, interpolated inside its
    /// bucket as Prometheus's `histogram_quantile` does; none if nothing was.
    pub(super) fn quantile_since(&self, earlier: &Self, q: f64) -> Option<f64> {
        let mut bounds: Vec<(f64, f64)> = self
            .0
            .iter()
            .map(|(bits, count)| (f64::from_bits(*bits), count - earlier.0.get(bits).copied().unwrap_or(0.0)))
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = bounds.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut below = (0.0, 0.0);
        for (le, count) in bounds {
            if count >= rank {
                if le.is_infinite() {
                    return Some(below.0);
                }
                let share = if count > below.1 { (rank - below.1) / (count - below.1) } else { 1.0 };
                return Some(below.0 + (le - below.0) * share);
            }
            below = (le, count);
        }
        None
    }
}

/// The totals read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    /// When.
    pub(super) at: Instant,
    /// Durable jobs accepted.
    pub(super) accepted: f64,
    /// Attempts that succeeded.
    pub(super) completed: f64,
    /// Attempts that failed (to be retried, or for good).
    pub(super) failed: f64,
    /// Requests answered on the public listener.
    pub(super) requests: f64,
    /// Of those, synchronous jobs (`/api/process`).
    pub(super) sync_requests: f64,
    /// Of those, answered with a 5xx status.
    pub(super) errors: f64,
    /// Requests refused, by reason.
    pub(super) rejections: BTreeMap<String, f64>,
    /// Time from acceptance to a job's first attempt.
    pub(super) pickup: Buckets,
    /// Time an attempt ran.
    pub(super) run: Buckets,
}

impl Sample {
    /// The totals in the Prometheus text `text`, read at `at`.
    pub(super) fn read(text: &str, at: Instant) -> Self {
        let mut sample = Self {
            at,
            accepted: 0.0,
            completed: 0.0,
            failed: 0.0,
            requests: 0.0,
            sync_requests: 0.0,
            errors: 0.0,
            rejections: BTreeMap::new(),
            pickup: Buckets::default(),
            run: Buckets::default(),
        };
        for line in metric_text::lines(text) {
            match line.name {
                "rampart_jobs_accepted_total" => sample.accepted += line.value,
                "rampart_job_attempts_total" => match line.label("outcome") {
                    Some("succeeded") => sample.completed += line.value,
                    Some("retrying" | "dead" | "failed") => sample.failed += line.value,
                    _ => {}
                },
                "rampart_http_requests_total" => {
                    sample.requests += line.value;
                    if line.label("route").is_some_and(|route| route.starts_with("/api/process")) {
                        sample.sync_requests += line.value;
                    }
                    if line.label("status").is_some_and(|status| status.starts_with('5')) {
                        sample.errors += line.value;
                    }
                }
                "rampart_rejections_total" => {
                    let reason = line.label("reason").unwrap_or("other").to_owned();
                    *sample.rejections.entry(reason).or_default() += line.value;
                }
                "rampart_job_pickup_seconds_bucket" => {
                    if let Some(le) = line.label("le").and_then(parse_bound) {
                        sample.pickup.add(le, line.value);
                    }
                }
                "rampart_job_attempt_seconds_bucket" => {
                    if let Some(le) = line.label("le").and_then(parse_bound) {
                        sample.run.add(le, line.value);
                    }
                }
                _ => {}
            }
        }
        sample
    }
}

fn parse_bound(text: &str) -> Option<f64> {
    if text == "+Inf" { Some(f64::INFINITY) } else { text.parse().ok() }
}

/// Per-second rates between two samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Rates {
    /// Jobs accepted per second.
    pub(super) accepted: f64,
    /// Attempts succeeded per second.
    pub(super) completed: f64,
    /// Attempts failed per second.
    pub(super) failed: f64,
    /// Requests per second.
    pub(super) requests: f64,
    /// Synchronous jobs per second.
    pub(super) sync_requests: f64,
    /// 5xx answers per second.
    pub(super) errors: f64,
    /// Rejections per second, by reason (reasons with none in the interval left out).
    pub(super) rejections: Vec<(String, f64)>,
}

impl Rates {
    /// The rates from `earlier` to `later`.
    pub(super) fn between(earlier: &Sample, later: &Sample) -> Self {
        let seconds = later.at.saturating_duration_since(earlier.at).as_secs_f64().max(1e-3);
        let rate = |a: f64, b: f64| ((b - a) / seconds).max(0.0);
        let rejections = later
            .rejections
            .iter()
            .map(|(reason, total)| {
                (reason.clone(), rate(earlier.rejections.get(reason).copied().unwrap_or(0.0), *total))
            })
            .filter(|(_, per_second)| *per_second > 0.0)
            .collect();
        Self {
            accepted: rate(earlier.accepted, later.accepted),
            completed: rate(earlier.completed, later.completed),
            failed: rate(earlier.failed, later.failed),
            requests: rate(earlier.requests, later.requests),
            sync_requests: rate(earlier.sync_requests, later.sync_requests),
            errors: rate(earlier.errors, later.errors),
            rejections,
        }
    }
}

/// p50 and p99 of a histogram over the last minute, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Percentiles {
    /// The median.
    pub(super) p50: Option<f64>,
    /// The 99th percentile.
    pub(super) p99: Option<f64>,
}

/// The samples of the last [`HISTORY`].
#[derive(Debug, Default)]
pub(super) struct Telemetry {
    samples: Mutex<VecDeque<Sample>>,
}

impl Telemetry {
    /// Keeps `sample`, forgetting those older than [`HISTORY`].
    pub(super) fn keep(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        while samples.front().is_some_and(|oldest| sample.at.saturating_duration_since(oldest.at) > HISTORY) {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Samples the process's metrics every [`SAMPLE_EVERY`] until `stop`.
    pub(super) async fn keep_sampling(self: std::sync::Arc<Self>, stop: CancellationToken) {
        let mut every = Every::new(SAMPLE_EVERY, FirstTick::Now, stop);
        while every.tick().await {
            self.keep(Sample::read(&rampart_common::metrics::render(), Instant::now()));
        }
    }

    /// The rates of each interval between samples, oldest first, with each interval's end.
    pub(super) fn series(&self) -> Vec<(Instant, Rates)> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.iter().zip(samples.iter().skip(1)).map(|(a, b)| (b.at, Rates::between(a, b))).collect()
    }

    /// The rates since the last sample and the pickup and run percentiles over the last
    /// minute, from one reading of the metrics now (so they are never older than this call).
    pub(super) fn now(&self) -> (Rates, Percentiles, Percentiles) {
        let now = Sample::read(&rampart_common::metrics::render(), Instant::now());
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        // The last sample far enough back to give a steady rate, else the oldest.
        let base = samples.iter().rev().find(|sample| now.at.saturating_duration_since(sample.at) >= SAMPLE_EVERY);
        let rates = base.or(samples.front()).map(|base| Rates::between(base, &now)).unwrap_or_default();
        let empty = Buckets::default();
        let since = samples
            .iter()
            .find(|sample| now.at.saturating_duration_since(sample.at) <= PERCENTILE_WINDOW)
            .map_or((&empty, &empty), |sample| (&sample.pickup, &sample.run));
        let of = |buckets: &Buckets, since: &Buckets| Percentiles {
            p50: buckets.quantile_since(since, 0.5),
            p99: buckets.quantile_since(since, 0.99),
        };
        (rates, of(&now.pickup, since.0), of(&now.run, since.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, accepted: u32, pickup_fast: u32, pickup_slow: u32) -> Sample {
        let text = format!(
            "rampart_jobs_accepted_total {accepted}\n\
             rampart_job_attempts_total{{kind=\"a\",outcome=\"succeeded\"}} 4\n\
             rampart_job_attempts_total{{kind=\"a\",outcome=\"dead\"}} 1\n\
             rampart_job_attempts_total{{kind=\"b\",outcome=\"retrying\"}} 2\n\
             rampart_http_requests_total{{route=\"/api/process\",method=\"POST\",status=\"200\"}} 10\n\
             rampart_http_requests_total{{route=\"/api/jobs\",method=\"POST\",status=\"503\"}} 3\n\
             rampart_rejections_total{{reason=\"rate_limited\"}} {accepted}\n\
             rampart_job_pickup_seconds_bucket{{le=\"0.001\"}} {pickup_fast}\n\
             rampart_job_pickup_seconds_bucket{{le=\"0.01\"}} {}\n\
             rampart_job_pickup_seconds_bucket{{le=\"+Inf\"}} {}\n",
            pickup_fast + pickup_slow,
            pickup_fast + pickup_slow
        );
        Sample::read(&text, at)
    }

    #[test]
    fn a_sample_sums_what_it_reads() {
        let read = sample(Instant::now(), 7, 1, 0);
        assert_eq!((read.accepted, read.completed, read.failed), (7.0, 4.0, 3.0));
        assert_eq!((read.requests, read.sync_requests, read.errors), (13.0, 10.0, 3.0));
        assert_eq!(read.rejections.get("rate_limited"), Some(&7.0));
    }

    #[test]
    fn rates_and_percentiles_come_from_differences() {
        let start = Instant::now();
        let earlier = sample(start, 10, 100, 0);
        let later = sample(start + Duration::from_secs(5), 60, 150, 50);
        let rates = Rates::between(&earlier, &later);
        assert_eq!(rates.accepted, 10.0);
        assert_eq!(rates.rejections, [("rate_limited".to_owned(), 10.0)]);
        // Since `earlier`: 50 under 1 ms and 50 between 1 and 10 ms.
        let p50 = later.pickup.quantile_since(&earlier.pickup, 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p99 = later.pickup.quantile_since(&earlier.pickup, 0.99).unwrap();
        assert!(p99 > 0.009 && p99 <= 0.01, "{p99}");
        assert_eq!(later.pickup.quantile_since(&later.pickup, 0.5), None, "nothing recorded in between");
    }

    #[test]
    fn history_is_bounded() {
        let telemetry = Telemetry::default();
        let start = Instant::now();
        for n in 0..400 {
            telemetry.keep(sample(start + SAMPLE_EVERY * n, n, 0, 0));
        }
        let kept = telemetry.series().len() + 1;
        assert_eq!(kept, usize::try_from(HISTORY.as_secs() / SAMPLE_EVERY.as_secs()).unwrap() + 1);
    }
}
