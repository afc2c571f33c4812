//! Hot reload: SIGHUP, a change of the config file or `POST /admin/reload` reads the whole
//! configuration again (file, `RAMPART_*` variables and flags, as at start). A valid one becomes
//! the next generation ([`Components`]) for every request that starts from then on, while
//! requests, streams and connections already running finish on the generation they started
//! with. What is unchanged keeps its state (see [`Components::assemble`]). An invalid one
//! changes nothing: the reason (file, key, why) is logged, counted and answered. Keys a running
//! gateway cannot take up (listeners, the job store, the worker pools; see [`changes`]) keep
//! their values and are reported as needing a restart.

pub mod changes;
pub mod redact;

use crate::{
    config::{ConfigError, GatewayConfig},
    endpoints,
    state::{AppState, Components},
};
use arc_swap::ArcSwap;
use changes::Changes;
use rampart_common::{
    files::Stamp,
    shutdown::{Every, FirstTick},
    tls::server::ReloadingServer,
};
use serde::Serialize;
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the config file is looked at for a change.
const CONFIG_FILE_POLL: Duration = Duration::from_secs(1);

/// Reads the configuration again, as the gateway read it at start.
pub type Loader = Box<dyn Fn() -> Result<GatewayConfig, ConfigError> + Send + Sync>;

/// Where the configuration comes from, for reloads: how to read it, and the file to watch.
pub struct Source {
    /// Reads the whole configuration.
    pub load: Loader,
    /// The config file, watched for changes; none when the gateway runs on defaults and flags.
    pub file: Option<PathBuf>,
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// The config file changed.
    File,
    /// `POST /admin/reload`.
    Admin,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::File => "file",
            Self::Admin => "admin",
        }
    }
}

/// A reload that applied: the generation in force after it and what changed.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The generation in force (unchanged when nothing changed).
    pub version: u64,
    /// What changed, and what waits for a restart.
    #[serde(flatten)]
    pub changes: Changes,
    /// How long reading, building and swapping took, in milliseconds.
    pub took_ms: f64,
}

/// A reload refused: the configuration in force stays. Says where and why.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    /// The file (or "flags", "environment") the fault is in, when known.
    pub file: Option<String>,
    /// The key at fault, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl Refused {
    fn of_config(error: ConfigError) -> Self {
        match error {
            ConfigError::Read { path, source } => {
                Self { file: Some(path.display().to_string()), key: None, reason: source.to_string() }
            }
            ConfigError::Parse { path, source } => {
                Self { file: Some(path.display().to_string()), key: None, reason: source.to_string() }
            }
            ConfigError::Invalid { origin, key, reason } => Self { file: Some(origin), key: Some(key), reason },
        }
    }

    fn other(reason: String) -> Self {
        Self { file: None, key: None, reason }
    }
}

/// How the last reload went, for `GET /admin/config`.
#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    /// When it ran (RFC 3339).
    pub at: String,
    /// What asked for it.
    pub trigger: Trigger,
    /// What it did, when it applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
    /// Why not, when it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refused>,
}

/// The generation in force, and what replaces it.
pub struct Live {
    current: ArcSwap<Components>,
    source: Option<Source>,
    tls: Option<Arc<ReloadingServer>>,
    /// When the generation in force was built (RFC 3339).
    loaded_at: ArcSwap<String>,
    /// One reload at a time; holds the watchers of the generation in force.
    reloading: tokio::sync::Mutex<Watchers>,
    last: std::sync::Mutex<Option<LastReload>>,
}

/// The tasks that keep a generation's own parts up to date (its routes' discovery and health
/// checks, its keys file and token keys); they stop when the generation is replaced.
#[derive(Default)]
struct Watchers {
    generation: Option<CancellationToken>,
    tasks: JoinSet<()>,
    /// The gateway's stop; watchers started before it is known start when it is.
    stop: Option<CancellationToken>,
}

