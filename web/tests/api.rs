//! The REST API against a real one-validator node: every route's answers,
//! and bad input of every kind as a 4xx JSON error.

use actix_web::{test, web, App};
use ios_chain::crypto::Keypair;
use ios_chain::hash::hash_tagged;
use ios_chain::params::{ChainParams, Genesis};
use ios_node::node::{self, NodeConfig, NodeHandle, Role};
use ios_web::api::{self, Gateway};
use serde_json::{json, Value};

async fn one_node(dir: &std::path::Path) -> (NodeHandle, Keypair) {
    node_of(dir, 1, ChainParams::devnet("api-test")).await
}

/// Validator 0 of a genesis with `validators` validators (the others do
/// not run: with more than one, no block is ever finalized).
async fn node_of(
    dir: &std::path::Path,
    validators: u64,
    mut params: ChainParams,
) -> (NodeHandle, Keypair) {
    let keys: Vec<Keypair> = (0..validators)
        .map(|i| Keypair::from_seed("api-test-validator", i))
        .collect();
    let validator = keys[0].clone();
    let user = Keypair::from_seed("api-test-user", 0);
    params.set_committee_size(validators as u16);
    let genesis = Genesis::test_network(
        params,
        ios_node::unix_ms(),
        hash_tagged("api-test", b""),
        &keys,
        &[user.address()],
    );
    let (h, _task) = node::start(
        NodeConfig {
            name: "api-test".into(),
            role: Role::Validator,
            data_dir: dir.to_path_buf(),
            listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            bootstrap: vec![],
            genesis,
            key: Some(validator),
            replica: ios_node::devnet::replica_config(200),
            provider: None,
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    (h, user)
}

async fn error_code(resp: actix_web::dev::ServiceResponse) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = test::read_body_json(resp).await;
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, code)
}

#[actix_web::test]
async fn a_shard_with_a_backlog_answers_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = ChainParams::devnet("api-test");
    params.max_block_txs = 2;
    let limit = ios_node::node::BUSY_BACKLOG_BLOCKS * 2;
    // Four validators, one running: nothing finalizes, the pool only grows.
    let (node, user) = node_of(dir.path(), 4, params).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(Gateway::new(node).unwrap()))
            .configure(api::configure),
    )
    .await;
    let to = Keypair::from_seed("api-test-other", 1)
        .address()
        .to_string();
    let mut accepted = 0;
    let mut busy = 0;
    for nonce in 0..limit as u64 + 3 {
        let built: Value = test::call_and_read_body_json(
            &app,
            test::TestRequest::post()
                .uri("/api/v1/tx/build")
                .set_json(json!({"sender": user.address().to_string(), "nonce": nonce,
                    "call": {"type": "transfer", "to": to, "amount": "1"}}))
                .to_request(),
        )
        .await;
        let hash =
            ios_chain::hash::Hash::from_hex(built["signing_hash"].as_str().unwrap()).unwrap();
        let resp = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/api/v1/tx")
                .set_json(json!({"tx": built["tx"],
                    "signature": ios_web::hex::encode(&user.sign(&hash).0)}))
                .to_request(),
        )
        .await;
        if resp.status() == 200 {
            assert_eq!(busy, 0, "accepted after a busy answer");
            accepted += 1;
        } else {
            assert_eq!(error_code(resp).await, (503, "busy".into()));
            busy += 1;
        }
    }
    // The validator's own transactions share the pool with the user's.
    assert!((1..=limit).contains(&accepted), "{accepted} accepted");
    assert!(busy >= 3, "{busy} busy answers");
}

