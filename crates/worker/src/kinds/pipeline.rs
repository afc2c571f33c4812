//! `pipeline`: a batch of order records through validate → transform → enrich, fanned out with
//! bounded concurrency and fanned back in, in input order, with every rejected record listed with
//! the stage and reason that rejected it.
//!
//! Payload: `{"records": [...], "concurrency": 8, "enrich_delay_ms": 0}`. A record is
//! `{"id": "o-1", "amount": 12.5, "currency": "eur", "email": " Ann@Example.com "}`.
//! Enrichment converts the amount to USD and adds the e-mail domain and a customer tier; its
//! optional delay stands for the lookup a real enrichment makes, which is why records are
//! processed concurrently.

use crate::{JobKind, PoolKind, Work, json_output};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

const MAX_RECORDS: usize = 100_000;
const MAX_CONCURRENCY: usize = 256;
const MAX_ENRICH_DELAY_MS: u64 = 1_000;

/// The `pipeline` kind.
pub struct Pipeline;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The payload.
pub struct Input {
    records: Vec<Value>,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default)]
    enrich_delay_ms: u64,
}

fn default_concurrency() -> usize {
    8
}

/// A record that passed validation.
struct Valid {
    id: Value,
    amount: f64,
    currency: String,
    email: String,
}

/// A record after transformation: canonical forms.
struct Transformed {
    id: Value,
    amount: f64,
    currency: &'static str,
    email: String,
}

#[derive(Serialize)]
struct Enriched {
    id: Value,
    amount: f64,
    currency: &'static str,
    email: String,
    amount_usd: f64,
    email_domain: String,
    tier: &'static str,
}

#[derive(Serialize)]
struct Rejected {
    index: usize,
    id: Value,
    stage: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct Output {
    records: Vec<Enriched>,
    rejected: Vec<Rejected>,
    accepted: usize,
    rejected_count: usize,
    concurrency: usize,
    peak_in_flight: usize,
}

/// Currencies the enrichment knows, with their value in US dollars.
const USD_RATES: [(&str, f64); 5] = [("USD", 1.0), ("EUR", 1.08), ("GBP", 1.27), ("JPY", 0.0067), ("CNY", 0.14)];

fn validate(record: &Value) -> Result<Valid, String> {
    let object = record.as_object().ok_or("a record must be a JSON object")?;
    let id = match object.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        Some(_) => return Err("id must be a string or a number".into()),
        None => return Err("id is missing".into()),
    };
    let amount = object.get("amount").and_then(Value::as_f64).ok_or("amount must be a number")?;
    if !(amount.is_finite() && amount > 0.0) {
        return Err(format!("amount must be positive (got {amount})"));
    }
    let currency = object.get("currency").and_then(Value::as_str).ok_or("currency must be a string")?.to_owned();
    let email = object.get("email").and_then(Value::as_str).ok_or("email must be a string")?.to_owned();
    if !email.contains('@') {
        return Err(format!("email {email:?} has no @"));
    }
    Ok(Valid { id, amount, currency, email })
}

fn transform(valid: Valid) -> Result<Transformed, (Value, String)> {
    let wanted = valid.currency.trim().to_ascii_uppercase();
    let Some(&(currency, _)) = USD_RATES.iter().find(|(code, _)| *code == wanted) else {
        return Err((valid.id, format!("unsupported currency {:?}", valid.currency)));
    };
    Ok(Transformed {
        id: valid.id,
        amount: (valid.amount * 100.0).round() / 100.0,
        currency,
        email: valid.email.trim().to_lowercase(),
    })
}

async fn enrich(record: Transformed, delay: Duration) -> Enriched {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let rate = USD_RATES.iter().find(|(code, _)| *code == record.currency).map_or(1.0, |(_, rate)| *rate);
    let amount_usd = (record.amount * rate * 100.0).round() / 100.0;
    let email_domain = record.email.rsplit_once('@').map(|(_, domain)| domain.to_owned()).unwrap_or_default();
    let tier = match amount_usd {
        usd if usd >= 1000.0 => "gold",
        usd if usd >= 100.0 => "silver",
        _ => "bronze",
    };
    Enriched {
        id: record.id,
        amount: record.amount,
        currency: record.currency,
        email: record.email,
        amount_usd,
        email_domain,
        tier,
    }
}