impl Live {
    /// The first generation, reloadable from `source` (never, without one); `tls` is the public
    /// listener's certificates, read again on every reload.
    pub fn new(first: Components, source: Option<Source>, tls: Option<Arc<ReloadingServer>>) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(first),
            source,
            tls,
            loaded_at: ArcSwap::from_pointee(now_rfc3339()),
            reloading: tokio::sync::Mutex::default(),
            last: std::sync::Mutex::default(),
        })
    }

    /// The generation in force: what a request starting now works from.
    pub fn current(&self) -> Arc<Components> {
        self.current.load_full()
    }

    /// When the generation in force was built (RFC 3339).
    pub fn loaded_at(&self) -> Arc<String> {
        self.loaded_at.load_full()
    }

    /// The config file watched, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.source.as_ref()?.file.as_deref()
    }

    /// How the last reload went, if there was one.
    pub fn last_reload(&self) -> Option<LastReload> {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Starts the watchers of the generation in force and the reload triggers (`hangup`, the
    /// config file), until `stop`. `main` is the state on the main runtime (its HTTP client
    /// checks the upstreams).
    pub async fn start(
        self: &Arc<Self>,
        main: &AppState,
        hangup: Option<tokio::signal::unix::Signal>,
        stop: &CancellationToken,
    ) {
        let mut watchers = self.reloading.lock().await;
        watchers.stop = Some(stop.clone());
        watchers.restart(main);
        watchers.tasks.spawn(Arc::clone(self).triggers(main.clone(), hangup, stop.clone()));
    }

    /// Waits for every watcher to end (they end with the gateway's stop).
    pub async fn stopped(&self) {
        // Taken out of the lock: a reload under way must be able to finish.
        let mut tasks = std::mem::take(&mut self.reloading.lock().await.tasks);
        while let Some(ended) = tasks.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "a configuration watcher failed");
            }
        }
    }

    async fn triggers(
        self: Arc<Self>,
        main: AppState,
        mut hangup: Option<tokio::signal::unix::Signal>,
        stop: CancellationToken,
    ) {
        let file = self.file().map(std::path::Path::to_path_buf);
        let mut seen = file.as_deref().map(Stamp::of);
        let mut every = Every::new(CONFIG_FILE_POLL, FirstTick::AfterOnePeriod, stop);
        loop {
            let trigger = tokio::select! {
                more = every.tick() => if more { Trigger::File } else { break },
                Some(()) = async { hangup.as_mut()?.recv().await } => Trigger::Signal,
            };
            let now = file.as_deref().map(Stamp::of);
            if trigger == Trigger::File && now == seen {
                continue;
            }
            seen = now;
            let _ = self.reload(&main, trigger).await;
        }
    }

    /// Reads the configuration again and puts it in force if it is valid; see the module.
    /// `main` is the state on the main runtime.
    pub async fn reload(&self, main: &AppState, trigger: Trigger) -> Result<Applied, Refused> {
        let started = Instant::now();
        let mut watchers = self.reloading.lock().await;
        let outcome = self.next_generation(main, &mut watchers, started).await;
        record(trigger, &outcome);
        let last = LastReload {
            at: now_rfc3339(),
            trigger,
            applied: outcome.as_ref().ok().cloned(),
            refused: outcome.as_ref().err().cloned(),
        };
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
        outcome
    }

    async fn next_generation(
        &self,
        main: &AppState,
        watchers: &mut Watchers,
        started: Instant,
    ) -> Result<Applied, Refused> {
        let Some(source) = &self.source else {
            return Err(Refused::other("this gateway was started without a configuration to read again".into()));
        };
        let read = (source.load)().map_err(Refused::of_config)?;
        let current = self.current();
        let (config, changes) = changes::reconcile(&current.config, read).map_err(Refused::other)?;
        // Certificates may have changed on disk with the configuration as it was.
        if let (Some(server), Some(tls)) = (&self.tls, &config.tls) {
            server.replace(tls.files()).map_err(|error| Refused {
                file: self.file().map(|file| file.display().to_string()),
                key: Some("tls".into()),
                reason: error.to_string(),
            })?;
        }
        let took = |started: Instant| started.elapsed().as_secs_f64() * 1000.0;
        if changes.applied.is_empty() {
            return Ok(Applied { version: current.version, changes, took_ms: took(started) });
        }
        let version = current.version + 1;
        let next = Components::assemble(config, version, &current.shared(), Some(&current))
            .await
            .map_err(|error| Refused::other(format!("{error:#}")))?;
        let next = AppState::new_generation(main, Arc::new(next));
        if !next.pools.respecify(&next.config.workers, &next.config.pools, next.config.balance) {
            return Err(Refused::other("the worker pools changed more than their endpoints".into()));
        }
        if next.config.cron != current.config.cron {
            next.jobs.set_cron(&next.config.cron).map_err(Refused::other)?;
        }
        // New routes, upstreams and workers are found and checked before the swap, so they
        // serve from the first request that sees them.
        tokio::join!(endpoints::prepare_routes(&next), endpoints::prepare_workers(&next));
        self.current.store(Arc::clone(next.generation()));
        self.loaded_at.store(Arc::new(now_rfc3339()));
        watchers.restart(&next);
        Ok(Applied { version, changes, took_ms: took(started) })
    }
}

impl Watchers {
    /// Stops the watchers of the generation before `state`'s, and starts its own.
    fn restart(&mut self, state: &AppState) {
        let Some(stop) = &self.stop else { return };
        while self.tasks.try_join_next().is_some() {}
        if let Some(previous) = self.generation.take() {
            previous.cancel();
        }
        let generation = stop.child_token();
        endpoints::watch_routes(&mut self.tasks, state, &generation);
        endpoints::watch_workers(&mut self.tasks, state, &generation);
        if let Some(auth) = &state.auth {
            self.tasks.spawn(Arc::clone(auth).watch(generation.clone()));
        }
        self.generation = Some(generation);
    }
}

/// Counts and logs how a reload went.
fn record(trigger: Trigger, outcome: &Result<Applied, Refused>) {
    let result = match outcome {
        Ok(applied) if applied.changes.applied.is_empty() => "unchanged",
        Ok(_) => "applied",
        Err(_) => "invalid",
    };
    metrics::counter!("rampart_config_reloads_total", "trigger" => trigger.label(), "result" => result).increment(1);
    match outcome {
        Ok(applied) => {
            let changes = &applied.changes;
            if changes.applied.is_empty() {
                tracing::info!(
                    trigger = trigger.label(),
                    version = applied.version,
                    "configuration read again: nothing to apply"
                );
            } else {
                #[allow(clippy::cast_precision_loss)] // a version number
                metrics::gauge!("rampart_config_version").set(applied.version as f64);
                tracing::info!(
                    trigger = trigger.label(),
                    version = applied.version,
                    applied = ?changes.applied,
                    took_ms = applied.took_ms,
                    "new configuration in force"
                );
            }
            if !changes.restart_needed.is_empty() {
                tracing::warn!(keys = ?changes.restart_needed, "these keys changed but apply only after a restart; their values in force stay");
            }
        }
        Err(refused) => tracing::error!(
            trigger = trigger.label(),
            file = refused.file.as_deref().unwrap_or("-"),
            key = refused.key.as_deref().unwrap_or("-"),
            reason = %refused.reason,
            "the new configuration is refused; the one in force stays"
        ),
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
