//! An example Rampart service: one job kind, `wordcount`, added to the worker library through the
//! `JobHandler` trait. The crate's binary serves it over gRPC like any worker, and the gateway
//! routes the kind here by configuration (`[[pools]]`).

use bytes::Bytes;
use rampart_worker::{InvalidPayload, JobFailure, JobHandler, PoolKind, Work, json_output, parse_payload};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The most text one job may count, in bytes.
const MAX_TEXT: usize = 10 << 20;

/// `wordcount {"text", "top"}`: counts words (case-insensitive) and lists the most frequent.
pub struct WordCount;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    text: String,
    #[serde(default = "default_top")]
    top: usize,
}

fn default_top() -> usize {
    3
}

#[derive(Serialize, Debug, PartialEq)]
struct Output {
    words: usize,
    unique: usize,
    top: Vec<(String, usize)>,
}

impl JobHandler for WordCount {
    fn kind(&self) -> &str {
        "wordcount"
    }

    fn pool(&self) -> PoolKind {
        PoolKind::Cpu
    }

    fn prepare(&self, payload: Bytes) -> Result<Work, InvalidPayload> {
        let Input { text, top } = parse_payload(self.kind(), &payload)?;
        if text.len() > MAX_TEXT {
            return Err(InvalidPayload { kind: self.kind().into(), reason: format!("text is over {MAX_TEXT} bytes") });
        }
        Ok(Work::cpu(move |cancel| {
            let mut counts: HashMap<String, usize> = HashMap::new();
            let mut words = 0;
            for (index, word) in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).enumerate() {
                if index % 100_000 == 0 && cancel.is_cancelled() {
                    return Err(JobFailure::new("cancelled"));
                }
                *counts.entry(word.to_lowercase()).or_default() += 1;
                words += 1;
            }
            let mut ranked: Vec<(String, usize)> = counts.iter().map(|(word, n)| (word.clone(), *n)).collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            ranked.truncate(top);
            json_output(&Output { words, unique: counts.len(), top: ranked })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_case_insensitively() {
        let Work::Cpu(work) =
            WordCount.prepare(Bytes::from(r#"{"text": "The cat, the hat. THE end!", "top": 2}"#)).unwrap()
        else {
            panic!("cpu work")
        };
        let output = work(&Default::default()).unwrap();
        assert_eq!(&output[..], br#"{"words":6,"unique":4,"top":[["the",3],["cat",1]]}"#);
    }
}
