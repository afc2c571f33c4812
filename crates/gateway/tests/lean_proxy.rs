//! The lean HTTP/1.1 forwarding path on a real gateway: every framing an upstream may answer
//! with comes back intact, a connection moves to hyper when a request needs it, kept-alive
//! upstream connections are reused (and replaced when the upstream dropped them), the header
//! deadline holds, a client that leaves is counted as 499, and every answer is the one hyper's
//! path gives for the same request.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use rampart_testkit::{Process, admin_addr, spawn_gateway, spawn_worker, worker_url};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use support::{
    config_file,
    raw::{RawAnswer, exchange, parse_answers, read_until_quiet},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// A backend over raw sockets whose answer each path chooses, recording every request head it
/// reads and every connection it accepts.
struct Canned {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

/// 1 MiB of body, more than one read.
const BIG: usize = 1 << 20;

fn answer_for(path: &str, head_request: bool) -> (Vec<u8>, bool) {
    let length =
        |body: &str| format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n", body.len());
    let (head, body, closes): (String, Vec<u8>, bool) = match path {
        "/app/len" => (length("hello") + "x-kept: yes\r\nconnection: x-kept\r\n\r\n", b"hello".to_vec(), false),
        "/app/chunked" => (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n".into(),
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n".to_vec(),
            false,
        ),
        "/app/close" => ("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".into(), b"until the end".to_vec(), true),
        "/app/old" => ("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n".into(), b"old".to_vec(), true),
        "/app/busy" => (
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 4\r\n\r\n".into(),
            b"busy".to_vec(),
            false,
        ),
        "/app/big" => (format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n"), vec![b'b'; BIG], false),
        "/app/interim" => (
            "HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n".into(),
            b"ok".to_vec(),
            false,
        ),
        // Answers, then closes without saying so: the next request on this connection finds it
        // closed.
        "/app/once" => (length("once") + "\r\n", b"once".to_vec(), true),
        _ => (length("other") + "\r\n", b"other".to_vec(), false),
    };
    let mut bytes = head.into_bytes();
    if !head_request {
        bytes.extend_from_slice(&body);
    }
    (bytes, closes)
}

impl Canned {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, count) = (Arc::clone(&heads), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(Self::serve(stream, Arc::clone(&log)));
            }
        });
        Self { url, heads, connections }
    }

    async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<String>>>) {
        let mut buffer = Vec::new();
        let mut chunk = [0_u8; 8192];
        loop {
            let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") else {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buffer[..end + 4]).into_owned();
            buffer.drain(..end + 4);
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or("").to_owned(), words.next().unwrap_or("").to_owned());
            if path == "/health" {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                continue;
            }
            log.lock().unwrap().push(head);
            if path == "/app/slow" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            if path == "/app/drop" {
                return;
            }
            let (answer, closes) = answer_for(&path, method == "HEAD");
            if stream.write_all(&answer).await.is_err() || closes {
                return;
            }
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A gateway proxying `/app` to `backend`, with the lean path on or off, and a worker for the API.
async fn gateway(backend: &Canned, lean: bool, extra: &str) -> (Process, Process, tempfile::NamedTempFile) {
    let worker = spawn_worker(&["--name", "w"]).await;
    let config = config_file(&format!(
        "lean_proxy = {lean}\n{extra}\n[[routes]]\nprefix = \"/app\"\nupstreams = [\"{}\"]\n",
        backend.url
    ));
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.path().to_str().unwrap()]).await;
    (gateway, worker, config)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\n\r\n")
}

