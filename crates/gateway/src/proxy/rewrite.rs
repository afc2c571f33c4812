//! What a route changes on the way: the path's prefix (stripped or replaced) and fields of the
//! request sent upstream and of the answer sent back.

use crate::config::{HeaderRules, RouteConfig};
use http::{HeaderMap, HeaderName, HeaderValue, request::Parts};

/// A route's changes, read from its configuration.
#[derive(Debug, Default)]
pub struct Rewrite {
    /// The route's prefix and what it becomes, when it changes.
    prefix: Option<(String, String)>,
    request: Fields,
    response: Fields,
}

/// Fields set and removed.
#[derive(Debug, Default)]
struct Fields {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl Fields {
    fn new(rules: &HeaderRules, key: &'static str) -> Result<Self, (&'static str, String)> {
        let name = |name: &str| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| (key, format!("{name:?} is no field name")))
        };
        let set = rules
            .set
            .iter()
            .map(|(field, value)| {
                let value = HeaderValue::from_str(value).map_err(|_| (key, format!("{value:?} is no field value")))?;
                Ok((name(field)?, value))
            })
            .collect::<Result<_, _>>()?;
        let remove = rules.remove.iter().map(|field| name(field)).collect::<Result<_, _>>()?;
        Ok(Self { set, remove })
    }

    fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

impl Rewrite {
    /// The changes `route` asks for; the error names the field at fault and why.
    pub fn new(route: &RouteConfig) -> Result<Self, (&'static str, String)> {
        let prefix = match &route.rewrite_prefix {
            Some(to) if !to.is_empty() && (!to.starts_with('/') || to.contains(['?', '#'])) => {
                return Err(("rewrite_prefix", format!("{to:?} must be empty or a path starting with /")));
            }
            Some(to) => Some((route.prefix.trim_end_matches('/').to_owned(), to.trim_end_matches('/').to_owned())),
            None => None,
        };
        Ok(Self {
            prefix,
            request: Fields::new(&route.request_headers, "request_headers")?,
            response: Fields::new(&route.response_headers, "response_headers")?,
        })
    }

    /// Whether the answer's fields change (the lean path passes answers on as they came, so
    /// such a route's requests take hyper's).
    pub fn changes_answers(&self) -> bool {
        !self.response.is_empty()
    }

    /// Changes the request about to go upstream (its path in normal form, under the prefix).
    pub fn request(&self, parts: &mut Parts) {
        self.request.apply(&mut parts.headers);
        let Some((prefix, to)) = &self.prefix else { return };
        let Some(path_and_query) = parts.uri.path_and_query() else { return };
        let rest = path_and_query.path().strip_prefix(prefix.as_str()).unwrap_or(path_and_query.path());
        let path = match (to.as_str(), rest) {
            ("", "") => "/".to_owned(),
            (to, rest) => format!("{to}{rest}"),
        };
        let target = match path_and_query.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut uri = parts.uri.clone().into_parts();
        if let Ok(target) = target.parse() {
            uri.path_and_query = Some(target);
            if let Ok(rewritten) = http::Uri::from_parts(uri) {
                parts.uri = rewritten;
            }
        }
    }

    /// Changes the answer's fields on the way back.
    pub fn response(&self, headers: &mut HeaderMap) {
        self.response.apply(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(extra: &str) -> Rewrite {
        let config: RouteConfig = toml::from_str(&format!("prefix = \"/shop\"\nupstreams = []\n{extra}")).unwrap();
        Rewrite::new(&config).unwrap()
    }

    fn path_after(rewrite: &Rewrite, target: &str) -> String {
        let mut parts = http::Request::get(target).body(()).unwrap().into_parts().0;
        rewrite.request(&mut parts);
        parts.uri.to_string()
    }

    #[test]
    fn the_prefix_is_stripped_or_replaced_and_the_query_kept() {
        let strip = rewrite("rewrite_prefix = \"\"");
        assert_eq!(path_after(&strip, "/shop/cart?id=1"), "/cart?id=1");
        assert_eq!(path_after(&strip, "/shop"), "/");
        let replace = rewrite("rewrite_prefix = \"/v2/\"");
        assert_eq!(path_after(&replace, "/shop/cart"), "/v2/cart");
        assert_eq!(path_after(&replace, "/shop"), "/v2");
        assert_eq!(path_after(&rewrite(""), "/shop/cart"), "/shop/cart", "no rewrite: as it came");
    }

    #[test]
    fn fields_are_set_and_removed() {
        let rules = rewrite(
            "[request_headers]\nset = { \"x-from\" = \"rampart\" }\nremove = [\"x-debug\"]\n\
             [response_headers]\nremove = [\"server\"]",
        );
        let mut parts = http::Request::get("/shop")
            .header("x-debug", "1")
            .header("x-from", "client")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        rules.request(&mut parts);
        assert_eq!(parts.headers.get("x-from").unwrap(), "rampart");
        assert!(!parts.headers.contains_key("x-debug"));
        assert!(rules.changes_answers());
        let mut answer = HeaderMap::new();
        answer.insert("server", HeaderValue::from_static("upstream/1.0"));
        rules.response(&mut answer);
        assert!(answer.is_empty());
        let config: RouteConfig = toml::from_str("prefix = \"/\"\nupstreams = []\nrewrite_prefix = \"v2\"").unwrap();
        assert_eq!(Rewrite::new(&config).unwrap_err().0, "rewrite_prefix");
    }
}
