//! Reading back this process's own Prometheus text: the console charts the same counters and
//! histograms `/metrics` exports, so the two can never disagree.

/// One sample line: a metric's name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Line<'a> {
    /// The metric's name (with `_bucket`, `_sum` or `_count` for a histogram's parts).
    pub(super) name: &'a str,
    /// `key="value"` pairs, in order, values unescaped only of `\"` and `\\`.
    pub(super) labels: Vec<(&'a str, String)>,
    /// The value.
    pub(super) value: f64,
}

impl Line<'_> {
    /// The value of label `key`, if the line has it.
    pub(super) fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(name, _)| *name == key).map(|(_, value)| value.as_str())
    }
}

/// Every sample line of `text` that parses; comments and malformed lines are skipped.
pub(super) fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.lines().filter(|line| !line.starts_with('#')).filter_map(parse)
}

fn parse(line: &str) -> Option<Line<'_>> {
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some(Line { name: series, labels: Vec::new(), value });
    };
    let mut labels = Vec::new();
    let mut rest = rest.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut label = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => label.push(chars.next()?.1),
                (at, '"') => break at,
                (_, other) => label.push(other),
            }
        };
        labels.push((key.trim_start_matches(','), label));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some(Line { name, labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# TYPE x counter\nrampart_jobs_accepted_total 12\n\
                    rampart_http_requests_total{route=\"/api/jobs\",method=\"POST\",status=\"202\"} 7\n\
                    rampart_job_pickup_seconds_bucket{le=\"+Inf\"} 3\nweird{a=\"q\\\"uote\"} 1.5\nbroken{a=\"x\" 2\n";
        let lines: Vec<Line<'_>> = lines(text).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!((lines[0].name, lines[0].value), ("rampart_jobs_accepted_total", 12.0));
        assert_eq!(lines[1].label("route"), Some("/api/jobs"));
        assert_eq!(lines[1].label("status"), Some("202"));
        assert_eq!(lines[2].label("le"), Some("+Inf"));
        assert_eq!(lines[3].label("a"), Some("q\"uote"));
        assert_eq!(lines[3].value, 1.5);
    }
}