#[tokio::test]
async fn every_framing_comes_back_intact_on_one_kept_alive_connection_and_the_api_moves_it_to_hyper() {
    let backend = Canned::start().await;
    let (gateway, _worker, _config) = gateway(&backend, true, "").await;
    let mut pipelined = String::new();
    for path in ["/app/len", "/app/chunked", "/app/big", "/app/interim", "/app/busy"] {
        pipelined += &get(path);
    }
    // The API on the same connection: hyper takes it from here, and serves the route too.
    pipelined += &get("/api/process?data=x");
    pipelined += &get("/app/len");
    let answers = exchange(&gateway.listen_addr(), pipelined.as_bytes(), Duration::from_secs(2)).await;
    let statuses: Vec<u16> = answers.iter().map(|answer| answer.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 503, 200, 200]);
    let [len, chunked, big, interim, busy, api, after] = <[RawAnswer; 7]>::try_from(answers).unwrap();
    assert_eq!(len.body, b"hello");
    assert_eq!(len.header("content-type"), Some("text/plain"));
    assert_eq!(len.header("x-kept"), None, "a field the upstream's Connection names stays on its hop");
    assert_eq!(len.header("connection"), None);
    assert_eq!(chunked.body, b"hello world");
    assert!(big.body.len() == BIG && big.body.iter().all(|byte| *byte == b'b'), "{} bytes", big.body.len());
    assert_eq!(interim.body, b"ok");
    assert_eq!((busy.body.as_slice(), busy.header("retry-after")), (&b"busy"[..], Some("2")));
    assert!(api.json()["result"].is_object() || api.status == 200, "{api:?}");
    assert_eq!(after.body, b"hello");

    // A HEAD answer has the length of the body it does not carry.
    let mut client = TcpStream::connect(gateway.listen_addr()).await.unwrap();
    client.write_all(b"HEAD /app/len HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    client.write_all(get("/app/len").as_bytes()).await.unwrap();
    let received = support::raw::read_until(&mut client, b"hello", Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&received);
    assert_eq!(text.matches("content-length: 5\r\n").count(), 2, "{text}");
    assert!(text.ends_with("\r\n\r\nhello") && text.matches("hello").count() == 1, "{text}");

    let heads = backend.heads();
    let first = heads.first().unwrap().to_ascii_lowercase();
    assert!(first.starts_with("get /app/len http/1.1\r\n"), "{first}");
    assert!(first.contains("host: shop.example\r\n"), "the client's Host goes on: {first}");
    assert!(first.contains("x-forwarded-for: 127.0.0.1\r\n") && first.contains("x-forwarded-proto: http\r\n"));
    assert_eq!(heads.iter().filter(|head| head.starts_with("GET /app/len")).count(), 3);
}

#[tokio::test]
async fn a_kept_alive_connection_the_upstream_dropped_is_replaced_and_bodies_to_the_close_end_the_client_connection() {
    let backend = Canned::start().await;
    let (gateway, _worker, _config) = gateway(&backend, true, "serving_threads = 1").await;
    let address = gateway.listen_addr();
    let mut client = TcpStream::connect(&address).await.unwrap();
    let at_start = backend.connections.load(Ordering::SeqCst);
    for n in 0..10 {
        client.write_all(get("/app/once").as_bytes()).await.unwrap();
        let answer = read_answer(&mut client).await;
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"once"[..]), "request {n}: {answer:?}");
    }
    let opened = backend.connections.load(Ordering::SeqCst) - at_start;
    assert_eq!(opened, 10, "each dropped connection was replaced");

    // Ten requests on a connection that stays up: one upstream connection carries them all.
    let before = backend.connections.load(Ordering::SeqCst);
    for _ in 0..10 {
        client.write_all(get("/app/len").as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut client).await.body, b"hello");
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), before + 1, "kept alive and reused");

    // A body that runs to the upstream's close ends the client's connection too, and says so;
    // HTTP/1.0 answers come back as HTTP/1.1.
    for path in ["/app/close", "/app/old"] {
        let answers = exchange(&address, get(path).as_bytes(), Duration::from_secs(5)).await;
        let [answer] = <[RawAnswer; 1]>::try_from(answers).unwrap();
        assert_eq!(answer.status, 200);
        assert!(!answer.body.is_empty());
        if path == "/app/close" {
            assert_eq!((answer.body.as_slice(), answer.header("connection")), (&b"until the end"[..], Some("close")));
        }
    }
}

