//! `rampart keys new`: a key and the config entry that stores only its digest.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[tokio::test]
async fn a_new_key_comes_with_an_entry_the_gateway_accepts_and_that_holds_no_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["keys", "new", "--id", "ci", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let key = text.lines().nth(1).unwrap().trim_start_matches("# ").to_owned();
    assert!(key.starts_with("rk_") && key.len() == 67, "{text}");
    let entry: String = text.lines().filter(|line| !line.starts_with('#')).collect::<Vec<_>>().join("\n");
    assert!(!entry.contains(&key), "the entry stores only the digest");
    let mut config = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut config,
        format!("[auth]\n{entry}\n").replace("[auth]\n[[auth.keys]]", "[[auth.keys]]").as_bytes(),
    )
    .unwrap();
    let parsed = rampart_gateway::config::GatewayConfig::from_file(config.path()).unwrap();
    let auth = parsed.auth.unwrap();
    assert_eq!((auth.keys[0].id.as_str(), auth.keys[0].tenant.as_str()), ("ci", "acme"));
    let authenticator = rampart_gateway::auth::Authenticator::new(&auth).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-api-key", key.parse().unwrap());
    let identity = authenticator.authenticate(&headers, rampart_gateway::config::AuthMode::Required).await.unwrap();
    assert_eq!(identity.unwrap().tenant.as_ref(), "acme");
}
