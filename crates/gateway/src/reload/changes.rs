//! What a new configuration changes, and what of that a running gateway cannot take up: the
//! keys whose values are built into the listeners, the worker pools and the job engine when the
//! gateway starts. Those keep their values in force, and the reload says they need a restart.

use crate::config::GatewayConfig;
use serde_json::Value;

/// Keys whose new values apply only when the gateway starts again. Everything else applies to
/// new requests at once.
const RESTART_KEYS: [&str; 18] = [
    "listen",
    "admin_listen",
    "admin_token",
    "admin_token_file",
    "serving_threads",
    "max_connections",
    "header_read_timeout",
    "idle_timeout",
    "max_streams_per_connection",
    "lean_proxy",
    "drain_timeout",
    "dns_refresh",
    "health",
    "store",
    "jobs",
    "retry",
    "balance",
    "worker_tls",
];

/// What a new configuration does to the one in force.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// Top-level keys whose new values are in force.
    pub applied: Vec<String>,
    /// Top-level keys whose new values wait for a restart (the values in force stay).
    pub restart_needed: Vec<String>,
}

/// `next` with the values of `current` for every key a running gateway cannot change, and what
/// changed. Both are whole configurations, so their JSON forms have the same keys.
pub fn reconcile(current: &GatewayConfig, mut next: GatewayConfig) -> Result<(GatewayConfig, Changes), String> {
    let as_json = |config: &GatewayConfig| serde_json::to_value(config).map_err(|error| error.to_string());
    let (Value::Object(before), Value::Object(after)) = (as_json(current)?, as_json(&next)?) else {
        return Err("a configuration is not a table".into());
    };
    let mut changes = Changes::default();
    for (key, old) in &before {
        let new = after.get(key).unwrap_or(&Value::Null);
        if new == old {
            continue;
        }
        let layout_changed = key == "pools" && !same_pools(&current.pools, &next.pools);
        if RESTART_KEYS.contains(&key.as_str()) || (key == "tls" && !tls_reloadable(old, new)) || layout_changed {
            if !keep(&mut next, current, key) {
                return Err(format!("{key} needs a restart but cannot be kept as it is"));
            }
            changes.restart_needed.push(key.clone());
        } else {
            changes.applied.push(key.clone());
        }
    }
    changes.applied.sort();
    changes.restart_needed.sort();
    Ok((next, changes))
}

/// Puts back in `next` the value `current` has for the top-level `key`; false for a key it does
/// not know.
fn keep(next: &mut GatewayConfig, current: &GatewayConfig, key: &str) -> bool {
    match key {
        "listen" => next.listen.clone_from(&current.listen),
        "admin_listen" => next.admin_listen.clone_from(&current.admin_listen),
        "admin_token" => next.admin_token.clone_from(&current.admin_token),
        "admin_token_file" => next.admin_token_file.clone_from(&current.admin_token_file),
        "serving_threads" => next.serving_threads.clone_from(&current.serving_threads),
        "max_connections" => next.max_connections.clone_from(&current.max_connections),
        "header_read_timeout" => next.header_read_timeout.clone_from(&current.header_read_timeout),
        "idle_timeout" => next.idle_timeout.clone_from(&current.idle_timeout),
        "max_streams_per_connection" => next.max_streams_per_connection.clone_from(&current.max_streams_per_connection),
        "lean_proxy" => next.lean_proxy.clone_from(&current.lean_proxy),
        "drain_timeout" => next.drain_timeout.clone_from(&current.drain_timeout),
        "dns_refresh" => next.dns_refresh.clone_from(&current.dns_refresh),
        "health" => next.health.clone_from(&current.health),
        "store" => next.store.clone_from(&current.store),
        "jobs" => next.jobs.clone_from(&current.jobs),
        "retry" => next.retry.clone_from(&current.retry),
        "balance" => next.balance.clone_from(&current.balance),
        "pools" => next.pools.clone_from(&current.pools),
        "worker_tls" => next.worker_tls.clone_from(&current.worker_tls),
        "tls" => next.tls.clone_from(&current.tls),
        _ => return false,
    }
    true
}