/// Reads one answer framed by its length off `stream`.
async fn read_answer(stream: &mut TcpStream) -> RawAnswer {
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let answers = parse_answers(&received);
        if let Some(answer) = answers.first()
            && answer.header("content-length").and_then(|length| length.parse().ok()) == Some(answer.body.len())
        {
            return answer.clone();
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(read > 0, "closed before the answer: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test]
async fn the_header_deadline_holds_and_a_client_that_leaves_is_counted_as_gone() {
    let backend = Canned::start().await;
    let (gateway, _worker, _config) = gateway(&backend, true, "header_read_timeout = \"1s\"").await;
    let address = gateway.listen_addr();

    // Caught mid-head: 408 as problem details, then closed.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(get("/app/len").as_bytes()).await.unwrap();
    slow.write_all(b"GET /app/len HTTP/1.1\r\nHost:").await.unwrap();
    let started = Instant::now();
    let answers = parse_answers(&read_until_quiet(&mut slow, Duration::from_secs(5)).await);
    assert!(started.elapsed() < Duration::from_secs(3), "cut off after {:?}", started.elapsed());
    assert_eq!(answers.len(), 2, "{answers:?}");
    answers[1].expect_problem(408, "request_timeout");

    // Idle after an answer: closed at the header deadline, as hyper closes HTTP/1.1.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(get("/app/len").as_bytes()).await.unwrap();
    let started = Instant::now();
    let answers = parse_answers(&read_until_quiet(&mut idle, Duration::from_secs(5)).await);
    assert_eq!(answers.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());

    // A client that leaves while its upstream is slow: counted as 499, not as the upstream's.
    let mut leaving = TcpStream::connect(&address).await.unwrap();
    leaving.write_all(get("/app/slow").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(leaving);
    let metrics_url = format!("http://{}/metrics", admin_addr(&gateway));
    let gone = r#"rampart_http_requests_total{route="/app",method="GET",status="499"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        if metrics.contains(gone) {
            break;
        }
        assert!(Instant::now() < deadline, "no 499 counted:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the client sees of an answer, for comparing the two paths: status, body and the fields
/// that mean something (the date and the trace id differ from one answer to the next).
fn seen(answer: &RawAnswer) -> (u16, Vec<u8>, Vec<(String, String)>) {
    let mut fields: Vec<(String, String)> = answer
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-trace-id"))
        .collect();
    fields.sort();
    let problem = answer.header("content-type") == Some("application/problem+json");
    if problem {
        // Its detail may word a failure differently, and so differ in length.
        fields.retain(|(name, _)| name != "content-length");
    }
    let body = if problem {
        // Problem details name the instance; compare their code and status.
        let problem = answer.json();
        format!("{} {}", problem["code"], problem["status"]).into_bytes()
    } else {
        answer.body.clone()
    };
    (answer.status, body, fields)
}

#[tokio::test]
async fn the_lean_path_answers_every_request_as_hyper_does() {
    let backend = Canned::start().await;
    let (lean, _w1, _c1) = gateway(&backend, true, "").await;
    let (hyper, _w2, _c2) = gateway(&backend, false, "").await;
    let long = format!("/app/{}", "x".repeat(9000));
    let requests = [
        get("/app/len"),
        get("/app/chunked"),
        get("/app/busy"),
        get("/app/interim"),
        get("/app/drop"),
        get("/app/a/../len"),
        get("/app/%2e%2e/x"),
        get("/nowhere"),
        get(&long),
        "HEAD /app/len HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "OPTIONS /app/len HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "GET /app/len HTTP/1.1\r\nHost: x\r\nRequest-Timeout: nonsense\r\n\r\n".to_owned(),
        "GET /app/len HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_owned(),
    ];
    for request in &requests {
        let with_close = request.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        let from_lean = exchange(&lean.listen_addr(), with_close.as_bytes(), Duration::from_secs(3)).await;
        let from_hyper = exchange(&hyper.listen_addr(), with_close.as_bytes(), Duration::from_secs(3)).await;
        let (lean_seen, hyper_seen): (Vec<_>, Vec<_>) =
            (from_lean.iter().map(seen).collect(), from_hyper.iter().map(seen).collect());
        let shown = &request[..request.len().min(60)];
        assert_eq!(lean_seen.len(), 1, "{shown}: {from_lean:?}");
        assert_eq!(lean_seen, hyper_seen, "{shown}");
    }
}

#[tokio::test]
async fn http2_clients_are_proxied_over_http11_with_the_authority_they_asked_for() {
    let backend = Canned::start().await;
    let (gateway, _worker, _config) = gateway(&backend, true, "").await;
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let answer = h2c.get(format!("http://{}/app/len", gateway.listen_addr())).send().await.unwrap();
    assert_eq!((answer.version(), answer.status()), (reqwest::Version::HTTP_2, reqwest::StatusCode::OK));
    assert_eq!(answer.text().await.unwrap(), "hello");
    let chunked = h2c.get(format!("http://{}/app/chunked", gateway.listen_addr())).send().await.unwrap();
    assert_eq!(chunked.text().await.unwrap(), "hello world");
    let head = backend.heads().first().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /app/len http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("host: {}\r\n", gateway.listen_addr())), "{head}");
}
