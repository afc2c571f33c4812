//! The one loop every call to an endpoint goes through: pick an endpoint, take its breaker
//! permit, count the call in flight, hold the deadline, send, classify the outcome, and retry on
//! another endpoint when the outcome allows. Endpoints hear only what says something about them:
//! the transport's [`Verdict`] decides what counts for or against one.

use crate::{
    clock,
    config::RetryConfig,
    endpoint::{Endpoint, Health},
    retry::{RetryBudget, backoff},
    set::EndpointSet,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// What one attempt's outcome says of the endpoint, as the transport reads it.
#[derive(Debug)]
pub enum Verdict<A, E> {
    /// The endpoint did its part, whatever the answer says of the request: counts for it.
    Answer(Result<A, E>),
    /// The endpoint failed, or answered that it is overloaded: counts against it (breaker,
    /// passive ejection, balancing cost). `pushback` keeps new calls away from it that long.
    /// With `retry` (its reason labels `rampart_retries_total`) a failed `outcome` may be tried
    /// on another endpoint; it is the answer when none is.
    EndpointFailure {
        /// The answer if the call is not tried again.
        outcome: Result<A, E>,
        /// How long the endpoint asked not to be sent work.
        pushback: Option<Duration>,
        /// Why another endpoint may be tried, if it may.
        retry: Option<&'static str>,
    },
    /// The request certainly never reached the endpoint, which is now taken for unreachable
    /// until a health check says otherwise.
    NeverReached {
        /// The answer if no other endpoint is tried.
        error: E,
        /// Whether this counts against the endpoint: a refused connection does; a worker that
        /// is draining and said so does not.
        blame: bool,
        /// Whether another endpoint may be tried (a request whose body is gone may not).
        retry: bool,
        /// What happened, for the log.
        reason: String,
    },
    /// The call failed through nobody's fault on the endpoint's side (the client's own body
    /// broke): nothing is recorded for or against it.
    Blameless(Result<A, E>),
}

/// How a call reaches an endpoint and what its answers mean: all that differs between gRPC to
/// workers and HTTP to upstreams.
pub trait Transport {
    /// One attempt's request.
    type Request;
    /// What sending it gives back.
    type Sent;
    /// A call's successful answer.
    type Answer;
    /// A call's failure.
    type Error;

    /// The request for one attempt on `endpoint`, or the failure that ends the call (its body
    /// went with an earlier attempt, say).
    fn request(&mut self, endpoint: &Endpoint) -> Result<Self::Request, Self::Error>;

    /// Sends `request` to `endpoint`; `remaining` is what is left of the deadline, after which
    /// the loop stops waiting.
    fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        request: Self::Request,
        remaining: Duration,
    ) -> impl Future<Output = Self::Sent> + Send;

    /// What `sent` says, or, with `None`, that `deadline` passed before an answer came.
    fn classify(
        &self,
        endpoint: &Arc<Endpoint>,
        sent: Option<Self::Sent>,
        deadline: Instant,
    ) -> Verdict<Self::Answer, Self::Error>;

    /// The failure for a call no endpoint could take: none is healthy or, with `breaker_open`,
    /// the breakers of those left are open and the soonest lets a probe through after that long.
    fn unavailable(&self, breaker_open: Option<Duration>) -> Self::Error;

    /// The failure for a call whose deadline passed before an attempt could start.
    fn deadline_passed(&self) -> Self::Error;
}

/// How a call may be tried again.
#[derive(Clone, Copy)]
pub struct Retries<'a> {
    /// Attempts at most, the first included; never more than one per endpoint.
    pub max_attempts: u32,
    /// The backoff before each retry; none when `None`.
    pub backoff: Option<&'a RetryConfig>,
    /// The budget retries draw from (each call deposits its share); unlimited when `None`.
    pub budget: Option<&'a RetryBudget>,
}

impl<'a> Retries<'a> {
    /// Retries as `config` says, drawn from `budget`.
    pub fn budgeted(config: &'a RetryConfig, budget: &'a RetryBudget) -> Self {
        Self { max_attempts: config.max_attempts, backoff: Some(config), budget: Some(budget) }
    }

    /// Each endpoint tried once at most, at once, with no budget: for calls that are retried
    /// only when they certainly never reached an endpoint.
    pub fn each_endpoint_once() -> Self {
        Self { max_attempts: u32::MAX, backoff: None, budget: None }
    }
}