#[actix_web::test]
async fn routes_answer_and_bad_input_is_a_json_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let (node, user) = one_node(dir.path()).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(Gateway::new(node).unwrap()))
            .configure(api::configure),
    )
    .await;

    // Status, once the chain has a block.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = test::call_and_read_body_json(
            &app,
            test::TestRequest::get().uri("/api/v1/status").to_request(),
        )
        .await;
        if status["shard_status"][0]["height"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status["chain_id"], "api-test");
    assert!(
        status["shard_status"][0]["height"].as_u64() > Some(0),
        "{status}"
    );

    // The OpenAPI document lists every route.
    let doc: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::get()
            .uri("/api/openapi.json")
            .to_request(),
    )
    .await;
    for p in [
        "/api/v1/status",
        "/api/v1/accounts/{address}",
        "/api/v1/shards/{shard}/blocks/{height}",
        "/api/v1/shards/{shard}/blocks/latest",
        "/api/v1/tx/build",
        "/api/v1/tx",
        "/api/v1/tx/{id}",
        "/api/v1/store/uploads",
        "/api/v1/store/objects",
        "/api/v1/store/objects/{cid}",
        "/api/v1/store/objects/{cid}/content",
        "/api/v1/store/search",
        "/api/v1/store/providers",
        "/api/v1/market/search",
        "/api/v1/market/listings",
        "/api/v1/market/listings/{id}",
        "/api/v1/market/orders",
        "/api/v1/market/orders/{id}",
        "/api/v1/market/disputes/{order}",
        "/api/v1/market/disputes",
        "/api/v1/market/reputation/{address}",
        "/api/v1/market/trust",
        "/api/v1/atomix/{id}",
        "/api/v1/atomix",
        "/api/v1/epochs",
        "/api/v1/validators",
        "/api/v1/events",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }

    // Build, sign, submit, follow.
    let to = Keypair::from_seed("api-test-other", 1)
        .address()
        .to_string();
    let built: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/tx/build")
            .set_json(json!({"sender": user.address().to_string(), "call": {"type": "transfer", "to": to, "amount": "5000"}}))
            .to_request(),
    )
    .await;
    let hash = ios_chain::hash::Hash::from_hex(built["signing_hash"].as_str().unwrap()).unwrap();
    let sig = ios_web::hex::encode(&user.sign(&hash).0);
    let submit = |sig: String| {
        test::TestRequest::post()
            .uri("/api/v1/tx")
            .set_json(json!({"tx": built["tx"], "signature": sig}))
            .to_request()
    };
    // A forged signature first: refused, nothing pooled.
    let mut forged = user.sign(&hash).0;
    forged[0] ^= 1;
    let resp = test::call_service(&app, submit(ios_web::hex::encode(&forged))).await;
    assert_eq!(error_code(resp).await, (400, "bad_signature".into()));
    // Signed, but for another chain: the client's mistake, a 400.
    let mut other: ios_chain::tx::Transaction = ios_chain::codec::decode(
        "tx",
        &ios_web::hex::decode(built["tx"].as_str().unwrap()).unwrap(),
        1 << 16,
    )
    .unwrap();
    other.chain_id = ios_chain::types::ChainId("another-chain".into());
    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/tx")
            .set_json(json!({
                "tx": ios_web::hex::encode(&ios_chain::codec::encode(&other)),
                "signature": ios_web::hex::encode(&user.sign(&other.signing_hash()).0),
            }))
            .to_request(),
    )
    .await;
    assert_eq!(error_code(resp).await, (400, "wrong_chain_id".into()));
    let sub: Value = test::call_and_read_body_json(&app, submit(sig.clone())).await;
    let id = sub["id"].as_str().unwrap().to_string();
    // Submitting it again while it is pooled is idempotent (clients retry).
    let again: Value = test::call_and_read_body_json(&app, submit(sig.clone())).await;
    assert_eq!(again["id"], sub["id"]);
    let mut state = Value::Null;
    for _ in 0..100 {
        state = test::call_and_read_body_json(
            &app,
            test::TestRequest::get()
                .uri(&format!("/api/v1/tx/{id}"))
                .to_request(),
        )
        .await;
        if state["state"] == "finalized" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state["state"], "finalized", "{state}");
    let acct: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::get()
            .uri(&format!("/api/v1/accounts/{to}"))
            .to_request(),
    )
    .await;
    assert_eq!(acct["balance"], "5000");
    let h = state["height"].as_u64().unwrap();
    let block: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::get()
            .uri(&format!("/api/v1/shards/0/blocks/{h}"))
            .to_request(),
    )
    .await;
    assert!(block["txs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str()));
    // Replayed after it was finalized: refused by its nonce.
    let resp = test::call_service(&app, submit(sig)).await;
    let (status, code) = error_code(resp).await;
    assert_eq!(status, 422);
    assert!(code.contains("nonce"), "{code}");

    // Prometheus metrics of the node.
    let body =
        test::call_and_read_body(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    for m in [
        "ios_shard_height{shard=\"0\"}",
        "ios_mempool_transactions{shard=\"0\"}",
        "ios_peers ",
        "ios_finality_latency_seconds_count ",
        "ios_gossip_received_bytes_total ",
        "ios_finalized_transactions_total ",
    ] {
        assert!(text.contains(m), "{m} missing from /metrics:\n{text}");
    }

    // Bad input: each a JSON 4xx with a code.
    let cases: Vec<(test::TestRequest, u16, &str)> = vec![
        (test::TestRequest::get().uri("/api/v1/accounts/not-an-address"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/shards/0/blocks/999999"), 404, "not_found"),
        (test::TestRequest::get().uri("/api/v1/shards/7/blocks/1"), 503, "unavailable"),
        (test::TestRequest::get().uri("/api/v1/shards/x/blocks/1"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/tx/zz"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/nothing"), 404, "not_found"),
        (test::TestRequest::get().uri("/api/v1/store/search?limit=0"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/store/search?sort=sideways"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/store/search?owner=nobody"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/store/search?min_size=big"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/store/objects?owner=nobody"), 400, "bad_request"),
        (
            test::TestRequest::post().uri("/api/v1/tx/build").set_json(json!({"sender": user.address().to_string(), "call": {"type": "store_deal", "content": "00".repeat(32), "epochs": 1, "meta": {"tags": ["two words"]}}})),
            400,
            "bad_request",
        ),
        (
            test::TestRequest::post().uri("/api/v1/tx/build").insert_header(("content-type", "application/json")).set_payload("{not json"),
            400,
            "bad_request",
        ),
        (
            test::TestRequest::post().uri("/api/v1/tx/build").set_json(json!({"sender": 5, "call": {"type": "transfer"}})),
            400,
            "bad_request",
        ),
        (
            test::TestRequest::post()
                .uri("/api/v1/tx/build")
                .set_json(json!({"sender": user.address().to_string(), "call": {"type": "transfer", "to": to, "amount": "-1"}})),
            400,
            "bad_request",
        ),
        (test::TestRequest::get().uri("/api/v1/market/listings/zz"), 400, "bad_request"),
        (test::TestRequest::get().uri(&format!("/api/v1/market/listings/{}", "00".repeat(32))), 404, "not_found"),
        (test::TestRequest::get().uri(&format!("/api/v1/market/orders/{}", "00".repeat(32))), 404, "not_found"),
        (test::TestRequest::get().uri(&format!("/api/v1/market/disputes/{}", "00".repeat(32))), 404, "not_found"),
        (test::TestRequest::get().uri("/api/v1/market/orders?of=nobody"), 400, "bad_request"),
        (test::TestRequest::get().uri(&format!("/api/v1/market/orders?of={}&limit=0", user.address())), 400, "bad_request"),
        (test::TestRequest::get().uri(&format!("/api/v1/market/listings?of={}&limit=1000", user.address())), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/market/search?sort=sideways"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/market/search?min_price=5&max_price=1"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/market/listings"), 400, "bad_request"),
        (test::TestRequest::get().uri("/api/v1/market/reputation/nobody"), 400, "bad_request"),
        (
            // A listing with a price of zero.
            test::TestRequest::post().uri("/api/v1/tx/build").set_json(json!({"sender": user.address().to_string(), "call": {"type": "market", "call": {"type": "create_listing", "title": "Free", "category": "misc", "price": "0", "delivery_blocks": 10, "doc": "00".repeat(32)}}})),
            400,
            "bad_request",
        ),
        (
            // Oversized text.
            test::TestRequest::post().uri("/api/v1/tx/build").set_json(json!({"sender": user.address().to_string(), "call": {"type": "market", "call": {"type": "create_listing", "title": "x".repeat(500), "category": "misc", "price": "100000000", "delivery_blocks": 10, "doc": "00".repeat(32)}}})),
            400,
            "bad_request",
        ),
        (
            // A listing document that is not stored in HUDS.
            test::TestRequest::post().uri("/api/v1/tx/build").set_json(json!({"sender": user.address().to_string(), "call": {"type": "market", "call": {"type": "create_listing", "title": "Logos", "category": "design", "price": "100000000", "delivery_blocks": 10, "doc": "00".repeat(32)}}})),
            400,
            "bad_request",
        ),
        (test::TestRequest::get().uri("/api/v1/market/trust?limit=0"), 400, "bad_request"),
        (
            // Ordering from a listing that does not exist.
            test::TestRequest::post().uri("/api/v1/tx/build").set_json(json!({"sender": user.address().to_string(), "call": {"type": "market", "call": {"type": "place_order", "listing": "00".repeat(32), "price": "100"}}})),
            404,
            "not_found",
        ),
        (
            // Scores out of range.
            test::TestRequest::post().uri("/api/v1/tx/build").set_json(json!({"sender": user.address().to_string(), "call": {"type": "market", "call": {"type": "reveal_rating", "order": "00".repeat(32), "scores": {"overall": 9, "quality": 1, "communication": 1, "timeliness": 1}, "salt": "00".repeat(32)}}})),
            400,
            "bad_request",
        ),
        (
            test::TestRequest::post().uri("/api/v1/tx/build").set_json(json!({"sender": user.address().to_string(), "call": {"type": "market", "call": {"type": "jury_reveal", "order": "00".repeat(32), "share": 2000000, "salt": "00".repeat(32)}}})),
            400,
            "bad_request",
        ),
        (test::TestRequest::post().uri("/api/v1/tx").set_json(json!({"tx": "abc", "signature": "00"})), 400, "bad_request"),
        (test::TestRequest::post().uri("/api/v1/tx").set_json(json!({"tx": "00ff", "signature": "00".repeat(64)})), 400, "malformed"),
        (
            test::TestRequest::post()
                .uri("/api/v1/tx")
                .insert_header(("content-type", "application/json"))
                .set_payload(vec![b' '; api::MAX_BODY_BYTES + 10]),
            400,
            "bad_request",
        ),
    ];
    for (req, want_status, want_code) in cases {
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(error_code(resp).await, (want_status, want_code.to_string()));
    }
}

/// The whole app (API, UI, middleware) served for one node on a free
/// port: the server, its base URL, the genesis' funded user.
async fn served(dir: &std::path::Path) -> (ios_web::ApiServer, String, Keypair) {
    let (node, user) = one_node(dir).await;
    let server = ios_web::serve(node, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr);
    (server, base, user)
}

/// One HTTP request to the served gateway: status, headers, body.
fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = match method {
        "GET" => {
            let mut req = agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
        _ => {
            let mut req = agent.post(url).header("content-type", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send(body.unwrap_or(""))
        }
    }
    .unwrap();
    let status = r.status().as_u16();
    let hs = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    (
        status,
        hs,
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// The whole served app (API, UI, middleware) over real HTTP: every page
/// renders, an unknown id is a 4xx page, a browser's state-changing
/// request needs the CSRF token its page carries (programs without a
/// browser's headers do not), and the event stream sends each block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_csrf_guards_browser_writes_and_events_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base, user) = served(dir.path()).await;
    let me = user.address().to_string();
    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        let base = b;
        for _ in 0..100 {
            let (_, _, body) = http("GET", &format!("{base}/api/v1/status"), &[], None);
            let s: Value = serde_json::from_str(&body).unwrap();
            if s["shard_status"][0]["height"].as_u64() > Some(0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for (path, want) in [
            ("/", 200),
            ("/?q=logo&category=design&max_price=2.5&sort=price_low", 200),
            ("/?max_price=lots", 400),
            ("/sell", 200),
            ("/wallet", 200),
            ("/orders", 200),
            ("/storage", 200),
            ("/provider", 200),
            ("/explorer", 200),
            ("/explorer/shards/0/blocks/1", 200),
            ("/explorer/shards/0/blocks/99999", 404),
            ("/network", 200),
            (&format!("/providers/{me}"), 200),
            ("/providers/nobody", 400),
            (&format!("/listings/{}", "00".repeat(32)), 404),
            ("/listings/zz", 400),
            (&format!("/orders/{}", "00".repeat(32)), 404),
            ("/explorer/tx/zz", 400),
            ("/static/app.js", 200),
            ("/static/nothing.js", 404),
        ] {
            let (status, _, body) = http("GET", &format!("{base}{path}"), &[], None);
            let tail: String = body
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            assert_eq!(status, want, "{path}: ...{tail}");
        }
        for path in ["/api/v1/epochs", "/api/v1/validators", "/api/v1/peers"] {
            let (status, _, body) = http("GET", &format!("{base}{path}"), &[], None);
            assert_eq!(status, 200, "{path}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(v.is_array(), "{path}: {body}");
        }
        // Only a full node relays (and so follows) cross-shard transfers.
        let (status, _, body) = http("GET", &format!("{base}/api/v1/atomix"), &[], None);
        assert_eq!(status, 503, "{body}");
        let (_, _, body) = http("GET", &format!("{base}/api/v1/validators"), &[], None);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["committees"], json!([0]), "{body}");
        let (_, _, body) = http("GET", &format!("{base}/api/v1/epochs"), &[], None);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["epoch"], 0, "{body}");
        assert_eq!(v[0]["committees"][0].as_array().unwrap().len(), 1, "{body}");
        // A page knows the visitor by the address cookie the browser sets.
        let (_, _, body) = http(
            "GET",
            &format!("{base}/wallet"),
            &[("cookie", &format!("ios_address={me}"))],
            None,
        );
        assert!(
            body.contains(&me) && body.contains("id=\"balance\""),
            "{body}"
        );

        // CSRF: a page sets the cookie and carries the same token.
        let (_, headers, body) = http("GET", &format!("{base}/"), &[], None);
        let cookie = headers
            .iter()
            .find(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.clone())
            .unwrap();
        let token = cookie
            .strip_prefix("ios_csrf=")
            .and_then(|v| v.split(';').next())
            .unwrap()
            .to_string();
        assert!(body.contains(&format!("<meta name=\"csrf\" content=\"{token}\">")));
        let build = format!("{base}/api/v1/tx/build");
        let req = format!(
            r#"{{"sender": "{me}", "call": {{"type": "transfer", "to": "{me}", "amount": "1"}}}}"#
        );
        let jar = format!("ios_csrf={token}");
        for (headers, want) in [
            // A browser (it names its origin) without the token: refused.
            (vec![("origin", base.as_str())], 403),
            (vec![("sec-fetch-site", "cross-site")], 403),
            (vec![("cookie", jar.as_str())], 403),
            (vec![("cookie", jar.as_str()), ("x-csrf-token", "00")], 403),
            // With the cookie and the page's token: through to the handler.
            (
                vec![
                    ("origin", base.as_str()),
                    ("cookie", jar.as_str()),
                    ("x-csrf-token", token.as_str()),
                ],
                200,
            ),
            // A program that is not a browser: a signature authorizes it.
            (vec![], 200),
        ] {
            let (status, _, body) = http("POST", &build, &headers, Some(&req));
            assert_eq!(status, want, "{headers:?}: {body}");
            if want == 403 {
                assert!(body.contains("\"code\":\"csrf\""), "{body}");
            }
        }

        // Live events: a commit arrives within a few blocks.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(20)))
            .build()
            .into();
        let mut r = agent.get(&format!("{base}/api/v1/events")).call().unwrap();
        assert_eq!(
            r.headers().get("content-type").unwrap().to_str().unwrap(),
            "text/event-stream"
        );
        let mut reader = std::io::BufReader::new(r.body_mut().as_reader());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0);
            if let Some(data) = line.strip_prefix("data: ") {
                let v: Value = serde_json::from_str(data).unwrap();
                assert_eq!(v["shard"], 0);
                assert!(v["height"].as_u64().unwrap() > 0);
                break;
            }
        }
    })
    .await
    .unwrap();
    server.stop().await;
}

/// Every route the OpenAPI document lists, given garbage: path parameters
/// that are not ids, malformed and oversized bodies, wrong types. Each
/// answer is a JSON error with a 4xx status (503 where the node cannot
/// serve it), never a 500, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_garbage_with_a_json_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base, _user) = served(dir.path()).await;
    tokio::task::spawn_blocking(move || {
        let (_, _, doc) = http("GET", &format!("{base}/api/openapi.json"), &[], None);
        let doc: Value = serde_json::from_str(&doc).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 25, "{} routes", paths.len());
        let big = "x".repeat(300 << 10);
        let mut checked = 0;
        for (path, methods) in paths {
            for (garbage, what) in [
                ("zz", "a bad id"),
                ("%00%ff", "bytes"),
                (&"f".repeat(300)[..], "a long id"),
            ] {
                let url = format!("{base}{}", replace_params(path, garbage));
                for method in methods.as_object().unwrap().keys() {
                    let bodies: Vec<Option<&str>> = if method == "post" {
                        vec![
                            Some("{not json"),
                            Some("[1, 2]"),
                            Some(r#"{"sender": 5, "call": "transfer"}"#),
                            Some(&big),
                            Some(""),
                        ]
                    } else {
                        vec![None]
                    };
                    for body in bodies {
                        if path == "/api/v1/events" {
                            continue; // a stream: answers 200 and stays open
                        }
                        let m = method.to_uppercase();
                        let (status, _, text) = http(&m, &url, &[], body);
                        checked += 1;
                        let params = path.contains('{');
                        // An upload is any bytes: garbage is a fine object.
                        let any_bytes = path == "/api/v1/store/uploads";
                        let ok = if (params || body.is_some()) && !any_bytes {
                            (400..500).contains(&status) || status == 503
                        } else {
                            status == 200 || (400..500).contains(&status) || status == 503
                        };
                        assert!(
                            ok,
                            "{m} {path} with {what} ({} body bytes): {status} {}",
                            body.map_or(0, str::len),
                            &text[..text.len().min(300)]
                        );
                        if status != 200 {
                            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                                panic!("{m} {path}: not JSON: {}", &text[..text.len().min(300)])
                            });
                            assert!(v["error"]["code"].is_string(), "{m} {path}: {text}");
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "only {checked} requests");
        // Still serving.
        let (status, _, _) = http("GET", &format!("{base}/api/v1/status"), &[], None);
        assert_eq!(status, 200);
    })
    .await
    .unwrap();
    server.stop().await;
}

/// `path` with every `{param}` replaced by `with`.
fn replace_params(path: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').map_or(rest.len(), |j| i + j + 1);
        out.push_str(with);
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}
