//! `[[cron]]`: durable jobs enqueued on a schedule. Every gateway runs the same scheduler; a
//! tick's job carries the idempotency key `cron:NAME:TICK`, which the store holds unique, so however
//! many gateways share the store, restart or crash, each tick gets exactly one job. The store
//! also keeps each entry's last enqueued tick: a scheduler starting up makes up the ticks that
//! passed while no gateway ran, as the entry's `catch_up` says.

use super::{
    Jobs,
    model::{Micros, NewJob, now_micros, rfc3339},
};
use crate::config::{CatchUp, CronConfig, JobsConfig};
use bytes::Bytes;
use chrono::{DateTime, TimeZone as _, Utc};
use std::{collections::HashMap, str::FromStr as _, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// The most missed ticks of one entry made up at once: a schedule every second left alone for a
/// day would otherwise enqueue 86,400 jobs.
const MAX_MADE_UP: usize = 1000;

/// A `[[cron]]` entry, its expression parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The entry as configured.
    pub entry: CronConfig,
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl Schedule {
    /// Reads an entry's expression and time zone; on error, the field and why.
    pub fn parse(entry: &CronConfig) -> Result<Self, (&'static str, String)> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(&entry.schedule)
            .map_err(|error| ("schedule", format!("{:?} is not a cron expression: {error}", entry.schedule)))?;
        let zone = chrono_tz::Tz::from_str(&entry.time_zone).map_err(|_| {
            ("time_zone", format!("{:?} is not an IANA time zone such as Europe/Paris", entry.time_zone))
        })?;
        let schedule = Self { entry: entry.clone(), cron, zone };
        if schedule.next_after(now_micros()).is_none() {
            return Err(("schedule", format!("{:?} never fires", entry.schedule)));
        }
        Ok(schedule)
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: Micros) -> Option<Micros> {
        let after = Utc.timestamp_micros(after).single()?.with_timezone(&self.zone);
        let next: DateTime<chrono_tz::Tz> = self.cron.find_next_occurrence(&after, false).ok()?;
        Some(next.timestamp_micros())
    }

    /// The ticks after `last` up to `now` to enqueue now, oldest first, as `catch_up` says; none
    /// for an entry that never ran (it starts from now).
    pub fn missed(&self, last: Option<Micros>, now: Micros) -> Vec<Micros> {
        let Some(last) = last else { return Vec::new() };
        let window_start = now.saturating_sub(micros(self.entry.max_catch_up));
        let mut ticks = Vec::new();
        // Ticks before the window are never made up, so the walk starts at the window.
        let mut at = last.max(window_start.saturating_sub(1));
        while let Some(tick) = self.next_after(at).filter(|tick| *tick <= now) {
            if ticks.len() == MAX_MADE_UP {
                ticks.remove(0);
            }
            ticks.push(tick);
            at = tick;
        }
        match self.entry.catch_up {
            CatchUp::None => Vec::new(),
            CatchUp::Latest => ticks.pop().into_iter().collect(),
            CatchUp::All => ticks,
        }
    }

    /// The job for `tick`, accepted at `now`: due at its tick, keyed by the entry and the tick.
    fn job(&self, tick: Micros, now: Micros, jobs: &JobsConfig) -> NewJob {
        let entry = &self.entry;
        let payload = entry.payload.as_ref().map_or_else(|| "null".to_owned(), ToString::to_string);
        let timeout = entry.timeout.unwrap_or(jobs.default_timeout);
        NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            kind: entry.kind.clone(),
            payload: Bytes::from(payload),
            priority: entry.priority,
            max_attempts: i32::try_from(entry.max_attempts.unwrap_or(jobs.max_attempts)).unwrap_or(i32::MAX),
            timeout_ms: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
            idempotency_key: Some(tick_key(&entry.name, tick)),
            fingerprint: None,
            tenant: rampart_jobstore::rules::DEFAULT_TENANT.to_owned(),
            created_at: now,
            run_after: tick.min(now),
            start_by: None,
            claim: None,
            unique: None,
            traceparent: None,
        }
    }
}

/// The idempotency key of an entry's tick. Client keys always carry their scope and a space, so
/// none can be mistaken for one of these.
fn tick_key(name: &str, tick: Micros) -> String {
    format!("cron:{name}:{}", rfc3339(tick))
}

fn micros(duration: Duration) -> Micros {
    i64::try_from(duration.as_micros()).unwrap_or(Micros::MAX)
}

/// An entry as `GET /api/cron` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CronView {
    /// Its name.
    pub name: String,
    /// Its expression.
    pub schedule: String,
    /// The time zone it is read in.
    pub time_zone: String,
    /// The job kind it enqueues.
    pub kind: String,
    /// What it does with missed ticks.
    pub catch_up: &'static str,
    /// The last tick enqueued, by any gateway.
    pub last_run: Option<String>,
    /// The next tick.
    pub next_run: Option<String>,
}

