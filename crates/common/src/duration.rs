//! Human-friendly durations in configuration files: `"250ms"`, `"5s"`, `"2m"`.
//!
//! Use with `#[serde(with = "rampart_common::duration")]` on a `std::time::Duration` field.

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
use std::time::Duration;

/// Reads a duration written as text, for example `"1.5s"` or `"300ms"`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(D::Error::custom)
}

/// Writes a duration as text that [`deserialize`] reads back.
pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}

/// Parses a duration such as `"5s"`, `"250ms"` or `"1m 30s"`; a bare number is refused because
/// its unit would be a guess.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|error| format!("invalid duration {text:?} ({error}); write it like \"5s\" or \"250ms\""))
}

/// An optional duration written as text; absent means `None`. Use with
/// `#[serde(default, with = "rampart_common::duration::optional")]`.
pub mod optional {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes a duration as text; `None` is left out.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => super::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a duration written as text, for example `"1.5s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Sample {
        #[serde(with = "super")]
        timeout: Duration,
    }

    #[test]
    fn reads_units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn refuses_bare_numbers_and_garbage() {
        assert!(parse("5").is_err());
        assert!(parse("soon").is_err());
    }

    #[test]
    fn works_as_a_serde_field() {
        let sample: Sample = toml::from_str(r#"timeout = "3s""#).unwrap();
        assert_eq!(sample.timeout, Duration::from_secs(3));
        let error = toml::from_str::<Sample>(r#"timeout = "3 parsecs""#).err().unwrap();
        assert!(error.to_string().contains("invalid duration"), "{error}");
    }
}
