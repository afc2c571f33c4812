//! Prometheus metrics: one process-wide recorder for the `metrics` facade, rendered as
//! Prometheus text on demand (the admin listener serves it; nothing listens on its own).
//!
//! Every `*_seconds` metric is a histogram with [`LATENCY_BUCKETS`], never a summary, so
//! quantiles can be aggregated across instances.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Histogram buckets for latencies, in seconds: 100 µs to 30 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> Result<&'static PrometheusHandle, MetricsError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|error| MetricsError(error.to_string()))?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    // A second installer racing this one loses harmlessly: the first recorder stays, and so
    // does the first handle.
    if metrics::set_global_recorder(recorder).is_ok() {
        let _ = HANDLE.set(handle);
    }
    HANDLE.get().ok_or_else(|| MetricsError("another metrics recorder was installed first".into()))
}

/// Renders every metric as Prometheus text (empty if no recorder is installed).
pub fn render() -> String {
    HANDLE
        .get()
        .map(|handle| {
            handle.run_upkeep();
            handle.render()
        })
        .unwrap_or_default()
}

/// Drains histogram buffers so they do not grow between scrapes; call every few seconds.
pub fn upkeep() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

/// Records the process's own figures (memory, CPU time, uptime) and its tokio runtimes' as
/// gauges; call just before rendering.
pub fn record_process(started: std::time::Instant) {
    if let Some(memory) = crate::process::memory_usage() {
        #[allow(clippy::cast_precision_loss)] // gauges are f64; byte counts far below 2^52
        {
            metrics::gauge!("rampart_process_resident_memory_bytes").set(memory.resident_bytes as f64);
            metrics::gauge!("rampart_process_virtual_memory_bytes").set(memory.virtual_bytes as f64);
        }
    }
    metrics::gauge!("rampart_process_uptime_seconds").set(started.elapsed().as_secs_f64());
    if let Some(cpu) = crate::process::cpu_time() {
        metrics::gauge!("rampart_process_cpu_seconds").set(cpu.as_secs_f64());
    }
    crate::runtime_stats::record_metrics();
}

/// The most distinct label values [`intern`] keeps before answering `"other"`.
const MAX_INTERNED: usize = 1024;

/// A `'static` copy of a label value, made once per distinct value, so that recording a metric
/// with it allocates nothing. Values past the first [`MAX_INTERNED`] distinct ones become
/// `"other"`, which bounds both the memory and the metric's cardinality.
pub fn intern(value: &str) -> &'static str {
    use std::{
        collections::HashSet,
        sync::{PoisonError, RwLock},
    };
    static VALUES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let values = VALUES.get_or_init(Default::default);
    if let Some(found) = values.read().unwrap_or_else(PoisonError::into_inner).get(value) {
        return found;
    }
    let mut values = values.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = values.get(value) {
        return found;
    }
    if values.len() >= MAX_INTERNED {
        return "other";
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    values.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_metrics_render_as_histograms_with_buckets() {
        install().unwrap();
        assert!(std::ptr::eq(install().unwrap(), install().unwrap()), "installing twice is harmless");
        metrics::histogram!("rampart_test_latency_seconds", "route" => "/x").record(0.003);
        metrics::counter!("rampart_test_total").increment(2);
        let text = render();
        assert!(text.contains("# TYPE rampart_test_latency_seconds histogram"), "{text}");
        assert!(text.contains(r#"rampart_test_latency_seconds_bucket{route="/x",le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"rampart_test_latency_seconds_bucket{route="/x",le="0.0025"} 0"#), "{text}");
        assert!(text.contains("rampart_test_total 2"), "{text}");
        assert!(!text.contains("quantile"), "no summaries: {text}");
    }

    #[test]
    fn interned_values_are_shared_and_bounded() {
        let first = intern("/api/process");
        assert!(std::ptr::eq(first, intern(&String::from("/api/process"))));
        for n in 0..MAX_INTERNED + 10 {
            intern(&format!("value-{n}"));
        }
        assert_eq!(intern("one-too-many"), "other");
        assert!(std::ptr::eq(first, intern("/api/process")), "earlier values stay");
    }
}