/// Every entry of `entries`, parsed; the error names the entry and field at fault.
pub(super) fn parse_all(entries: &[CronConfig]) -> Result<Vec<Arc<Schedule>>, String> {
    entries
        .iter()
        .map(|entry| {
            Schedule::parse(entry)
                .map(Arc::new)
                .map_err(|(field, reason)| format!("cron entry {:?}: {field}: {reason}", entry.name))
        })
        .collect()
}

impl Jobs {
    /// Schedules `entries` from now on instead of the entries in force (a reload). An entry that
    /// stays as it was keeps its next tick; a new or changed one starts from its next tick after
    /// now. The error names the entry at fault, and then nothing changes.
    pub fn set_cron(&self, entries: &[CronConfig]) -> Result<(), String> {
        self.schedules.store(Arc::new(parse_all(entries)?));
        self.cron_changed.notify_one();
        Ok(())
    }

    /// The configured entries with their last and next runs.
    pub async fn cron_entries(&self) -> Result<Vec<CronView>, super::store::StoreError> {
        let store = Arc::clone(self.store());
        let last: HashMap<String, Micros> =
            self.on_main(async move { store.cron_runs().await }).await?.into_iter().collect();
        let now = now_micros();
        Ok(self
            .schedules
            .load()
            .iter()
            .map(|schedule| {
                let entry = &schedule.entry;
                CronView {
                    name: entry.name.clone(),
                    schedule: entry.schedule.clone(),
                    time_zone: entry.time_zone.clone(),
                    kind: entry.kind.clone(),
                    catch_up: entry.catch_up.as_str(),
                    last_run: last.get(&entry.name).copied().map(rfc3339),
                    next_run: schedule.next_after(now).map(rfc3339),
                }
            })
            .collect())
    }
}

