//! Richer routing on a real gateway process: routes chosen by host, method and fields as well as
//! prefix, prefixes stripped or replaced, and fields changed both ways, on hyper's path and the
//! lean one alike.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // a failed unwrap is a failed test

mod support;

use rampart_testkit::{closed_port, spawn_gateway};
use reqwest::{Client, Method};
use serde_json::Value;
use support::{config_file, peers::Upstream};

#[tokio::test]
async fn routes_match_on_host_method_and_fields_and_rewrite_both_ways() {
    let (fallback, canary, api) = (Upstream::start("fallback"), Upstream::start("canary"), Upstream::start("api"));
    let file = config_file(&format!(
        "[[routes]]\nprefix = \"/svc\"\nupstreams = [\"{fallback}\"]\n\n\
         [[routes]]\nprefix = \"/svc\"\nupstreams = [\"{canary}\"]\n[routes.match_headers]\nx-canary = \"1\"\n\n\
         [[routes]]\nprefix = \"/svc\"\nupstreams = [\"{api}\"]\nhosts = [\"api.example.com\"]\nmethods = [\"POST\"]\n\n\
         [[routes]]\nprefix = \"/strip\"\nupstreams = [\"{fallback}\"]\nrewrite_prefix = \"\"\n\
         [routes.request_headers]\nset = {{ \"x-from\" = \"rampart\" }}\nremove = [\"x-debug\"]\n\
         [routes.response_headers]\nset = {{ \"x-served-by\" = \"rampart\" }}\nremove = [\"content-type\"]\n\n\
         [[routes]]\nprefix = \"/old\"\nupstreams = [\"{fallback}\"]\nrewrite_prefix = \"/new/v2\"\n",
        fallback = fallback.url,
        canary = canary.url,
        api = api.url,
    ));
    let nobody = format!("http://127.0.0.1:{}", closed_port());
    let gateway = spawn_gateway(&[nobody], &["--config", file.path().to_str().unwrap()]).await;
    let (base, http) = (format!("http://{}", gateway.listen_addr()), Client::new());
    let call = async |method: Method, path: &str, fields: &[(&str, &str)]| -> (reqwest::header::HeaderMap, Value) {
        let mut request = http.request(method.clone(), format!("{base}{path}"));
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        if method == Method::POST {
            request = request.body("{}");
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 200, "{method} {path} {fields:?}");
        let headers = answer.headers().clone();
        (headers, answer.json().await.unwrap())
    };
    let served_by = async |method: Method, path: &str, fields: &[(&str, &str)]| {
        call(method, path, fields).await.1["upstream"].as_str().unwrap().to_owned()
    };

    assert_eq!(served_by(Method::GET, "/svc/a", &[]).await, "fallback");
    assert_eq!(served_by(Method::GET, "/svc/a", &[("x-canary", "1")]).await, "canary");
    assert_eq!(served_by(Method::GET, "/svc/a", &[("x-canary", "2")]).await, "fallback", "a value that differs");
    assert_eq!(served_by(Method::POST, "/svc/a", &[("host", "API.example.com")]).await, "api");
    assert_eq!(served_by(Method::GET, "/svc/a", &[("host", "api.example.com")]).await, "fallback", "GET is not listed");
    assert_eq!(served_by(Method::POST, "/svc/a", &[("host", "www.example.com")]).await, "fallback", "another host");

    for method in [Method::GET, Method::POST] {
        let (headers, seen) = call(method.clone(), "/strip/cart?id=7", &[("x-debug", "1"), ("x-from", "client")]).await;
        assert_eq!(seen["path"], "/cart", "{method}: the prefix is stripped");
        assert_eq!(seen["headers"]["x-from"], "rampart", "{method}: {seen}");
        assert!(seen["headers"].get("x-debug").is_none(), "{method}: {seen}");
        assert_eq!(headers["x-served-by"], "rampart", "{method}");
        assert!(!headers.contains_key("content-type"), "{method}: removed from the answer: {headers:?}");
    }
    let (_, seen) = call(Method::GET, "/old/item", &[]).await;
    assert_eq!(seen["path"], "/new/v2/item", "the prefix is replaced");
    let (_, seen) = call(Method::GET, "/old", &[]).await;
    assert_eq!(seen["path"], "/new/v2");
}

#[tokio::test]
async fn a_weighted_route_splits_ten_thousand_requests_ninety_to_ten() {
    let (stable, canary) = (Upstream::start("stable"), Upstream::start("canary"));
    let file = config_file(&format!(
        "[[routes]]\nprefix = \"/app\"\nupstreams = [{{ url = \"{}\", weight = 90 }}, {{ url = \"{}\", weight = 10 }}]\n",
        stable.url, canary.url
    ));
    let nobody = format!("http://127.0.0.1:{}", closed_port());
    let gateway = spawn_gateway(&[nobody], &["--config", file.path().to_str().unwrap()]).await;
    let base = format!("http://{}", gateway.listen_addr());
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (http, url) = (Client::new(), format!("{base}/app/page"));
        senders.push(tokio::spawn(async move {
            for _ in 0..1250 {
                assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let (to_stable, to_canary) = (stable.hits(), canary.hits());
    assert_eq!(to_stable + to_canary, 10_000);
    #[allow(clippy::cast_precision_loss)]
    let share = to_canary as f64 / 10_000.0;
    eprintln!("weights 90/10: the canary took {to_canary} of 10,000 requests");
    assert!((0.08..=0.12).contains(&share), "the canary took {to_canary} of 10,000");
}

#[tokio::test]
async fn mirroring_everything_to_a_slow_shadow_leaves_the_main_path_as_fast() {
    let (main, shadow) =
        (Upstream::start("main"), Upstream::start_slow("shadow", std::time::Duration::from_millis(500)));
    let file = config_file(&format!(
        "[[routes]]\nprefix = \"/plain\"\nupstreams = [\"{main}\"]\n\n\
         [[routes]]\nprefix = \"/mirrored\"\nupstreams = [\"{main}\"]\n[routes.mirror]\nupstream = \"{shadow}\"\nmax_in_flight = 50\n",
        main = main.url,
        shadow = shadow.url,
    ));
    let nobody = format!("http://127.0.0.1:{}", closed_port());
    let gateway = spawn_gateway(&[nobody], &["--config", file.path().to_str().unwrap()]).await;
    let (base, http) = (format!("http://{}", gateway.listen_addr()), Client::new());
    let (mut plain, mut mirrored) = (Vec::new(), Vec::new());
    // Alternated, so that both see the same machine.
    for round in 0..1000 {
        for (path, took) in [("/plain/x", &mut plain), ("/mirrored/x", &mut mirrored)] {
            let started = std::time::Instant::now();
            let answer = http.get(format!("{base}{path}?n={round}")).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.bytes().await.unwrap();
            took.push(started.elapsed());
        }
    }
    plain.sort();
    mirrored.sort();
    let (p99_plain, p99_mirrored) = (plain[989], mirrored[989]);
    eprintln!("main path p99 {p99_plain:?} without a mirror, {p99_mirrored:?} mirrored to a shadow taking 500 ms");
    assert!(
        p99_mirrored.as_secs_f64() <= p99_plain.as_secs_f64() * 1.1 + 0.001,
        "p99 {p99_mirrored:?} mirrored vs {p99_plain:?}"
    );
    assert!(shadow.hits() > 0, "the shadow got copies");
    let admin = rampart_testkit::admin_addr(&gateway);
    let metrics = reqwest::get(format!("http://{admin}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("rampart_mirror_requests_total{route=\"/mirrored\",outcome=\"dropped\"}"), "{metrics}");
}
