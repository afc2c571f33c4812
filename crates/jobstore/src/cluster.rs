//! Gateways sharing one store: who is there ([`Member`], kept by heartbeats) and what they tell
//! each other through it ([`Signal`]: jobs were queued, jobs changed), so that a job accepted on
//! one gateway is claimed at once by another and a client waiting on one gateway hears of a job
//! that ran on another.

use crate::{model::Micros, store::StoreError};
use serde::Serialize;

/// A gateway on the store, as its last heartbeat recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its name as a lease owner (`[jobs] node_id`).
    pub id: String,
    /// Where it serves clients, as it advertises itself.
    pub address: String,
    /// When it started, in microseconds since the Unix epoch.
    pub started_at: Micros,
    /// Its last heartbeat.
    pub last_seen: Micros,
}

/// What one gateway tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Jobs were queued (accepted, retried, rescued or resumed): whoever has room, claim.
    Queued,
    /// These jobs changed (started, reported progress, ended): whoever follows them, read them.
    Changed(Vec<String>),
}

/// A signal and the gateway that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// The sender's member id: a gateway ignores its own signals.
    pub from: String,
    /// What it said.
    pub signal: Signal,
}

/// The largest payload one PostgreSQL notification carries (its limit is 8000 bytes).
pub const MAX_PAYLOAD: usize = 7900;

impl Signal {
    /// The signal as notification payloads, each under [`MAX_PAYLOAD`] bytes: a line naming the
    /// kind (`q` or `c`), a line with the sender, then one job id per line.
    pub fn encode(&self, from: &str) -> Vec<String> {
        match self {
            Self::Queued => vec![format!("q\n{from}")],
            Self::Changed(ids) => {
                let mut payloads = Vec::new();
                let mut payload = String::new();
                for id in ids {
                    if payload.is_empty() {
                        payload = format!("c\n{from}");
                    }
                    payload.push('\n');
                    payload.push_str(id);
                    if payload.len() + 64 > MAX_PAYLOAD {
                        payloads.push(std::mem::take(&mut payload));
                    }
                }
                if !payload.is_empty() {
                    payloads.push(payload);
                }
                payloads
            }
        }
    }

    /// A payload [`Signal::encode`] wrote; `None` for anything else on the channel.
    pub fn decode(payload: &str) -> Option<Heard> {
        let mut lines = payload.split('\n');
        let kind = lines.next()?;
        let from = lines.next()?.to_owned();
        let signal = match kind {
            "q" => Self::Queued,
            "c" => Self::Changed(lines.filter(|id| !id.is_empty()).map(str::to_owned).collect()),
            _ => return None,
        };
        Some(Heard { from, signal })
    }
}

/// Signals from the other gateways on a store, as they come.
#[async_trait::async_trait]
pub trait SignalListener: Send {
    /// The next signal heard; `Ok(None)` when the connection carrying them was lost, so that
    /// signals sent meanwhile were missed (the next call connects again).
    async fn next(&mut self) -> Result<Option<Heard>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_survive_their_encoding_and_split_to_fit() {
        let queued = Signal::Queued.encode("gw-1");
        assert_eq!(Signal::decode(&queued[0]), Some(Heard { from: "gw-1".into(), signal: Signal::Queued }));
        let ids: Vec<String> = (0..1000).map(|n| format!("0190c2a4-7d1e-7000-8000-{n:012}")).collect();
        let payloads = Signal::Changed(ids.clone()).encode("gw-2");
        assert!(payloads.len() > 1 && payloads.iter().all(|payload| payload.len() <= MAX_PAYLOAD));
        let mut heard = Vec::new();
        for payload in &payloads {
            let Some(Heard { from, signal: Signal::Changed(part) }) = Signal::decode(payload) else {
                panic!("not a change: {payload}")
            };
            assert_eq!(from, "gw-2");
            heard.extend(part);
        }
        assert_eq!(heard, ids);
        assert!(Signal::Changed(Vec::new()).encode("gw").is_empty(), "nothing changed, nothing sent");
        assert_eq!(Signal::decode("hello"), None);
        assert_eq!(Signal::decode("x\ngw"), None);
    }
}
