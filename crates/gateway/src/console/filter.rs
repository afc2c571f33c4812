//! The jobs list's filter as the console's forms send it: every field optional, empty meaning
//! not given, times as RFC 3339 or as a browser's `datetime-local` value (read as UTC).

use rampart_jobs::durable::model::{JobFilter, Micros, Status, parse_rfc3339};
use serde::Deserialize;
use std::fmt::Write as _;

/// The longest text a filter field takes.
const MAX_FIELD: usize = 256;

/// The filter fields of the jobs list and of its bulk actions.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct FilterForm {
    /// A status, or empty for any.
    #[serde(default)]
    pub(super) status: String,
    /// A kind.
    #[serde(default)]
    pub(super) kind: String,
    /// A tenant.
    #[serde(default)]
    pub(super) tenant: String,
    /// Accepted after.
    #[serde(default)]
    pub(super) from: String,
    /// Accepted before.
    #[serde(default)]
    pub(super) to: String,
    /// The start of an id or idempotency key.
    #[serde(default)]
    pub(super) q: String,
}

impl FilterForm {
    /// The store filter, or what is wrong with a field.
    pub(super) fn filter(&self) -> Result<JobFilter, String> {
        for (name, value) in self.fields() {
            if value.len() > MAX_FIELD {
                return Err(format!("{name} is longer than {MAX_FIELD} bytes"));
            }
        }
        let statuses = match self.status.trim() {
            "" => Vec::new(),
            name => vec![Status::parse(name).ok_or_else(|| format!("there is no status {name:?}"))?],
        };
        let text = |value: &str| Some(value.trim().to_owned()).filter(|value| !value.is_empty());
        Ok(JobFilter {
            statuses,
            kind: text(&self.kind),
            tenant: text(&self.tenant),
            created_after: time("from", &self.from)?,
            created_before: time("to", &self.to)?,
            text: text(&self.q),
            ..JobFilter::default()
        })
    }

    /// The fields by name, for links and hidden form fields.
    pub(super) fn fields(&self) -> [(&'static str, &str); 6] {
        [
            ("status", &self.status),
            ("kind", &self.kind),
            ("tenant", &self.tenant),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
        ]
    }

    /// The fields that are given, as `name=value&...` (percent-encoded).
    pub(super) fn query(&self) -> String {
        let mut query = String::new();
        for (name, value) in self.fields().into_iter().filter(|(_, value)| !value.trim().is_empty()) {
            if !query.is_empty() {
                query.push('&');
            }
            let _ = write!(query, "{name}={}", rampart_common::http::cookie::encode_component(value.trim()));
        }
        query
    }

    /// What the filter selects, in words.
    pub(super) fn describe(&self) -> String {
        let given: Vec<String> = self
            .fields()
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(name, value)| format!("{name} = {}", value.trim()))
            .collect();
        if given.is_empty() { "every job".to_owned() } else { given.join(", ") }
    }
}

/// A form's time: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` taken as UTC.
pub(super) fn time(name: &str, value: &str) -> Result<Option<Micros>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(micros) = parse_rfc3339(value) {
        return Ok(Some(micros));
    }
    let local = if value.len() == 16 { format!("{value}:00Z") } else { format!("{value}Z") };
    parse_rfc3339(&local)
        .map(Some)
        .map_err(|_| format!("{name}: {value:?} is not a time; write it like 2026-12-02T09:30"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_mean_any_and_times_read_both_ways() {
        let form = FilterForm { status: "dead".into(), from: "2026-12-02T09:30".into(), ..FilterForm::default() };
        let filter = form.filter().unwrap();
        assert_eq!(filter.statuses, [Status::Dead]);
        assert_eq!(filter.created_after, parse_rfc3339("2026-12-02T09:30:00Z").ok());
        assert_eq!((filter.kind, filter.text), (None, None));
        assert_eq!(form.query(), "status=dead&from=2026-12-02T09%3A30");
        assert!(FilterForm { status: "zombie".into(), ..FilterForm::default() }.filter().is_err());
        assert!(FilterForm { to: "yesterday".into(), ..FilterForm::default() }.filter().is_err());
        assert_eq!(FilterForm::default().describe(), "every job");
    }
}