/// Enqueues every entry's ticks until `stop`: first the missed ones, then each as it comes,
/// taking up new entries as a reload sets them.
pub(super) async fn run(jobs: Arc<Jobs>, stop: CancellationToken) {
    let mut schedules = jobs.schedules.load_full();
    while schedules.is_empty() {
        tokio::select! {
            () = stop.cancelled() => return,
            () = jobs.cron_changed.notified() => schedules = jobs.schedules.load_full(),
        }
    }
    let last: HashMap<String, Micros> = loop {
        match jobs.store().cron_runs().await {
            Ok(runs) => break runs.into_iter().collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the cron entries' last runs; trying again in 1s");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let now = now_micros();
    let mut next: Vec<(Arc<Schedule>, Option<Micros>)> = Vec::with_capacity(schedules.len());
    for schedule in schedules.iter() {
        let missed = schedule.missed(last.get(schedule.name()).copied(), now);
        if !missed.is_empty() {
            tracing::info!(
                entry = schedule.name(),
                ticks = missed.len(),
                "making up cron ticks missed while no gateway ran"
            );
        }
        for tick in missed {
            enqueue(&jobs, schedule, tick, &stop).await;
        }
        next.push((Arc::clone(schedule), schedule.next_after(now)));
    }
    loop {
        let soonest = next.iter().filter_map(|(_, due)| *due).min();
        let wait = soonest
            .map(|soonest| Duration::from_micros(u64::try_from(soonest.saturating_sub(now_micros())).unwrap_or(0)));
        tokio::select! {
            () = stop.cancelled() => return,
            () = jobs.cron_changed.notified() => {
                next = rescheduled(next, &jobs.schedules.load(), now_micros());
                continue;
            }
            () = async { match wait { Some(wait) => tokio::time::sleep(wait).await, None => std::future::pending().await } } => {}
        }
        for (schedule, due) in &mut next {
            if let Some(tick) = due.filter(|tick| *tick <= now_micros()) {
                enqueue(&jobs, schedule, tick, &stop).await;
                *due = schedule.next_after(tick);
            }
        }
    }
}

/// The next tick of each of `schedules`: an entry in `before` as it was keeps its own, others
/// start after `now`.
fn rescheduled(
    before: Vec<(Arc<Schedule>, Option<Micros>)>,
    schedules: &[Arc<Schedule>],
    now: Micros,
) -> Vec<(Arc<Schedule>, Option<Micros>)> {
    schedules
        .iter()
        .map(|schedule| {
            let kept = before.iter().find(|(old, _)| old.entry == schedule.entry).map(|(_, due)| *due);
            (Arc::clone(schedule), kept.unwrap_or_else(|| schedule.next_after(now)))
        })
        .collect()
}

/// Enqueues `tick`'s job (once in the store, whoever else does too) and records the tick,
/// retrying while the store fails, until the stop signal.
async fn enqueue(jobs: &Arc<Jobs>, schedule: &Schedule, tick: Micros, stop: &CancellationToken) {
    loop {
        let job = schedule.job(tick, now_micros(), jobs.config());
        let result = match jobs.submit(vec![job]).await {
            Ok(accepted) => jobs.store().cron_ran(schedule.name(), tick).await.map(|()| accepted),
            Err(error) => Err(error),
        };
        match result {
            Ok(accepted) => {
                if accepted.first().is_some_and(|accepted| accepted.created) {
                    metrics::counter!("rampart_cron_jobs_total").increment(1);
                    tracing::debug!(entry = schedule.name(), tick = %rfc3339(tick), "cron job enqueued");
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, entry = schedule.name(), tick = %rfc3339(tick), "cannot enqueue a cron job; trying again in 1s");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Micros = 1_000_000;
    /// 2026-01-01T00:00:00Z.
    const T0: Micros = 1_767_225_600 * SECOND;

    fn entry(schedule: &str, catch_up: CatchUp) -> CronConfig {
        CronConfig {
            name: "tick".into(),
            schedule: schedule.into(),
            time_zone: "UTC".into(),
            kind: "echo".into(),
            payload: Some(serde_json::json!({"report": "daily"})),
            priority: rampart_jobstore::model::Priority::High,
            max_attempts: Some(3),
            timeout: Some(Duration::from_secs(5)),
            catch_up,
            max_catch_up: Duration::from_secs(10),
        }
    }

    fn every_second(catch_up: CatchUp) -> Schedule {
        Schedule::parse(&entry("* * * * * *", catch_up)).unwrap()
    }

    #[test]
    fn expressions_with_or_without_seconds_and_zones() {
        let every_second = every_second(CatchUp::Latest);
        assert_eq!(every_second.next_after(T0), Some(T0 + SECOND));
        assert_eq!(every_second.next_after(T0 + 1), Some(T0 + SECOND), "strictly after, on the second");
        let minutes = Schedule::parse(&entry("*/5 * * * *", CatchUp::Latest)).unwrap();
        assert_eq!(minutes.next_after(T0), Some(T0 + 300 * SECOND));
        let paris =
            Schedule::parse(&CronConfig { time_zone: "Europe/Paris".into(), ..entry("0 9 * * *", CatchUp::Latest) });
        // 09:00 in Paris on 1 January is 08:00 UTC.
        assert_eq!(paris.unwrap().next_after(T0), Some(T0 + 8 * 3600 * SECOND));
        for (schedule, zone, field) in [("61 * * * *", "UTC", "schedule"), ("* * * * *", "Mars/Olympus", "time_zone")] {
            let error = Schedule::parse(&CronConfig { time_zone: zone.into(), ..entry(schedule, CatchUp::All) });
            assert_eq!(error.unwrap_err().0, field);
        }
    }

    #[test]
    fn missed_ticks_are_made_up_as_catch_up_says() {
        // Last ran at T0; now is T0 + 5.5 s: ticks 1..=5 were missed.
        let now = T0 + 5 * SECOND + SECOND / 2;
        assert!(every_second(CatchUp::None).missed(Some(T0), now).is_empty());
        assert_eq!(every_second(CatchUp::Latest).missed(Some(T0), now), [T0 + 5 * SECOND]);
        let all: Vec<Micros> = (1..=5).map(|n| T0 + n * SECOND).collect();
        assert_eq!(every_second(CatchUp::All).missed(Some(T0), now), all);
        assert!(every_second(CatchUp::All).missed(None, now).is_empty(), "an entry that never ran starts from now");
        // Down for a minute with a 10 s window: only the last ten ticks are made up.
        let later = T0 + 60 * SECOND;
        let made_up = every_second(CatchUp::All).missed(Some(T0), later);
        assert_eq!(made_up, (50..=60).map(|n| T0 + n * SECOND).collect::<Vec<_>>());
        let long_window = Schedule::parse(&CronConfig {
            max_catch_up: Duration::from_secs(86_400),
            ..entry("* * * * * *", CatchUp::All)
        })
        .unwrap();
        let capped = long_window.missed(Some(T0), T0 + 3600 * SECOND);
        assert_eq!(capped.len(), MAX_MADE_UP, "at most {MAX_MADE_UP}, the latest");
        assert_eq!(capped.last(), Some(&(T0 + 3600 * SECOND)));
    }

    #[test]
    fn a_ticks_job_is_keyed_by_the_entry_and_the_tick() {
        let schedule = every_second(CatchUp::All);
        let job = schedule.job(T0 + SECOND, T0 + 3 * SECOND, &JobsConfig::default());
        assert_eq!(job.idempotency_key.as_deref(), Some("cron:tick:2026-01-01T00:00:01.000000Z"));
        assert_eq!((job.run_after, job.created_at), (T0 + SECOND, T0 + 3 * SECOND), "due at its tick");
        assert_eq!(&job.payload[..], br#"{"report":"daily"}"#);
        assert_eq!((job.max_attempts, job.timeout_ms), (3, 5000));
        let again = schedule.job(T0 + SECOND, T0 + 4 * SECOND, &JobsConfig::default());
        assert_eq!(again.idempotency_key, job.idempotency_key, "the same tick, the same key");
    }
}
