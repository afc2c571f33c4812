//! HTTPS at the front door, on the gateway binary in front of a real worker, with real clients
//! (reqwest, curl, and rustls directly where a test must hold one connection or read the
//! certificate served): TLS 1.3 and 1.2 with h2 and HTTP/1.1, certificates by SNI, client
//! certificates, and certificates replaced on disk while connections stay open.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use rampart_common::tls::client::{Trust, client_config};
use rampart_testkit::{Process, admin_addr, pki::Authority, plain_addr, spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, StatusCode, Version};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use std::{path::Path, sync::Arc, time::Duration};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A gateway serving HTTPS with `tls` (the body of its `[tls]` section) in front of a worker.
async fn tls_gateway(dir: &Path, tls: &str) -> (Process, Process) {
    let worker = spawn_worker(&[]).await;
    let config = dir.join("gateway.toml");
    std::fs::write(&config, format!("[tls]\n{tls}")).unwrap();
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.to_str().unwrap()]).await;
    (gateway, worker)
}

fn https_client(ca: &Path) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    Client::builder().tls_built_in_root_certs(false).add_root_certificate(ca).https_only(true)
}

fn port(gateway: &Process) -> u16 {
    gateway.listen_addr().rsplit_once(':').unwrap().1.parse().unwrap()
}

/// A TLS connection to the gateway as `name`, trusting `ca`, offering HTTP/1.1 only.
async fn connect(gateway: &Process, name: &str, ca: &Path) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = client_config(Trust::Bundle(ca), vec![b"http/1.1".to_vec()]).unwrap();
    let tcp = tokio::net::TcpStream::connect(gateway.listen_addr()).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

/// The leaf certificate a connection was shown.
fn served(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

fn leaf_in(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path).unwrap().next().unwrap().unwrap()
}

/// One HTTP/1.1 keep-alive request on an open connection; the status code.
async fn get_health(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> u16 {
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.unwrap().unwrap();
        assert!(read > 0, "the connection closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if body.len() >= length {
                return head[9..12].parse().unwrap();
            }
        }
    }
}

#[tokio::test]
async fn reqwest_and_curl_get_tls_1_3_with_h2_or_http1_and_plain_http_stays_on_its_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let server = ca.server("gateway", "gateway", &["localhost", "127.0.0.1"]);
    let tls = format!("cert = {:?}\nkey = {:?}\nplain_listen = \"127.0.0.1:0\"\n", server.cert, server.key);
    let (gateway, _worker) = tls_gateway(dir.path(), &tls).await;
    let base = format!("https://localhost:{}", port(&gateway));
    let echo = serde_json::json!({"kind": "echo", "payload": {"over": "tls"}});

    let h2 = https_client(&ca.ca).resolve("localhost", gateway.listen_addr().parse().unwrap()).build().unwrap();
    let answer = h2.post(format!("{base}/api/process")).json(&echo).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.version(), Version::HTTP_2, "ALPN picks h2 when the client offers it");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["result"], echo["payload"]);

    let h1 =
        https_client(&ca.ca).http1_only().resolve("localhost", gateway.listen_addr().parse().unwrap()).build().unwrap();
    let answer = h1.post(format!("{base}/api/process")).json(&echo).send().await.unwrap();
    assert_eq!((answer.status(), answer.version()), (StatusCode::OK, Version::HTTP_11));

    for (flags, version, alpn) in [
        (&["--http2", "--tlsv1.3"][..], "TLSv1.3", "h2"),
        (&["--http1.1", "--tlsv1.3"][..], "TLSv1.3", "http/1.1"),
        (&["--http1.1", "--tlsv1.2", "--tls-max", "1.2"][..], "TLSv1.2", "http/1.1"),
    ] {
        let curl = std::process::Command::new("curl")
            .args(["-sS", "-v", "--fail", "--cacert", ca.ca.to_str().unwrap()])
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", port(&gateway))])
            .args(flags)
            .arg(format!("{base}/health"))
            .output()
            .unwrap();
        let verbose = String::from_utf8_lossy(&curl.stderr);
        assert!(curl.status.success(), "curl {flags:?}: {verbose}");
        assert!(verbose.contains(&format!("SSL connection using {version}")), "curl {flags:?}: {verbose}");
        assert!(verbose.contains(&format!("ALPN: server accepted {alpn}")), "curl {flags:?}: {verbose}");
    }
    let old = std::process::Command::new("curl")
        .args(["-sS", "--cacert", ca.ca.to_str().unwrap(), "--tlsv1.1", "--tls-max", "1.1"])
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", port(&gateway))])
        .arg(format!("{base}/health"))
        .output()
        .unwrap();
    assert!(!old.status.success(), "TLS 1.1 is refused");

    // Our own load generator over TLS, HTTP/1.1 and h2, trusting the CA or not checking at all.
    for flags in [&["--cacert", ca.ca.to_str().unwrap()][..], &["--insecure", "--http2"][..]] {
        let load = std::process::Command::new(rampart_testkit::binary("rampart-load"))
            .args(["-n", "40", "-c", "2", "--json"])
            .args(flags)
            .arg(format!("{base}/health"))
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&load.stdout)
            .unwrap_or_else(|_| panic!("rampart-load {flags:?}: {}", String::from_utf8_lossy(&load.stderr)));
        assert_eq!(report["statuses"]["200"], 40, "rampart-load {flags:?}: {report}");
    }
    let unchecked = std::process::Command::new(rampart_testkit::binary("rampart-load"))
        .args(["-n", "1", &format!("{base}/health")])
        .output()
        .unwrap();
    assert!(!unchecked.status.success());
    assert!(String::from_utf8_lossy(&unchecked.stderr).contains("--cacert"), "an https target says what it needs");

    let plain = Client::new().get(format!("http://{}/health", plain_addr(&gateway))).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK, "the plain listener serves the same gateway");
    let over_plain = Client::new().get(format!("http://{}/health", gateway.listen_addr())).send().await;
    assert!(over_plain.is_err(), "the TLS listener does not speak plain HTTP");
}

