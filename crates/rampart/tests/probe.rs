//! `rampart probe URL`, the containers' health check: exit 0 only on a 2xx answer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::{Command, Output},
};

/// A server on a free port that answers every request with `status`; returns its URL.
fn answering(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0_u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&chunk[..read]),
                }
            }
            let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    format!("http://{address}/health")
}

fn probe(url: &str) -> Output {
    Command::new(rampart_testkit::binary("rampart")).args(["probe", url]).output().unwrap()
}

#[test]
fn a_2xx_answer_is_healthy() {
    let output = probe(&answering("200 OK"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(probe(&answering("204 No Content")).status.success());
}

#[test]
fn an_error_answer_is_unhealthy_and_says_so() {
    let url = answering("503 Service Unavailable");
    let output = probe(&url);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{url} answered 503")), "{stderr}");
}

#[test]
fn a_closed_port_or_bad_url_is_unhealthy() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let output = probe(&format!("http://{closed}/health"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
    let output = probe("https://127.0.0.1:1/health");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("only http://"));
}

#[test]
fn a_server_that_never_answers_is_unhealthy_within_the_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let started = std::time::Instant::now();
    let output = probe(&url);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("gave no answer within 2s"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    drop(listener);
}