/// Whether two `[[pools]]` lists differ only in their pools' endpoints, which a running gateway
/// takes up; a pool added, removed, renamed, rebalanced or given other kinds needs a restart.
fn same_pools(old: &[crate::config::PoolConfig], new: &[crate::config::PoolConfig]) -> bool {
    let layout = |pool: &crate::config::PoolConfig| {
        let mut kinds = pool.kinds.clone();
        kinds.sort();
        (pool.name.clone(), kinds, pool.balance)
    };
    old.len() == new.len() && old.iter().zip(new).all(|(old, new)| layout(old) == layout(new))
}

/// Whether a change of `[tls]` can be taken up by a running listener: new certificate files,
/// SNI names or client-certificate settings can; turning TLS on or off, or moving the plain
/// listener, cannot.
fn tls_reloadable(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => old.get("plain_listen") == new.get("plain_listen"),
        (old, new) => old == new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

    fn route(prefix: &str) -> RouteConfig {
        toml::from_str(&format!("prefix = \"{prefix}\"\nupstreams = [\"http://127.0.0.1:1\"]")).unwrap()
    }

    #[test]
    fn routes_and_limits_apply_at_once_and_listeners_wait_for_a_restart() {
        let current = GatewayConfig::default();
        let next = GatewayConfig {
            routes: vec![route("/app")],
            max_body_bytes: 10,
            listen: "127.0.0.1:1".into(),
            store: "sqlite://elsewhere.db".into(),
            ..GatewayConfig::default()
        };
        let (kept, changes) = reconcile(&current, next).unwrap();
        assert_eq!(changes.applied, ["max_body_bytes", "routes"]);
        assert_eq!(changes.restart_needed, ["listen", "store"]);
        assert_eq!((kept.listen.as_str(), kept.store.as_str()), (current.listen.as_str(), current.store.as_str()));
        assert_eq!((kept.routes.len(), kept.max_body_bytes), (1, 10), "what can change, does");
    }

    #[test]
    fn every_key_that_waits_for_a_restart_is_kept() {
        let current = GatewayConfig::default();
        let mut moved = GatewayConfig {
            listen: "0.0.0.0:1".into(),
            admin_listen: "0.0.0.0:2".into(),
            admin_token: Some("t".into()),
            serving_threads: 7,
            max_connections: 3,
            header_read_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            max_streams_per_connection: 1,
            lean_proxy: false,
            drain_timeout: std::time::Duration::from_secs(1),
            dns_refresh: std::time::Duration::from_secs(1),
            store: "sqlite://other.db".into(),
            balance: crate::config::Balance::RoundRobin,
            ..current.clone()
        };
        for key in RESTART_KEYS.iter().chain(&["tls"]) {
            assert!(keep(&mut moved, &current, key), "{key} cannot be kept");
        }
        assert_eq!(moved, current, "each key puts back its own field");
        assert!(!keep(&mut moved, &current, "routes"));
    }

    #[test]
    fn worker_lists_apply_and_a_new_pool_waits_for_a_restart() {
        let pool = |name: &str, worker: &str| -> crate::config::PoolConfig {
            toml::from_str(&format!("name = \"{name}\"\nworkers = [\"{worker}\"]\nkinds = [\"k-{name}\"]")).unwrap()
        };
        let current = GatewayConfig { pools: vec![pool("a", "http://10.0.0.1:1")], ..GatewayConfig::default() };
        let moved = GatewayConfig {
            workers: vec!["http://10.0.0.9:1".into()],
            pools: vec![pool("a", "http://10.0.0.2:1")],
            ..current.clone()
        };
        let (kept, changes) = reconcile(&current, moved).unwrap();
        assert_eq!(changes.applied, ["pools", "workers"]);
        assert_eq!(kept.pools[0].workers, ["http://10.0.0.2:1"]);
        let grown = GatewayConfig {
            pools: vec![pool("a", "http://10.0.0.1:1"), pool("b", "http://10.0.0.3:1")],
            ..current.clone()
        };
        let (kept, changes) = reconcile(&current, grown).unwrap();
        assert_eq!(changes.restart_needed, ["pools"]);
        assert_eq!(kept.pools.len(), 1, "the pools in force stay");
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let (_, changes) = reconcile(&GatewayConfig::default(), GatewayConfig::default()).unwrap();
        assert_eq!(changes, Changes::default());
    }
}