/// One record through every stage.
async fn process(index: usize, record: Value, delay: Duration) -> Result<Enriched, Rejected> {
    let fallback_id = record.as_object().and_then(|object: &Map<String, Value>| object.get("id")).cloned();
    let valid = validate(&record).map_err(|reason| Rejected {
        index,
        id: fallback_id.unwrap_or(Value::Null),
        stage: "validate",
        reason,
    })?;
    let transformed = transform(valid).map_err(|(id, reason)| Rejected { index, id, stage: "transform", reason })?;
    Ok(enrich(transformed, delay).await)
}

impl JobKind for Pipeline {
    type Payload = Input;
    const NAME: &'static str = "pipeline";
    const POOL: PoolKind = PoolKind::Io;

    fn work(&self, input: Input) -> Result<Work, String> {
        let invalid = |reason: String| reason;
        if input.records.len() > MAX_RECORDS {
            return Err(invalid(format!("{} records; at most {MAX_RECORDS} per job", input.records.len())));
        }
        if !(1..=MAX_CONCURRENCY).contains(&input.concurrency) {
            return Err(invalid(format!("concurrency must be between 1 and {MAX_CONCURRENCY}")));
        }
        if input.enrich_delay_ms > MAX_ENRICH_DELAY_MS {
            return Err(invalid(format!("enrich_delay_ms must be at most {MAX_ENRICH_DELAY_MS}")));
        }
        let delay = Duration::from_millis(input.enrich_delay_ms);
        let concurrency = input.concurrency;
        Ok(Work::io(async move {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            // `buffered` runs up to `concurrency` records at once and yields results in input
            // order: fan-out and ordered fan-in in one step.
            let results: Vec<Result<Enriched, Rejected>> =
                futures_util::stream::iter(input.records.into_iter().enumerate())
                    .map(|(index, record)| {
                        let (in_flight, peak) = (Arc::clone(&in_flight), Arc::clone(&peak));
                        async move {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            let result = process(index, record, delay).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            result
                        }
                    })
                    .buffered(concurrency)
                    .collect()
                    .await;
            let mut output = Output {
                records: Vec::new(),
                rejected: Vec::new(),
                accepted: 0,
                rejected_count: 0,
                concurrency,
                peak_in_flight: peak.load(Ordering::SeqCst),
            };
            for result in results {
                match result {
                    Ok(record) => output.records.push(record),
                    Err(rejected) => output.rejected.push(rejected),
                }
            }
            output.accepted = output.records.len();
            output.rejected_count = output.rejected.len();
            json_output(&output)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobHandler as _;
    use bytes::Bytes;
    use serde_json::json;

    #[tokio::test]
    async fn records_come_back_in_order_with_rejections_explained() {
        let payload = json!({
            "records": [
                {"id": 1, "amount": 2000, "currency": "usd", "email": " Ann@Example.COM "},
                {"id": 2, "amount": -5, "currency": "usd", "email": "b@x.io"},
                {"id": "three", "amount": 100, "currency": "EUR", "email": "c@y.io"},
                {"id": 4, "amount": 10, "currency": "XYZ", "email": "d@z.io"},
                "not an object",
                {"amount": 1, "currency": "USD", "email": "e@z.io"},
                {"id": 7, "amount": 1.234, "currency": "gbp", "email": "f@w.io"}
            ],
            "concurrency": 3
        });
        let Work::Io(work) = Pipeline.prepare(Bytes::from(payload.to_string())).unwrap() else { panic!("io work") };
        let output: Value = serde_json::from_slice(&work.await.unwrap()).unwrap();
        let ids: Vec<_> = output["records"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, [json!(1), json!("three"), json!(7)]);
        assert_eq!(output["records"][0]["email"], "ann@example.com");
        assert_eq!(output["records"][0]["email_domain"], "example.com");
        assert_eq!(output["records"][0]["tier"], "gold");
        assert_eq!(output["records"][1]["amount_usd"], 108.0);
        assert_eq!(output["records"][2]["amount"], 1.23);
        let rejected: Vec<_> = output["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["index"].as_u64().unwrap(), r["stage"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            rejected,
            [(1, "validate".into()), (3, "transform".into()), (4, "validate".into()), (5, "validate".into())]
        );
        assert_eq!(output["rejected"][0]["reason"], "amount must be positive (got -5)");
        assert_eq!(output["rejected"][3]["reason"], "id is missing");
        assert_eq!((output["accepted"].as_u64(), output["rejected_count"].as_u64()), (Some(3), Some(4)));
    }

    #[test]
    fn bad_settings_are_refused() {
        for payload in [r#"{"records": [], "concurrency": 0}"#, r#"{"records": [], "enrich_delay_ms": 5000}"#, r#"{}"#]
        {
            assert!(Pipeline.prepare(Bytes::from(payload)).is_err(), "{payload}");
        }
    }
}
