//! An example Rampart service: one job kind, `wordcount`, added to the worker library through the
//! `JobKind` trait. The crate's binary serves it over gRPC like any worker, and the gateway
//! routes the kind here by configuration (`[[pools]]`).

use rampart_worker::{JobFailure, JobKind, PoolKind, Work, json_output};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The most text one job may count, in bytes.
const MAX_TEXT: usize = 10 << 20;

/// `wordcount {"text", "top"}`: counts words (case-insensitive) and lists the most frequent.
pub struct WordCount;

/// The payload of `wordcount`: the text, and how many of the most frequent words to list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
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

impl JobKind for WordCount {
    type Payload = Input;
    const NAME: &'static str = "wordcount";
    const POOL: PoolKind = PoolKind::Cpu;

    fn work(&self, Input { text, top }: Input) -> Result<Work, String> {
        if text.len() > MAX_TEXT {
            return Err(format!("text is over {MAX_TEXT} bytes"));
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
    use bytes::Bytes;
    use rampart_worker::JobHandler as _;

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
