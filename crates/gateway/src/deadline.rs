//! A request's time budget: the client's `Request-Timeout` header (seconds), else the route's
//! default, never more than `max_request_timeout`.

use crate::problem::Problem;
use http::HeaderMap;
use std::time::Duration;

/// The header a client sets its budget with, in seconds (`2`, `0.25`).
pub const REQUEST_TIMEOUT: &str = "request-timeout";

/// The budget for a request with `headers`: the header's value if present (capped at `max`),
/// else `default`. A value that is not a non-negative number of seconds is a 400.
pub fn budget(headers: &HeaderMap, default: Duration, max: Duration) -> Result<Duration, Problem> {
    let Some(value) = headers.get(REQUEST_TIMEOUT) else {
        return Ok(default);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let seconds: f64 = text.parse().map_err(|_| invalid(text))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(invalid(text));
    }
    Ok(Duration::try_from_secs_f64(seconds).unwrap_or(max).min(max))
}

fn invalid(text: &str) -> Problem {
    Problem::bad_request(format!("Request-Timeout must be a number of seconds, like 2 or 0.5 (got {text:?})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_TIMEOUT, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_header_wins_up_to_the_maximum() {
        let (default, max) = (Duration::from_secs(30), Duration::from_secs(60));
        assert_eq!(budget(&HeaderMap::new(), default, max).unwrap(), default);
        assert_eq!(budget(&headers("0.25"), default, max).unwrap(), Duration::from_millis(250));
        assert_eq!(budget(&headers("0"), default, max).unwrap(), Duration::ZERO);
        assert_eq!(budget(&headers("3600"), default, max).unwrap(), max);
        for bad in ["soon", "-1", "NaN", ""] {
            assert!(budget(&headers(bad), default, max).is_err(), "{bad:?}");
        }
    }
}
