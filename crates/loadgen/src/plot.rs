//! An SVG of a run: the latency distribution by percentile (log scale towards the tail, as
//! HdrHistogram plots it) above throughput over time.

use crate::{record::TIMELINE_STEP, report::Report};
use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 75.0;
const GAP: f64 = 90.0;

/// The plot as SVG text.
pub fn svg(report: &Report) -> String {
    let height = TOP + 2.0 * PANEL_HEIGHT + GAP + 60.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let figures = format!(
        "{} loop, {} connections: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {:.2}% success",
        report.mode, report.connections, report.qps, report.latency_ms.p50, report.latency_ms.p99, report.success_rate
    );
    let _ =
        writeln!(out, r#"<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{}</text>"#, escape(&report.target));
    let _ = writeln!(out, r#"<text x="{LEFT}" y="42" font-size="13">{figures}</text>"#);
    latency_panel(&mut out, report, TOP);
    throughput_panel(&mut out, report, TOP + PANEL_HEIGHT + GAP);
    out.push_str("</svg>\n");
    out
}

/// x for a percentile: −log10(1 − p), so 90, 99, 99.9 … are evenly spaced.
fn nines(percentile: f64) -> f64 {
    -(1.0 - (percentile / 100.0).min(0.999_999)).log10()
}

fn latency_panel(out: &mut String, report: &Report, top: f64) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let max_x = nines(99.9999);
    let max_ms = report.distribution.iter().map(|point| point.ms).fold(0.0_f64, f64::max).max(0.001) * 1.05;
    let x = |percentile: f64| LEFT + plot_width * nines(percentile) / max_x;
    let y = |ms: f64| top + PANEL_HEIGHT * (1.0 - ms / max_ms);
    axes(out, top, "Latency (ms) by percentile, measured from when each request was due", max_ms, "ms");
    for (label, percentile) in
        [("0%", 0.0), ("90%", 90.0), ("99%", 99.0), ("99.9%", 99.9), ("99.99%", 99.99), ("99.999%", 99.999)]
    {
        let at = x(percentile);
        let _ = writeln!(
            out,
            r##"<line x1="{at:.1}" y1="{top}" x2="{at:.1}" y2="{}" stroke="#eee"/>"##,
            top + PANEL_HEIGHT
        );
        let _ =
            writeln!(out, r#"<text x="{at:.1}" y="{}" text-anchor="middle">{label}</text>"#, top + PANEL_HEIGHT + 16.0);
    }
    let points: Vec<String> =
        report.distribution.iter().map(|point| format!("{:.1},{:.1}", x(point.percentile), y(point.ms))).collect();
    let _ =
        writeln!(out, r##"<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{}"/>"##, points.join(" "));
}

fn throughput_panel(out: &mut String, report: &Report, top: f64) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let steps = report.throughput_timeline.len().max(1);
    let max_rate = report.throughput_timeline.iter().copied().fold(0.0_f64, f64::max).max(1.0) * 1.1;
    #[allow(clippy::cast_precision_loss)]
    let x = |step: usize| LEFT + plot_width * step as f64 / steps as f64;
    let y = |rate: f64| top + PANEL_HEIGHT * (1.0 - rate / max_rate);
    axes(out, top, "Throughput (requests/s) over time", max_rate, "/s");
    let seconds = TIMELINE_STEP.as_secs_f64() * steps as f64;
    for tick in 0..=5 {
        let at = LEFT + plot_width * f64::from(tick) / 5.0;
        let label = seconds * f64::from(tick) / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{at:.1}" y="{}" text-anchor="middle">{label:.1} s</text>"#,
            top + PANEL_HEIGHT + 16.0
        );
    }
    let mut points = Vec::with_capacity(2 * steps);
    for (step, rate) in report.throughput_timeline.iter().enumerate() {
        points.push(format!("{:.1},{:.1}", x(step), y(*rate)));
        points.push(format!("{:.1},{:.1}", x(step + 1), y(*rate)));
    }
    let _ =
        writeln!(out, r##"<polyline fill="none" stroke="#2471a3" stroke-width="1.5" points="{}"/>"##, points.join(" "));
    if let Some(rate) = report.rate_asked {
        let at = y(rate);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{}" y2="{at:.1}" stroke="#27ae60" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#27ae60">asked {rate}/s</text>"##,
            WIDTH - RIGHT,
            WIDTH - RIGHT,
            at - 4.0
        );
    }
}

/// A panel's frame, title and y ticks.
fn axes(out: &mut String, top: f64, title: &str, max: f64, unit: &str) {
    let bottom = top + PANEL_HEIGHT;
    let _ = writeln!(out, r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#, top - 10.0, escape(title));
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL_HEIGHT}" fill="none" stroke="#999"/>"##,
        WIDTH - LEFT - RIGHT
    );
    for tick in 0..=4 {
        let value = max * f64::from(tick) / 4.0;
        let at = bottom - PANEL_HEIGHT * f64::from(tick) / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}{unit}</text>"#,
            LEFT - 6.0,
            at + 4.0,
            short(value)
        );
        let _ =
            writeln!(out, r##"<line x1="{LEFT}" y1="{at:.1}" x2="{}" y2="{at:.1}" stroke="#eee"/>"##, WIDTH - RIGHT);
    }
}

fn short(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
