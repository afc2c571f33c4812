//! Cross-origin requests (the Fetch standard's CORS protocol) by route: the gateway answers
//! preflights itself, so no worker or upstream sees them, and marks the answers of allowed
//! origins so that browsers hand them to the page.

use crate::{
    config::CorsConfig,
    problem::{Problem, ProblemCode},
};
use axum::{
    body::Body,
    response::{IntoResponse as _, Response},
};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};

/// One `[[cors]]` policy, its headers made once.
#[derive(Debug)]
pub struct Cors {
    routes: Vec<String>,
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<Method>,
    allow_methods: HeaderValue,
    headers: Vec<String>,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    credentials: bool,
}

/// Every policy, by route.
#[derive(Debug, Default)]
pub struct CorsPolicies(Vec<Cors>);

impl CorsPolicies {
    /// The policies of `config` (already validated; a bad one is left out).
    pub fn new(config: &[CorsConfig]) -> Self {
        Self(config.iter().filter_map(|policy| Cors::new(policy).ok()).collect())
    }

    /// The policy for a route template or proxy prefix, if one covers it.
    pub fn for_route(&self, route: &str) -> Option<&Cors> {
        self.0.iter().find(|policy| policy.routes.iter().any(|covered| covered == route))
    }
}

fn header_value(items: &[String]) -> Result<HeaderValue, String> {
    HeaderValue::try_from(items.join(", ")).map_err(|error| error.to_string())
}

impl Cors {
    /// A policy for `config`; the error names the field at fault.
    pub fn new(config: &CorsConfig) -> Result<Self, (&'static str, String)> {
        let any_origin = config.allowed_origins.iter().any(|origin| origin == "*");
        if any_origin && config.allow_credentials {
            return Err(("allowed_origins", "\"*\" cannot be used with allow_credentials = true".into()));
        }
        if config.allowed_origins.is_empty() {
            return Err(("allowed_origins", "list the origins allowed, or \"*\"".into()));
        }
        let methods = config
            .allowed_methods
            .iter()
            .map(|method| Method::from_bytes(method.to_ascii_uppercase().as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| ("allowed_methods", error.to_string()))?;
        let headers: Vec<String> = config.allowed_headers.iter().map(|name| name.to_ascii_lowercase()).collect();
        let upper: Vec<String> = methods.iter().map(ToString::to_string).collect();
        Ok(Self {
            routes: config.routes.clone(),
            any_origin,
            origins: config.allowed_origins.clone(),
            allow_methods: header_value(&upper).map_err(|reason| ("allowed_methods", reason))?,
            methods,
            allow_headers: header_value(&headers).map_err(|reason| ("allowed_headers", reason))?,
            headers,
            expose_headers: header_value(&config.expose_headers).map_err(|reason| ("expose_headers", reason))?,
            max_age: HeaderValue::from(config.max_age.as_secs()),
            credentials: config.allow_credentials,
        })
    }

    fn allows_origin(&self, origin: &HeaderValue) -> bool {
        self.any_origin || self.origins.iter().any(|allowed| allowed.as_bytes() == origin.as_bytes())
    }

    /// The answer to `request` if it is a preflight (an `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`): 204 with the policy's headers, or 403 `forbidden`
    /// for an origin, method or header the policy does not allow.
    pub fn preflight(&self, request: &Request<Body>) -> Option<Response> {
        let headers = request.headers();
        if request.method() != Method::OPTIONS {
            return None;
        }
        let (origin, asked) = (headers.get(header::ORIGIN)?, headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?);
        let refuse =
            |detail: String| Problem::new(StatusCode::FORBIDDEN, ProblemCode::Forbidden, detail).into_response();
        if !self.allows_origin(origin) {
            return Some(refuse(format!("origin {origin:?} may not call this route")));
        }
        if !self.methods.iter().any(|method| method.as_str().as_bytes() == asked.as_bytes()) {
            return Some(refuse(format!("method {asked:?} is not allowed from other origins here")));
        }
        let wanted = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).and_then(|value| value.to_str().ok());
        for name in wanted.into_iter().flat_map(|list| list.split(',')).map(str::trim).filter(|name| !name.is_empty()) {
            if !self.headers.iter().any(|allowed| allowed.eq_ignore_ascii_case(name)) {
                return Some(refuse(format!("header {name:?} is not allowed from other origins here")));
            }
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let answer = response.headers_mut();
        self.mark(answer, origin);
        answer.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        answer.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
        answer.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        Some(response)
    }

    /// Marks the answer to a request from `origin`, if the policy allows it.
    pub fn decorate(&self, response: &mut Response, origin: Option<&HeaderValue>) {
        let Some(origin) = origin.filter(|origin| self.allows_origin(origin)) else { return };
        if response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            return; // a preflight's answer, marked already
        }
        let headers = response.headers_mut();
        self.mark(headers, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose_headers.clone());
    }

    fn mark(&self, headers: &mut HeaderMap, origin: &HeaderValue) {
        let allowed = if self.any_origin { HeaderValue::from_static("*") } else { origin.clone() };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        if !self.any_origin {
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}
