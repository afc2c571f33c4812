//! JSON Web Tokens at the front door, on the gateway binary in front of a real worker, with the
//! key set served over HTTPS by a real server in the test: ES256, EdDSA and RS256 tokens, expired,
//! for another audience, `alg: none`, and a key that appears in the set after the gateway started
//! (fetched again at once, but never twice within `min_refresh`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rampart_testkit::{pki::Authority, spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A signing key and its public JWK.
struct Signer {
    algorithm: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

fn ec_signer(kid: &'static str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw(); // 0x04 || x || y
    Signer {
        algorithm: Algorithm::ES256,
        key: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}),
    }
}

fn ed_signer(kid: &'static str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    Signer {
        algorithm: Algorithm::EdDSA,
        key: EncodingKey::from_ed_der(&pair.serialize_der()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "x": B64.encode(pair.public_key_raw())}),
    }
}

/// An RSA key from the `openssl` command (ring, which the tests use otherwise, makes no RSA keys).
fn rsa_signer(dir: &Path, kid: &'static str) -> Signer {
    let path = dir.join("rsa.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let modulus =
        std::process::Command::new("openssl").args(["rsa", "-noout", "-modulus", "-in"]).arg(&path).output().unwrap();
    let modulus = String::from_utf8(modulus.stdout).unwrap();
    let modulus = hex::decode(modulus.trim().trim_start_matches("Modulus=")).unwrap();
    Signer {
        algorithm: Algorithm::RS256,
        key: EncodingKey::from_rsa_pem(&std::fs::read(&path).unwrap()).unwrap(),
        jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": B64.encode(modulus), "e": "AQAB"}),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(signer: &Signer, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(signer.algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &signer.key).unwrap()
}

fn claims(audience: &str, expires_in: i64, scope: Option<&str>) -> Value {
    let mut claims = json!({
        "iss": "https://login.test/", "aud": audience, "sub": "user-1", "org_id": "acme",
        "iat": now(), "exp": now().checked_add_signed(expires_in).unwrap(),
    });
    if let Some(scope) = scope {
        claims["scope"] = json!(scope);
    }
    claims
}

/// An HTTPS server answering every request with the current key set, counting requests.
async fn jwks_server(dir: &Path, ca: &Authority, set: Arc<Mutex<Value>>, fetches: Arc<AtomicUsize>) -> u16 {
    let issued = ca.server("jwks", "jwks", &["localhost"]);
    let files = rampart_common::tls::server::ServerFiles {
        default: rampart_common::tls::server::CertificateFiles { cert: issued.cert, key: issued.key },
        sni: Vec::new(),
        client_ca: None,
        alpn: vec![b"http/1.1".to_vec()],
    };
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(rampart_common::tls::server::server_config(&files).unwrap()));
    let _ = dir;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (acceptor, set, fetches) = (acceptor.clone(), Arc::clone(&set), Arc::clone(&fetches));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |_request| {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = set.lock().unwrap().to_string();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn tokens_are_verified_against_a_key_set_fetched_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let (ec, ed, rsa) = (ec_signer("ec-1"), ed_signer("ed-1"), rsa_signer(dir.path(), "rsa-1"));
    let set = Arc::new(Mutex::new(json!({"keys": [ec.jwk, ed.jwk]})));
    let fetches = Arc::new(AtomicUsize::new(0));
    let port = jwks_server(dir.path(), &ca, Arc::clone(&set), Arc::clone(&fetches)).await;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\ndefault = \"required\"\n[auth.jwt]\njwks = \"https://localhost:{port}/jwks.json\"\n\
             jwks_ca = {:?}\nissuer = \"https://login.test/\"\naudience = \"rampart\"\n\
             tenant_claim = \"org_id\"\nleeway = \"5s\"\nmin_refresh = \"1s\"\n",
            ca.ca
        ),
    )
    .unwrap();
    let worker = spawn_worker(&[]).await;
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.to_str().unwrap()]).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "the key set is fetched once at start");
    let http = Client::new();
    let url = format!("http://{}/api/process?data=1", gateway.listen_addr());
    let call = |token: String| {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let refused = |answer: reqwest::Response, reason: &'static str| async move {
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{reason}");
        assert!(answer.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
        let problem: Value = answer.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains(reason), "{problem}");
    };

    assert_eq!(call(token(&ec, "ec-1", &claims("rampart", 60, None))).await.status(), StatusCode::OK, "ES256");
    assert_eq!(call(token(&ed, "ed-1", &claims("rampart", 60, None))).await.status(), StatusCode::OK, "EdDSA");
    refused(call(token(&ec, "ec-1", &claims("rampart", -60, None))).await, "expired").await;
    assert_eq!(
        call(token(&ec, "ec-1", &claims("rampart", -2, None))).await.status(),
        StatusCode::OK,
        "two seconds past exp is within the leeway"
    );
    refused(call(token(&ec, "ec-1", &claims("billing", 60, None))).await, "audience").await;
    let mut no_tenant = claims("rampart", 60, None);
    no_tenant.as_object_mut().unwrap().remove("org_id");
    refused(call(token(&ec, "ec-1", &no_tenant)).await, "tenant").await;
    let unsigned = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT","kid":"ec-1"}"#),
        B64.encode(claims("rampart", 60, None).to_string())
    );
    refused(call(unsigned).await, "not a valid JWT").await;
    let forged = token(&ed, "ec-1", &claims("rampart", 60, None));
    refused(call(forged).await, "algorithm").await;

    // A key published after the start: the first token that names it fetches the set again.
    set.lock().unwrap()["keys"].as_array_mut().unwrap().push(rsa.jwk.clone());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rs256 = token(&rsa, "rsa-1", &claims("rampart", 60, None));
    assert_eq!(call(rs256.clone()).await.status(), StatusCode::OK, "RS256");
    assert_eq!(call(rs256.clone()).await.status(), StatusCode::OK, "a verified token, remembered");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // Forged key ids do not make the gateway fetch again within min_refresh.
    for forged in ["x-1", "x-2", "x-3", "x-4", "x-5"] {
        refused(call(token(&rsa, forged, &claims("rampart", 60, None))).await, "key the gateway does not know").await;
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "no fetch within min_refresh of the last");

    // A key withdrawn from the set stops vouching for its tokens, remembered or not.
    set.lock().unwrap()["keys"].as_array_mut().unwrap().retain(|key| key["kid"] != "rsa-1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(call(token(&rsa, "x-6", &claims("rampart", 60, None))).await, "key the gateway does not know").await;
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
    refused(call(rs256).await, "key the gateway does not know").await;

    // Scopes from the token: process:echo opens the echo, not the jobs API.
    let scoped = token(&ec, "ec-1", &claims("rampart", 60, Some("openid process:echo")));
    assert_eq!(call(scoped.clone()).await.status(), StatusCode::OK);
    let jobs = http
        .post(format!("http://{}/api/jobs", gateway.listen_addr()))
        .bearer_auth(scoped)
        .json(&json!({"kind": "echo", "payload": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), StatusCode::FORBIDDEN);
}
