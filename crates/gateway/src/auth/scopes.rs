//! What a credential may use. A scope is `process:KIND` (run a job now), `jobs:KIND` (submit
//! durable jobs and batches of that kind, read and cancel jobs), `route:/PREFIX` (a proxied
//! route), with `*` for any kind or prefix, or `*` alone for everything. A credential with no
//! scopes at all may use every route.

use crate::problem::{Problem, ProblemCode};
use http::StatusCode;

/// The API families scopes name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/api/process`.
    Process,
    /// `/api/jobs` and every route under it, `/api/batch`, `/api/cron`, and pausing kinds and
    /// tenants.
    Jobs,
}

impl Family {
    /// Its name in scopes (`process`, `jobs`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Jobs => "jobs",
        }
    }

    /// The family of an API route template, if it is one that scopes guard.
    pub fn of_route(route: &str) -> Option<Self> {
        match route {
            "/api/process" => Some(Self::Process),
            "/api/jobs"
            | "/api/jobs/stats"
            | "/api/jobs/retry"
            | "/api/jobs/{id}"
            | "/api/jobs/{id}/retry"
            | "/api/jobs/{id}/events"
            | "/api/batch"
            | "/api/cron"
            | "/api/kinds/{kind}/pause"
            | "/api/kinds/{kind}/resume"
            | "/api/tenants/{tenant}/pause"
            | "/api/tenants/{tenant}/resume"
            | "/api/pauses" => Some(Self::Jobs),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    All,
    Kinds { family: String, kind: Option<String> },
    Route(Option<String>),
}

/// A credential's scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Reads scopes as written; scopes of families the gateway does not know are kept and
    /// grant nothing (an identity provider's token carries scopes for other services too).
    pub fn parse<'a>(written: impl IntoIterator<Item = &'a str>) -> Self {
        let scopes = written
            .into_iter()
            .map(|scope| match scope.split_once(':') {
                _ if scope == "*" => Scope::All,
                Some(("route", prefix)) => Scope::Route((prefix != "*").then(|| prefix.to_owned())),
                Some((family, kind)) => {
                    Scope::Kinds { family: family.to_owned(), kind: (kind != "*").then(|| kind.to_owned()) }
                }
                None => Scope::Kinds { family: scope.to_owned(), kind: None },
            })
            .collect();
        Self(scopes)
    }

    /// Whether any scope opens `family` at all (the route-level check, before the body is read).
    pub fn opens(&self, family: Family) -> bool {
        self.0.iter().any(|scope| match scope {
            Scope::All => true,
            Scope::Kinds { family: name, .. } => name == family.name(),
            Scope::Route(_) => false,
        })
    }

    /// Whether a scope allows jobs of `kind` in `family`.
    pub fn allows(&self, family: Family, kind: &str) -> bool {
        self.0.iter().any(|scope| match scope {
            Scope::All => true,
            Scope::Kinds { family: name, kind: allowed } => {
                name == family.name() && allowed.as_deref().is_none_or(|allowed| allowed == kind)
            }
            Scope::Route(_) => false,
        })
    }

    /// Whether a scope allows the proxied route with `prefix`.
    pub fn allows_route(&self, prefix: &str) -> bool {
        self.0.iter().any(|scope| match scope {
            Scope::All => true,
            Scope::Route(allowed) => allowed.as_deref().is_none_or(|allowed| allowed == prefix),
            Scope::Kinds { .. } => false,
        })
    }
}

/// The 403 for a credential without the scope `needed`.
pub fn forbidden(needed: String) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        ProblemCode::Forbidden,
        format!("the credential's scopes do not include {needed}"),
    )
    .with("scope", needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_open_families_kinds_and_routes() {
        let scopes = Scopes::parse(["jobs:*", "process:echo", "route:/app", "openid"]);
        assert!(scopes.opens(Family::Jobs) && scopes.opens(Family::Process));
        assert!(scopes.allows(Family::Jobs, "sleep") && scopes.allows(Family::Process, "echo"));
        assert!(!scopes.allows(Family::Process, "sleep"));
        assert!(scopes.allows_route("/app") && !scopes.allows_route("/admin"));
        let narrow = Scopes::parse(["process:echo"]);
        assert!(!narrow.opens(Family::Jobs) && !narrow.allows_route("/app"));
        let all = Scopes::parse(["*"]);
        assert!(all.allows(Family::Jobs, "x") && all.allows_route("/anything"));
        assert!(Scopes::parse(["route:*"]).allows_route("/x"));
    }
}
