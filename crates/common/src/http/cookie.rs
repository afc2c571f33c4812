//! Reading a cookie a browser sent, for the pages that use one (the console's session and its
//! cross-site request forgery token).

use http::{HeaderMap, header};
use std::fmt::Write as _;

/// The value of the cookie `name` in `headers` (the first, if it is sent more than once).
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// `text` with everything but unreserved characters percent-encoded, for a query parameter.
pub fn encode_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            encoded.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_a_cookie_among_others_and_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; session=abc; b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("late=\"q\""));
        assert_eq!(get(&headers, "session"), Some("abc"));
        assert_eq!(get(&headers, "late"), Some("q"));
        assert_eq!(get(&headers, "sess"), None, "a prefix of a name is another name");
        assert_eq!(get(&HeaderMap::new(), "session"), None);
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("/console/jobs?status=dead&q=a b"), "/console/jobs%3Fstatus%3Ddead%26q%3Da%20b");
    }
}
