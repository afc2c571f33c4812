//! How the console writes times, ages, durations and counts.

use rampart_jobs::durable::model::Micros;

/// A moment as `2026-12-02 18:30:05 UTC`, to the second.
pub(super) fn time(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map_or_else(|| "—".to_owned(), |time| time.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// A moment in RFC 3339, for `<time datetime=...>`.
pub(super) fn machine_time(micros: Micros) -> String {
    rampart_jobs::durable::model::rfc3339(micros)
}

/// How long something has waited, in the largest unit that keeps it readable.
pub(super) fn age(seconds: f64) -> String {
    match seconds {
        s if s < 10.0 => format!("{s:.1} s"),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} d", s / 86_400.0),
    }
}

/// A duration in milliseconds, or a dash when there is none.
pub(super) fn millis(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".to_owned(),
        Some(s) if s < 0.01 => format!("{:.2} ms", s * 1000.0),
        Some(s) if s < 10.0 => format!("{:.1} ms", s * 1000.0),
        Some(s) => format!("{s:.1} s"),
    }
}

/// The time between two moments, as [`millis`] writes it.
pub(super) fn between(start: Micros, end: Micros) -> String {
    #[allow(clippy::cast_precision_loss)] // durations far below 2^52 µs
    millis(Some(end.saturating_sub(start).max(0) as f64 / 1e6))
}

/// A count with thousands separated: 1,000,000.
pub(super) fn count(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        grouped.push('-');
    }
    for (n, digit) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A rate per second with one decimal below 10.
pub(super) fn rate(per_second: f64) -> String {
    if per_second < 10.0 { format!("{per_second:.1}") } else { format!("{per_second:.0}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_values_for_people() {
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(999), "999");
        assert_eq!(count(-1234), "-1,234");
        assert_eq!(age(3.25), "3.2 s");
        assert_eq!(age(600.0), "10 min");
        assert_eq!(millis(Some(0.0019)), "1.90 ms");
        assert_eq!(millis(None), "—");
        assert_eq!(time(1_764_700_205_000_000), "2025-12-02 18:30:05 UTC");
        assert_eq!(rate(2.345), "2.3");
    }
}