#[tokio::test]
async fn the_certificate_follows_the_name_the_client_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let default = ca.server("default", "default", &["localhost"]);
    let api = ca.server("api", "api", &["api.example.com"]);
    let tls = format!(
        "cert = {:?}\nkey = {:?}\n[[tls.sni]]\nname = \"API.example.com\"\ncert = {:?}\nkey = {:?}\n",
        default.cert, default.key, api.cert, api.key
    );
    let (gateway, _worker) = tls_gateway(dir.path(), &tls).await;
    assert_eq!(served(&connect(&gateway, "api.example.com", &ca.ca).await), leaf_in(&api.cert));
    assert_eq!(served(&connect(&gateway, "localhost", &ca.ca).await), leaf_in(&default.cert));
}

#[tokio::test]
async fn client_certificates_from_the_bundle_are_accepted_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let clients = Authority::new(dir.path(), "clients");
    let strangers = Authority::new(dir.path(), "strangers");
    let server = ca.server("gateway", "gateway", &["localhost"]);
    let tls = format!("cert = {:?}\nkey = {:?}\nclient_ca = {:?}\n", server.cert, server.key, clients.ca);
    let (gateway, _worker) = tls_gateway(dir.path(), &tls).await;
    let url = format!("https://localhost:{}/health", port(&gateway));
    let address = gateway.listen_addr().parse().unwrap();
    let identity = |issued: &rampart_testkit::pki::Issued| {
        let mut pem = std::fs::read(&issued.cert).unwrap();
        pem.extend(std::fs::read(&issued.key).unwrap());
        reqwest::Identity::from_pem(&pem).unwrap()
    };

    let member = clients.client("member", "member");
    let with = https_client(&ca.ca).identity(identity(&member)).resolve("localhost", address).build().unwrap();
    assert_eq!(with.get(&url).send().await.unwrap().status(), StatusCode::OK);

    let without = https_client(&ca.ca).resolve("localhost", address).build().unwrap();
    assert!(without.get(&url).send().await.is_err(), "no client certificate: no connection");

    let stranger = strangers.client("stranger", "stranger");
    let other = https_client(&ca.ca).identity(identity(&stranger)).resolve("localhost", address).build().unwrap();
    assert!(other.get(&url).send().await.is_err(), "a certificate from another CA: no connection");
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_handshakes_while_open_connections_go_on_and_a_broken_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let first = ca.server("gateway", "first", &["localhost"]);
    let tls = format!("cert = {:?}\nkey = {:?}\n", first.cert, first.key);
    let (gateway, _worker) = tls_gateway(dir.path(), &tls).await;
    let first_leaf = leaf_in(&first.cert);

    let mut open = connect(&gateway, "localhost", &ca.ca).await;
    assert_eq!(served(&open), first_leaf);
    assert_eq!(get_health(&mut open).await, 200);

    // A new certificate written over the old files (key first, as a deployment tool would).
    let second = ca.server("second", "second", &["localhost"]);
    std::fs::copy(&second.key, &first.key).unwrap();
    std::fs::copy(&second.cert, &first.cert).unwrap();
    let second_leaf = leaf_in(&second.cert);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while served(&connect(&gateway, "localhost", &ca.ca).await) != second_leaf {
        assert!(tokio::time::Instant::now() < deadline, "new handshakes never saw the new certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_health(&mut open).await, 200, "the connection opened before the change goes on");

    // A broken file: the certificate in use stays, and the log and a metric say why.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !gateway.output().contains("cannot use the new TLS files") {
        assert!(tokio::time::Instant::now() < deadline, "no reason logged: {}", gateway.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gateway.output().contains("gateway.pem"), "the log names the file: {}", gateway.output());
    assert_eq!(served(&connect(&gateway, "localhost", &ca.ca).await), second_leaf);
    assert_eq!(get_health(&mut open).await, 200);
    let metrics = Client::new().get(format!("http://{}/metrics", admin_addr(&gateway))).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("rampart_tls_reload_errors_total{listener=\"public\"} 1"), "{metrics}");
}

