//! Admission control: a cap on requests in flight per route. Past it the gateway answers
//! `503 overloaded` with `Retry-After` at once, so load beyond capacity is shed at the door
//! instead of queueing without bound.

use crate::config::AdmissionConfig;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// One route's in-flight count and limit.
#[derive(Debug)]
struct Gate {
    in_flight: AtomicUsize,
    limit: usize,
}

/// In-flight limits for every known route. A handful of routes: a linear scan beats hashing.
#[derive(Debug)]
pub struct Admission {
    gates: Vec<(String, Arc<Gate>)>,
}

/// A request admitted on a route, counted until dropped.
pub struct Admitted<'a>(&'a Gate);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// Gates for `routes` (route templates and proxy prefixes), limited per `config`. A gate of
    /// `previous` for the same route and limit is kept, so the requests it counts in flight
    /// still count after a reload.
    pub fn new<'a>(
        config: &AdmissionConfig,
        routes: impl IntoIterator<Item = &'a str>,
        previous: Option<&Self>,
    ) -> Self {
        let gates = routes
            .into_iter()
            .map(|route| {
                let limit = config
                    .routes
                    .iter()
                    .find(|special| special.route == route)
                    .map_or(config.max_in_flight, |special| special.max_in_flight);
                let kept = previous.and_then(|previous| {
                    previous.gates.iter().find(|(name, gate)| name == route && gate.limit == limit)
                });
                let gate = kept.map_or_else(
                    || Arc::new(Gate { in_flight: AtomicUsize::new(0), limit }),
                    |(_, gate)| Arc::clone(gate),
                );
                (route.to_owned(), gate)
            })
            .collect();
        Self { gates }
    }

    /// Admits a request on `route`, counted until the guard is dropped; at the route's limit,
    /// `Err` with the limit. A route without a gate (not found) is always admitted, unguarded
    /// (`Ok(None)`).
    pub fn enter(&self, route: &str) -> Result<Option<Admitted<'_>>, usize> {
        let Some((_, gate)) = self.gates.iter().find(|(name, _)| name == route) else { return Ok(None) };
        let before = gate.in_flight.fetch_add(1, Ordering::Relaxed);
        if before >= gate.limit {
            gate.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(gate.limit);
        }
        Ok(Some(Admitted(gate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteAdmission;

    #[test]
    fn each_route_is_capped_and_a_finished_request_frees_its_place() {
        let config = AdmissionConfig {
            max_in_flight: 2,
            routes: vec![RouteAdmission { route: "/api/process".into(), max_in_flight: 1 }],
        };
        let admission = Admission::new(&config, ["/api/process", "/"], None);
        let first = admission.enter("/api/process").unwrap();
        assert_eq!(admission.enter("/api/process").err(), Some(1));
        let _a = admission.enter("/").unwrap();
        let _b = admission.enter("/").unwrap();
        assert!(admission.enter("/").is_err());
        drop(first);
        assert!(admission.enter("/api/process").is_ok());
        assert!(admission.enter("/unknown").unwrap().is_none());
    }

    #[test]
    fn a_kept_gate_still_counts_what_entered_before_the_reload() {
        let config = AdmissionConfig { max_in_flight: 1, routes: Vec::new() };
        let before = Admission::new(&config, ["/"], None);
        let _running = before.enter("/").unwrap();
        let after = Admission::new(&config, ["/", "/new"], Some(&before));
        assert_eq!(after.enter("/").err(), Some(1), "the request admitted before still holds its place");
        assert!(after.enter("/new").is_ok());
        let wider = AdmissionConfig { max_in_flight: 2, routes: Vec::new() };
        let changed = Admission::new(&wider, ["/"], Some(&before));
        assert!(changed.enter("/").is_ok(), "a changed limit starts a gate of its own");
    }
}
