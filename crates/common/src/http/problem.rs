//! Problem details (RFC 9457, `application/problem+json`): the one way every Rampart listener
//! renders an error, whatever produced it (a handler, the connection layer, an admin route).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value};

/// The media type of problem details.
pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(flatten)]
    extensions: &'a Map<String, Value>,
}

/// The JSON document of a problem with a stable `code`, a fixed `title` for that code, a
/// human-readable `detail` and any extra members.
pub fn document(status: StatusCode, code: &str, title: &str, detail: &str, extensions: &Map<String, Value>) -> Vec<u8> {
    let document = Document {
        kind: format!("urn:rampart:problem:{code}"),
        title,
        status: status.as_u16(),
        detail,
        code,
        extensions,
    };
    // Serialising strings and JSON values cannot fail; the fallback keeps the type honest.
    serde_json::to_vec(&document).unwrap_or_else(|_| b"{}".to_vec())
}

/// A problem answer with no extra members, for the routes that need nothing more.
pub fn response(status: StatusCode, code: &str, title: &str, detail: impl AsRef<str>) -> Response {
    let body = document(status, code, title, detail.as_ref(), &Map::new());
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// The fallback answer of a router for a path it does not serve: 404 `not_found`.
pub async fn not_found(uri: http::Uri) -> Response {
    response(StatusCode::NOT_FOUND, "not_found", "No such route", format!("no route serves {}", uri.path()))
}

/// The fallback answer of a router for a method a route does not take: 405 `method_not_allowed`.
pub async fn method_not_allowed(method: http::Method, uri: http::Uri) -> Response {
    response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed on this route",
        format!("{} does not accept {method}", uri.path()),
    )
}

/// The whole HTTP/1.1 message for a problem, for the connection layer that answers before any
/// handler runs; the connection closes after it.
pub fn http1_message(status: StatusCode, code: &str, title: &str, detail: &str) -> Vec<u8> {
    let body = document(status, code, title, detail, &Map::new());
    let mut message = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {CONTENT_TYPE}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes();
    message.extend_from_slice(&body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_type_code_and_extensions() {
        let mut extensions = Map::new();
        extensions.insert("job_id".into(), "j1".into());
        let bytes = document(StatusCode::CONFLICT, "profile_busy", "Busy", "try later", &extensions);
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(value["type"], "urn:rampart:problem:profile_busy");
        assert_eq!(value["status"], 409);
        assert_eq!(value["job_id"], "j1");
    }

    #[test]
    fn http1_messages_are_complete() {
        let message = http1_message(StatusCode::URI_TOO_LONG, "uri_too_long", "The URI is too long", "x");
        let text = String::from_utf8(message).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(body.contains("\"code\":\"uri_too_long\""), "{body}");
    }
}