/// Makes a call with `transport` on an endpoint of `set` before `deadline`.
pub async fn call<T: Transport>(
    set: &EndpointSet,
    transport: &mut T,
    deadline: Instant,
    retries: Retries<'_>,
) -> Result<T::Answer, T::Error> {
    if let Some(budget) = retries.budget {
        budget.deposit();
    }
    let mut tried: Vec<Arc<Endpoint>> = Vec::new();
    let mut breaker_open: Option<Duration> = None;
    let mut last_error: Option<T::Error> = None;
    let mut attempts = 0_u32;
    loop {
        if deadline <= Instant::now() {
            return Err(transport.deadline_passed());
        }
        let Some(endpoint) = set.pick(&tried) else {
            return Err(last_error.unwrap_or_else(|| transport.unavailable(breaker_open)));
        };
        // The call is slow only once its own budget has passed unanswered.
        let permit = match endpoint.breaker().try_acquire_within(deadline.saturating_duration_since(Instant::now())) {
            Ok(permit) => permit,
            Err(rejected) => {
                breaker_open =
                    Some(breaker_open.map_or(rejected.retry_after, |soonest| soonest.min(rejected.retry_after)));
                tried.push(Arc::clone(&endpoint));
                continue;
            }
        };
        if attempts > 0 {
            if let Some(budget) = retries.budget
                && !budget.try_withdraw()
            {
                metrics::counter!("rampart_rejections_total", "reason" => "retry_budget").increment(1);
                return Err(last_error.unwrap_or_else(|| transport.unavailable(None)));
            }
            if let Some(config) = retries.backoff {
                tokio::time::sleep(backoff(config, attempts).min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
        attempts += 1;
        set.count_attempt(attempts == 1);
        // A request that cannot be made ends the call; the permit goes back unreported.
        let request = transport.request(&endpoint)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let started = clock::now();
        let in_flight = endpoint.load().start(started);
        let sent = tokio::time::timeout(remaining, transport.send(&endpoint, request, remaining)).await.ok();
        drop(in_flight);
        let now = clock::now();
        let (error, reason) = match transport.classify(&endpoint, sent, deadline) {
            Verdict::Answer(outcome) => {
                permit.success();
                endpoint.load().observe(now.saturating_sub(started), now);
                endpoint.record_success();
                return outcome;
            }
            Verdict::Blameless(outcome) => {
                drop(permit);
                return outcome;
            }
            Verdict::EndpointFailure { outcome, pushback, retry } => {
                permit.failure();
                count_failure(set, &endpoint, now);
                if let Some(pushback) = pushback {
                    endpoint.load().penalize_until(now + clock::nanos(pushback));
                }
                match (outcome, retry) {
                    (Err(error), Some(reason)) => (error, reason),
                    (outcome, _) => return outcome,
                }
            }
            Verdict::NeverReached { error, blame, retry, reason } => {
                if blame {
                    permit.failure();
                    count_failure(set, &endpoint, now);
                } else {
                    drop(permit);
                }
                if endpoint.health_tracker().mark_unreachable() != Health::Unhealthy {
                    tracing::warn!(set = set.name(), endpoint = endpoint.url(), %reason, "endpoint unreachable");
                }
                if !retry {
                    return Err(error);
                }
                (error, "unreached")
            }
        };
        if attempts >= retries.max_attempts {
            return Err(error);
        }
        metrics::counter!("rampart_retries_total", "pool" => set.label(), "reason" => reason).increment(1);
        last_error = Some(error);
        tried.push(endpoint);
    }
}

/// A failed call, for the endpoint's balancing cost and its passive ejection.
fn count_failure(set: &EndpointSet, endpoint: &Endpoint, now: u64) {
    endpoint.load().observe_failure(now);
    set.record_failure(endpoint);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Balance, OutlierConfig};
    use rampart_common::breaker::{BreakerConfig, State};
    use std::sync::Mutex;

    /// A transport whose endpoints answer as `script` says, by port; it records who was called.
    struct Scripted {
        script: fn(&str) -> Verdict<&'static str, String>,
        called: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(script: fn(&str) -> Verdict<&'static str, String>) -> Self {
            Self { script, called: Mutex::new(Vec::new()) }
        }

        fn called(&self) -> Vec<String> {
            self.called.lock().unwrap().clone()
        }
    }

    impl Transport for Scripted {
        type Request = ();
        type Sent = String;
        type Answer = &'static str;
        type Error = String;

        fn request(&mut self, _endpoint: &Endpoint) -> Result<(), String> {
            Ok(())
        }

        fn send(&self, endpoint: &Arc<Endpoint>, (): (), _remaining: Duration) -> impl Future<Output = String> + Send {
            self.called.lock().unwrap().push(endpoint.url().to_owned());
            std::future::ready(endpoint.url().to_owned())
        }

        fn classify(&self, _: &Arc<Endpoint>, sent: Option<String>, _: Instant) -> Verdict<&'static str, String> {
            (self.script)(&sent.unwrap_or_default())
        }

        fn unavailable(&self, breaker_open: Option<Duration>) -> String {
            match breaker_open {
                Some(after) => format!("breaker open for {}s", after.as_secs()),
                None => "unavailable".into(),
            }
        }

        fn deadline_passed(&self) -> String {
            "deadline".into()
        }
    }

    fn set(ports: &[u16], breaker: &BreakerConfig) -> EndpointSet {
        let set = EndpointSet::new("test", Balance::RoundRobin, &OutlierConfig::default(), breaker);
        set.replace(&ports.iter().map(|port| format!("http://127.0.0.1:{port}")).collect::<Vec<_>>()).unwrap();
        for endpoint in set.snapshot().iter() {
            endpoint.health_tracker().record_check(true, 1, 1);
        }
        set
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn refused(url: &str) -> Verdict<&'static str, String> {
        if url.ends_with(":1") {
            Verdict::NeverReached { error: "refused".into(), blame: true, retry: true, reason: "refused".into() }
        } else {
            Verdict::Answer(Ok("ran"))
        }
    }

    #[tokio::test]
    async fn a_call_that_never_reached_its_endpoint_goes_to_another() {
        let set = set(&[1, 2], &BreakerConfig::default());
        let mut transport = Scripted::new(refused);
        let answer = call(&set, &mut transport, soon(), Retries::each_endpoint_once()).await;
        assert_eq!(answer, Ok("ran"));
        assert_eq!(transport.called(), ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        let endpoints = set.snapshot();
        assert_eq!(endpoints[0].health(), Health::Unhealthy, "taken for unreachable");
        assert_eq!(endpoints[0].breaker_snapshot().window_failures, 1);
        assert_eq!(endpoints[1].breaker_snapshot().window_failures, 0);
    }

    #[tokio::test]
    async fn retries_stop_at_the_budget_and_answer_the_last_error() {
        let set = set(&[1, 2], &BreakerConfig::default());
        let retry = RetryConfig { budget_ratio: 0.0, budget_min_per_second: 0.0, ..RetryConfig::default() };
        let budget = RetryBudget::new(&retry);
        let mut transport = Scripted::new(refused);
        let answer = call(&set, &mut transport, soon(), Retries::budgeted(&retry, &budget)).await;
        assert_eq!(answer, Err("refused".into()));
        assert_eq!(transport.called(), ["http://127.0.0.1:1"], "no retry without budget");
    }

    #[tokio::test]
    async fn a_failure_counts_against_the_endpoint_and_its_pushback_keeps_work_away() {
        let set = set(&[1, 2], &BreakerConfig::default());
        let mut transport = Scripted::new(|_| Verdict::EndpointFailure {
            outcome: Ok("502 answered"),
            pushback: Some(Duration::from_secs(60)),
            retry: Some("overloaded"),
        });
        let answer = call(&set, &mut transport, soon(), Retries::each_endpoint_once()).await;
        assert_eq!(answer, Ok("502 answered"), "an answer is not retried, even a failed one");
        let endpoints = set.snapshot();
        assert!(endpoints[0].load().penalized(clock::now()));
        assert_eq!(endpoints[0].breaker_snapshot().window_failures, 1);
        assert!(endpoints[0].health() == Health::Healthy, "an answer says the endpoint is reachable");
    }

    #[tokio::test]
    async fn a_blameless_failure_leaves_no_trace_on_the_endpoint() {
        let set = set(&[1], &BreakerConfig::default());
        let mut transport = Scripted::new(|_| Verdict::Blameless(Err("client went away".into())));
        let answer = call(&set, &mut transport, soon(), Retries::each_endpoint_once()).await;
        assert_eq!(answer, Err("client went away".into()));
        let endpoint = &set.snapshot()[0];
        assert_eq!(endpoint.breaker_snapshot().window_failures, 0);
        assert_eq!(endpoint.breaker_snapshot().window_successes, 0);
        assert_eq!(endpoint.load().in_flight(), 0);
    }

    #[tokio::test]
    async fn open_breakers_answer_at_once_with_the_soonest_probe() {
        let breaker = BreakerConfig { consecutive_failures: 1, ..BreakerConfig::default() };
        let set = set(&[1], &breaker);
        let mut transport = Scripted::new(refused);
        assert_eq!(call(&set, &mut transport, soon(), Retries::each_endpoint_once()).await, Err("refused".into()));
        assert_eq!(set.snapshot()[0].breaker_snapshot().state, State::Open);
        set.snapshot()[0].health_tracker().record_check(true, 1, 1);
        let answer = call(&set, &mut transport, soon(), Retries::each_endpoint_once()).await;
        let seconds: u64 =
            answer.unwrap_err().strip_prefix("breaker open for ").unwrap().trim_end_matches('s').parse().unwrap();
        assert!((3..=6).contains(&seconds), "the default opening lasts about five seconds: {seconds}");
        assert_eq!(transport.called().len(), 1, "the open breaker sent nothing on");
    }

    #[tokio::test]
    async fn a_spent_deadline_contacts_no_endpoint() {
        let set = set(&[1], &BreakerConfig::default());
        let mut transport = Scripted::new(refused);
        let answer = call(&set, &mut transport, Instant::now(), Retries::each_endpoint_once()).await;
        assert_eq!(answer, Err("deadline".into()));
        assert!(transport.called().is_empty());
    }
}
