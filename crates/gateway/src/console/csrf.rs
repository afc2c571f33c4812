//! Cross-site request forgery defence for the console's forms: a random token in a
//! `SameSite=Strict` cookie that every form repeats in a hidden field (the double-submit
//! pattern), and a browser's `Origin` and `Sec-Fetch-Site` that must say the form came from the
//! console itself. A page on another site can make a browser post to the console, but can
//! neither read the cookie nor send the matching field, and its browser names its origin.

use http::{HeaderMap, HeaderValue, header};
use rampart_common::secret::SecretDigest;

/// The cookie holding the token.
pub(super) const COOKIE: &str = "rampart_csrf";

/// The token a page's forms carry, and the cookie to set when the browser has none yet.
pub(super) struct Token {
    /// The token.
    pub(super) value: String,
    /// `Set-Cookie` for a new token.
    pub(super) set_cookie: Option<HeaderValue>,
}

/// The browser's token, or a new one.
pub(super) fn token(headers: &HeaderMap) -> Token {
    if let Some(value) = rampart_common::http::cookie::get(headers, COOKIE).filter(|value| well_formed(value)) {
        return Token { value: value.to_owned(), set_cookie: None };
    }
    let value = uuid::Uuid::new_v4().simple().to_string();
    let cookie = format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict");
    Token { value, set_cookie: HeaderValue::from_str(&cookie).ok() }
}

fn well_formed(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Why a form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    /// No token cookie, or the field does not repeat it.
    #[error("the form's anti-forgery token is missing or does not match; reload the page and try again")]
    Token,
    /// The browser says the form came from another site.
    #[error("the form was sent from another site")]
    CrossSite,
}

/// Whether a form posted with `headers` and carrying `field` came from the console.
pub(super) fn check(headers: &HeaderMap, field: Option<&str>) -> Result<(), Refusal> {
    check_origin(headers)?;
    check_token(headers, field)
}

/// Whether the browser says the form came from this site (a request that names no origin, as a
/// script's, passes: it has the token to show instead).
pub(super) fn check_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let site = headers.get("sec-fetch-site").and_then(|value| value.to_str().ok());
    if site.is_some_and(|site| site != "same-origin" && site != "none") {
        return Err(Refusal::CrossSite);
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
            return Err(Refusal::CrossSite);
        }
    }
    Ok(())
}

/// Whether the cookie's token and the form's match, compared as the project compares secrets.
pub(super) fn check_token(headers: &HeaderMap, field: Option<&str>) -> Result<(), Refusal> {
    let cookie = rampart_common::http::cookie::get(headers, COOKIE).filter(|value| well_formed(value));
    match (cookie, field) {
        (Some(cookie), Some(field))
            if SecretDigest::of(cookie.as_bytes()).matches(&SecretDigest::of(field.as_bytes())) =>
        {
            Ok(())
        }
        _ => Err(Refusal::Token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_new_browser_gets_a_token_and_keeps_it() {
        let fresh = token(&HeaderMap::new());
        assert!(well_formed(&fresh.value));
        let cookie = fresh.set_cookie.unwrap();
        assert!(cookie.to_str().unwrap().contains("SameSite=Strict"));
        let again = token(&headers(&[("cookie", "rampart_csrf=0123456789abcdef0123456789abcdef")]));
        assert_eq!((again.value.as_str(), again.set_cookie), (TOKEN, None));
    }

    #[test]
    fn forms_must_repeat_the_token_and_come_from_the_console() {
        let same = headers(&[
            ("cookie", "rampart_csrf=0123456789abcdef0123456789abcdef"),
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(check(&same, Some(TOKEN)), Ok(()));
        assert_eq!(check(&same, Some("0123456789abcdef0123456789abcdee")), Err(Refusal::Token));
        assert_eq!(check(&same, None), Err(Refusal::Token));
        let no_cookie = headers(&[("host", "127.0.0.1:9090")]);
        assert_eq!(check(&no_cookie, Some(TOKEN)), Err(Refusal::Token));
        let elsewhere = headers(&[
            ("cookie", "rampart_csrf=0123456789abcdef0123456789abcdef"),
            ("host", "127.0.0.1:9090"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(check(&elsewhere, Some(TOKEN)), Err(Refusal::CrossSite));
        let fetch =
            headers(&[("cookie", "rampart_csrf=0123456789abcdef0123456789abcdef"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(check(&fetch, Some(TOKEN)), Err(Refusal::CrossSite));
    }
}
