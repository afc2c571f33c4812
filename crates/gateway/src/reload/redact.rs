//! The configuration in force as `GET /admin/config` shows it: every key, with secrets hidden.
//! The admin token, passwords in URLs (the store, Redis) and key digests are replaced, so the
//! page can be pasted into a ticket.

use crate::config::GatewayConfig;
use serde_json::Value;

/// What stands in for a hidden value.
pub const REDACTED: &str = "[redacted]";

/// `config` as JSON, with its secrets hidden.
pub fn redacted(config: &GatewayConfig) -> Value {
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    hide(&mut value, None);
    value
}

fn hide(value: &mut Value, key: Option<&str>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                hide(member, Some(name));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| hide(item, key)),
        Value::String(text) => match key {
            Some("admin_token" | "secret" | "password" | "hash") => *text = REDACTED.to_owned(),
            _ => {
                if let Some(hidden) = without_password(text) {
                    *text = hidden;
                }
            }
        },
        _ => {}
    }
}

/// `url` with the password of its user part hidden, if it has one (`postgres://u:p@h/db`).
fn without_password(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (user_part, _) = rest[..authority_end].rsplit_once('@')?;
    let (user, _) = user_part.split_once(':')?;
    let host_and_rest = &rest[user_part.len()..];
    Some(format!("{scheme}://{user}:{REDACTED}{host_and_rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_tokens_and_digests_are_hidden_and_the_rest_is_shown() {
        let config: GatewayConfig = toml::from_str(
            r#"
            admin_token = "s3cret-admin"
            store = "postgres://rampart:hunter2@db:5432/rampart"
            [rate_limit]
            redis = "redis://:r3dis@cache:6379/0"
            [auth]
            keys = [{ id = "ci", tenant = "acme", hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000" }]
            "#,
        )
        .unwrap();
        let shown = redacted(&config).to_string();
        for secret in ["s3cret-admin", "hunter2", "r3dis", "sha256:0000"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert!(shown.contains("postgres://rampart:[redacted]@db:5432/rampart"), "{shown}");
        assert!(shown.contains("redis://:[redacted]@cache:6379/0"), "{shown}");
        assert!(shown.contains("\"tenant\":\"acme\""), "{shown}");
        assert_eq!(without_password("http://host:80/a@b"), None, "an @ in the path is no user part");
        assert_eq!(without_password("postgres://user@host/db"), None, "no password, nothing to hide");
    }
}
