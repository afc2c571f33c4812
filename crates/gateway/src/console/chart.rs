//! Charts drawn on the server as SVG: no script and no library, so they show with JavaScript
//! off, and a live update swaps the whole drawing.

use super::telemetry::{HISTORY, Rates};
use std::{fmt::Write as _, time::Instant};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 10.0;

/// A series: its name, the class that colours it (see `console.css`) and its value.
type Series = (&'static str, &'static str, fn(&Rates) -> f64);

/// The series drawn.
const SERIES: [Series; 3] = [
    ("accepted", "series-accepted", |rates| rates.accepted),
    ("completed", "series-completed", |rates| rates.completed),
    ("failed", "series-failed", |rates| rates.failed),
];

/// Jobs accepted, completed and failed per second over the last 15 minutes, as an SVG
/// element; `series` is each interval's end and rates, oldest first.
pub(super) fn job_rates(series: &[(Instant, Rates)], now: Instant) -> String {
    let top = series.iter().flat_map(|(_, rates)| SERIES.map(|(_, _, value)| value(rates))).fold(0.0, f64::max);
    let scale = nice_ceiling(top);
    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Jobs accepted, completed and failed per second, last 15 minutes; peak {top:.1}/s">"#
    );
    let plot_height = HEIGHT - BOTTOM - TOP;
    for step in 0..=4 {
        let value = scale * f64::from(step) / 4.0;
        let y = TOP + plot_height * (1.0 - f64::from(step) / 4.0);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{WIDTH}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            short_number(value)
        );
    }
    for (minutes, label) in [(15.0, "−15 min"), (10.0, "−10"), (5.0, "−5"), (0.0, "now")] {
        let x = x_of(minutes * 60.0);
        let anchor = if minutes == 0.0 { "end" } else { "middle" };
        let _ =
            write!(svg, r#"<text class="axis" x="{x:.1}" y="{}" text-anchor="{anchor}">{label}</text>"#, HEIGHT - 6.0);
    }
    for (name, class, value) in SERIES {
        let mut points = String::new();
        for (at, rates) in series {
            let age = now.saturating_duration_since(*at).as_secs_f64();
            if age > HISTORY.as_secs_f64() {
                continue;
            }
            let y = TOP + plot_height * (1.0 - value(rates) / scale);
            let _ = write!(points, "{:.1},{y:.1} ", x_of(age));
        }
        let _ = write!(svg, r#"<polyline class="{class}" data-series="{name}" points="{}"/>"#, points.trim_end());
    }
    svg.push_str("</svg>");
    svg
}

/// Where a moment `age_seconds` ago falls on the x axis.
fn x_of(age_seconds: f64) -> f64 {
    let span = HISTORY.as_secs_f64();
    LEFT + (WIDTH - LEFT) * (1.0 - age_seconds.min(span) / span)
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `value` (1 for nothing).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 1.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|step| step * power).find(|nice| *nice >= value).unwrap_or(value)
}

/// `value` in a few characters: 950, 1.2k, 15k.
pub(super) fn short_number(value: f64) -> String {
    match value {
        v if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        v if v >= 1000.0 => format!("{:.1}k", v / 1000.0),
        v if v >= 10.0 || v == 0.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn scales_round_up_to_readable_steps() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(12_400.0), 20_000.0);
        assert_eq!(short_number(12_400.0), "12k");
        assert_eq!(short_number(1_250.0), "1.2k");
        assert_eq!(short_number(2.5), "2.5");
    }

    #[test]
    fn draws_each_series_within_the_frame() {
        let now = Instant::now();
        let rates = |accepted| Rates { accepted, completed: accepted / 2.0, ..Rates::default() };
        let series = [(now - Duration::from_secs(600), rates(100.0)), (now, rates(40.0))];
        let svg = job_rates(&series, now);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        for name in ["accepted", "completed", "failed"] {
            assert!(svg.contains(&format!("data-series=\"{name}\"")), "{svg}");
        }
        // The peak (100/s) touches the top of a 100/s scale; 10 minutes ago is a third of the way.
        let x = x_of(600.0);
        assert!(svg.contains(&format!("{x:.1},{TOP:.1}")), "{svg}");
        assert!(!svg.contains("NaN"));
    }
}
