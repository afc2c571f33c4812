//! Request paths in one spelling before anything routes on them (RFC 3986 §6.2.2): percent-encoded
//! unreserved characters decoded, `.` and `..` segments resolved, repeated slashes collapsed. The
//! gateway routes and forwards the normal form, so no spelling of a path (`/ngx/../admin`,
//! `/%61pi/process`, `//api/process`) reaches what its plain form would not.
//!
//! Encoded slashes, backslashes and NULs are refused (400): upstreams disagree on whether they
//! separate segments, which is exactly how a path slips past a prefix.

/// Why a path cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("the path has a malformed percent-encoding (a % must be followed by two hex digits)")]
    BadEncoding,
    /// `%2F`, `%5C`, `%00` or a literal backslash.
    #[error("the path has an encoded slash, a backslash or a NUL, which upstreams read differently")]
    AmbiguousSeparator,
    /// Not an absolute path.
    #[error("the path must start with /")]
    NotAbsolute,
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` may need work: only paths with `%`, `\`, `//` or a dot segment do, so the
/// common case costs one scan and no allocation.
fn needs_work(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(at, &byte)| match byte {
        b'%' | b'\\' => true,
        b'/' => matches!(bytes.get(at + 1), Some(b'/' | b'.')),
        _ => false,
    })
}

/// The normal form of `path`, or `None` when it is normal already.
pub fn normalise(path: &str) -> Result<Option<String>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if !needs_work(path) {
        return Ok(None);
    }
    // Decode what must be decoded, keep the rest encoded (in upper-case hex, the normal form).
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b'%' => {
                let (high, low) =
                    match (bytes.get(at + 1).copied().and_then(hex), bytes.get(at + 2).copied().and_then(hex)) {
                        (Some(high), Some(low)) => (high, low),
                        _ => return Err(PathError::BadEncoding),
                    };
                let value = high << 4 | low;
                if matches!(value, b'/' | b'\\' | 0) {
                    return Err(PathError::AmbiguousSeparator);
                }
                if is_unreserved(value) {
                    decoded.push(char::from(value));
                } else {
                    decoded.push('%');
                    decoded.push(char::from(b"0123456789ABCDEF"[usize::from(high)]));
                    decoded.push(char::from(b"0123456789ABCDEF"[usize::from(low)]));
                }
                at += 3;
            }
            b'\\' => return Err(PathError::AmbiguousSeparator),
            _ => {
                // The path came from a parsed URI: every other byte is visible ASCII.
                decoded.push(char::from(byte));
                at += 1;
            }
        }
    }
    // Resolve dot segments and drop empty ones; a path ending in a dot segment or a slash keeps
    // its trailing slash.
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded[1..].split('/') {
        trailing_slash = false;
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            segment => segments.push(segment),
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        normal.push('/');
    }
    Ok(if normal == path { None } else { Some(normal) })
}

/// Whether `path` lies under `prefix` on a segment boundary: `/raw` covers `/raw` and
/// `/raw/x`, never `/rawfoo`.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_left_alone() {
        for path in ["/", "/api/process", "/a/b.c/d", "/files/%20name", "/x-y_z~"] {
            assert_eq!(normalise(path), Ok(None), "{path}");
        }
    }

    #[test]
    fn every_spelling_comes_to_one_form() {
        for (path, normal) in [
            ("/ngx/../admin", "/admin"),
            ("/ngx/%2e%2e/admin", "/admin"),
            ("/ngx/%2E%2e/admin", "/admin"),
            ("/%61pi/process", "/api/process"),
            ("//api/process", "/api/process"),
            ("/api//jobs///1", "/api/jobs/1"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../x", "/x"),
            ("/..", "/"),
            ("/a/%7e/%41", "/a/~/A"),
            ("/q/%3f%20", "/q/%3F%20"),
        ] {
            assert_eq!(normalise(path), Ok(Some(normal.to_owned())), "{path}");
        }
    }

    #[test]
    fn ambiguous_and_malformed_paths_are_refused() {
        assert_eq!(normalise("/ngx/..%2Fadmin"), Err(PathError::AmbiguousSeparator));
        assert_eq!(normalise("/ngx/..%5cadmin"), Err(PathError::AmbiguousSeparator));
        assert_eq!(normalise("/a%00b"), Err(PathError::AmbiguousSeparator));
        assert_eq!(normalise("/a\\..\\b"), Err(PathError::AmbiguousSeparator));
        assert_eq!(normalise("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalise("/a%4"), Err(PathError::BadEncoding));
        assert_eq!(normalise("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(under_prefix("/raw", "/raw") && under_prefix("/raw/x", "/raw"));
        assert!(!under_prefix("/rawfoo", "/raw"));
        assert!(under_prefix("/anything", "/") && under_prefix("/raw/x", "/raw/"));
        assert!(!under_prefix("/raw", "/raw/"));
    }
}
