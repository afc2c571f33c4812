//! Logs and traces, set up the same way by every binary.
//!
//! - Logs go to standard error: human-readable, or one JSON object per line with
//!   `RAMPART_LOG_FORMAT=json`; the level comes from `RUST_LOG` (`info` when unset or invalid).
//! - Traces are exported by OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: over gRPC, or HTTP/protobuf when
//!   `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`; the service name is `OTEL_SERVICE_NAME`, else
//!   the binary's own. Without an endpoint no span is exported and [`tracing_enabled`] is false, so
//!   hot paths skip building spans at all.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::{
    io::IsTerminal as _,
    sync::atomic::{AtomicBool, Ordering},
};
use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (an OTLP endpoint is configured).
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// The installed telemetry; [`Telemetry::shutdown`] sends the spans still buffered.
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the buffered spans and stops exporting. Call it from a multi-thread runtime (or
    /// outside one): the exporter may need the runtime to finish.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not send the last trace spans");
        }
    }
}

/// Installs logging, and trace export when an OTLP endpoint is configured; `service` names
/// this process in traces unless `OTEL_SERVICE_NAME` does. Must run inside the tokio runtime.
/// Calling it twice keeps the first set-up.
pub fn init(service: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("RAMPART_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    // A process whose supervisor died has no stderr left; it must still shut down cleanly rather
    // than panic reporting that it cannot log.
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .log_internal_errors(false)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .log_internal_errors(false)
            .boxed()
    };
    let (provider, error) = match exporter() {
        Ok(Some(exporter)) => {
            let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|name| !name.is_empty());
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(name.unwrap_or_else(|| service.to_owned()))
                .build();
            let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
            (Some(provider), None)
        }
        Ok(None) => (None, None),
        Err(error) => (None, Some(error)),
    };
    let traces = provider.as_ref().map(|provider| {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        tracing_opentelemetry::layer().with_tracer(provider.tracer("rampart"))
    });
    let installed = tracing_subscriber::registry().with(filter).with(logs).with(traces).try_init().is_ok();
    if installed && provider.is_some() {
        TRACING.store(true, Ordering::Relaxed);
    }
    if let Some(error) = error {
        tracing::error!(%error, "cannot export traces; carrying on without them");
    }
    Telemetry { provider: provider.filter(|_| installed) }
}

/// The span exporter the environment asks for, if any.
fn exporter() -> Result<Option<opentelemetry_otlp::SpanExporter>, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()));
    if !configured {
        return Ok(None);
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    let exporter = if protocol.starts_with("http") {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()?
    } else {
        opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?
    };
    Ok(Some(exporter))
}