#[tokio::test]
async fn sighup_reads_the_certificates_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let first = ca.server("gateway", "first", &["localhost"]);
    let tls = format!("cert = {:?}\nkey = {:?}\n", first.cert, first.key);
    let (gateway, _worker) = tls_gateway(dir.path(), &tls).await;
    let metrics = || async {
        let answer = Client::new().get(format!("http://{}/metrics", admin_addr(&gateway))).send().await.unwrap();
        answer.text().await.unwrap()
    };
    gateway.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !metrics().await.contains("rampart_tls_reloads_total{listener=\"public\"} 1") {
        assert!(tokio::time::Instant::now() < deadline, "SIGHUP did not reload: {}", gateway.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = https_client(&ca.ca)
        .resolve("localhost", gateway.listen_addr().parse().unwrap())
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/health", port(&gateway)))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "the gateway lives on after SIGHUP");
}

#[tokio::test]
async fn workers_over_tls_take_calls_only_from_gateways_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let served = ca.server("worker", "worker", &["worker.test"]);
    let gateways = Authority::new(dir.path(), "gateways");
    let client = gateways.client("gateway", "gateway");
    let path = |path: &Path| path.to_str().unwrap().to_owned();
    let worker = spawn_worker(&[
        "--tls-cert",
        &path(&served.cert),
        "--tls-key",
        &path(&served.key),
        "--tls-client-ca",
        &path(&gateways.ca),
    ])
    .await;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[worker_tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\nserver_name = \"worker.test\"\n",
            ca.ca, client.cert, client.key
        ),
    )
    .unwrap();
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.to_str().unwrap()]).await;
    let echo = serde_json::json!({"kind": "echo", "payload": "over mTLS"});
    let answer =
        Client::new().post(format!("http://{}/api/process", gateway.listen_addr())).json(&echo).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{}", answer.text().await.unwrap());

    // A caller that trusts the worker but has no client certificate gets nothing.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca.ca).unwrap()))
        .domain_name("worker.test");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", worker.listen_addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    let mut stranger = rampart_proto::v1::worker_client::WorkerClient::new(channel);
    assert!(stranger.describe(rampart_proto::v1::DescribeRequest {}).await.is_err(), "no client certificate, no call");

    // Nor does a gateway speaking plain gRPC.
    let plain = spawn_gateway(&[worker_url(&worker)], &[]).await;
    let answer =
        Client::new().post(format!("http://{}/api/process", plain.listen_addr())).json(&echo).send().await.unwrap();
    assert_ne!(answer.status(), StatusCode::OK);
}
