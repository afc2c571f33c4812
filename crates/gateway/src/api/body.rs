//! Reading JSON request bodies with a size limit, a content-type check and precise errors.

use crate::problem::{Problem, ProblemCode};
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;

/// A request's JSON body as the bytes the client sent: declared `application/json` (else 415),
/// read within `max_body_bytes` (else 413) and within the body's pace (else 408). Parse it with
/// [`parse_json`], which may borrow from it.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(request: axum::extract::Request, router: &S) -> Result<Self, Problem> {
        let (mut parts, body) = request.into_parts();
        let state =
            <crate::AppState as axum::extract::FromRequestParts<S>>::from_request_parts(&mut parts, router).await?;
        require_json(&parts.headers)?;
        Ok(Self(read_limited(&parts.headers, body, state.config.max_body_bytes).await?))
    }
}

/// Checks that the request declares a JSON body (`application/json` or a `+json` type).
pub fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let unsupported = |got: &str| {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemCode::InvalidRequest,
            format!("the body must be JSON, sent with Content-Type: application/json (got {got})"),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("no Content-Type"));
    };
    let text = value.to_str().map_err(|_| unsupported("an unreadable Content-Type"))?;
    let essence = text.split(';').next().unwrap_or_default().trim();
    let is_json = essence.eq_ignore_ascii_case("application/json")
        || essence.rsplit_once('+').is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"));
    if is_json { Ok(()) } else { Err(unsupported(text)) }
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ProblemCode::PayloadTooLarge,
        format!("the body is over the limit of {limit} bytes"),
    )
    .with("limit_bytes", limit)
}

/// The most of a refused body read and thrown away so that the client, still sending it, gets
/// the 413 rather than a reset connection. Bodies larger still are cut off...
const DISCARD_LIMIT: usize = 8 << 20;

/// ...and so are bodies that take longer than this to throw away: the answer must not wait on
/// a client that sends slowly, or not at all.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads the whole body, refusing it with 413 as soon as it passes `limit` bytes (at once when
/// `Content-Length` already says so).
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        discard(body).await;
        return Err(too_large(limit));
    }
    let mut body = body;
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(unreadable)?;
        let Ok(data) = frame.into_data() else { continue };
        if collected.len() + data.len() > limit {
            discard(body).await;
            return Err(too_large(limit));
        }
        collected.extend_from_slice(&data);
    }
    Ok(collected.freeze())
}

/// The answer for a body that could not be read: 408 when it came too slowly, 400 when it was cut
/// off or malformed.
fn unreadable(error: axum::Error) -> Problem {
    let error = error.into_inner();
    match crate::client_body::ClientBodyError::find(&*error) {
        Some(found) if found.status() == StatusCode::REQUEST_TIMEOUT => {
            Problem::new(StatusCode::REQUEST_TIMEOUT, ProblemCode::RequestTimeout, found.to_string())
        }
        Some(found) => Problem::bad_request(found.to_string()),
        None => Problem::bad_request(format!("the body could not be read: {error}")),
    }
}

/// Reads and drops up to [`DISCARD_LIMIT`] bytes of a body, for at most [`DISCARD_TIME`].
async fn discard(body: Body) {
    let mut rest = Limited::new(body, DISCARD_LIMIT);
    let _ = tokio::time::timeout(DISCARD_TIME, async { while let Some(Ok(_)) = rest.frame().await {} }).await;
}

/// Parses a JSON object, telling a syntax error (400) from a document of the wrong shape (422),
/// with serde's line, column and field in the detail. Arrays are refused even where serde would
/// read them as a struct.
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Problem> {
    let parsed = serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => Problem::unprocessable(format!("the JSON does not fit the request: {error}")),
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::bad_request(format!("the body is not valid JSON: {error}"))
            }
        }
    })?;
    if !bytes.trim_ascii_start().starts_with(b"{") {
        return Err(Problem::unprocessable("the body must be a JSON object, like {\"kind\": \"echo\"}"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(require_json(&with_type("application/json")).is_ok());
        assert!(require_json(&with_type("Application/JSON; charset=utf-8")).is_ok());
        assert!(require_json(&with_type("application/vnd.rampart+json")).is_ok());
        for wrong in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
            let problem = require_json(&with_type(wrong)).unwrap_err();
            assert_eq!(problem.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{wrong}");
        }
        assert!(require_json(&HeaderMap::new()).is_err());
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_even_without_a_length() {
        let problem = read_limited(&HeaderMap::new(), Body::from(vec![b'x'; 11]), 10).await.unwrap_err();
        assert_eq!(problem.code(), ProblemCode::PayloadTooLarge);
        let bytes = read_limited(&HeaderMap::new(), Body::from("0123456789"), 10).await.unwrap();
        assert_eq!(&bytes[..], b"0123456789");
    }

    #[test]
    fn syntax_and_shape_errors_differ() {
        #[derive(Deserialize, Debug)]
        struct Sample {
            n: u8,
        }
        assert_eq!(parse_json::<Sample>(b"{").unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(parse_json::<Sample>(b"{\"n\": \"x\"}").unwrap_err().status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(parse_json::<Sample>(b" [1]").unwrap_err().status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(parse_json::<Sample>(b"nope").unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(parse_json::<Sample>(b"{\"n\": 1}").unwrap().n, 1);
    }
}
