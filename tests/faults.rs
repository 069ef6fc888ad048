//! Faults, bounded in time, all on loopback: malformed input on every POST endpoint; SIGKILL
//! of `whistle serve` under load; a nats-server restart under load; a 3-node NATS cluster
//! losing a node under load, with two service instances delivering each alert once.

#[path = "support/api_server.rs"]
mod api_server;
#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/serve_process.rs"]
mod serve_process;
#[path = "support/webhook.rs"]
mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use serve_process::ServeProcess;
use uuid::Uuid;
use whistle::domain::event::EventBody;
use whistle::log::EventLog;
use whistle::sim::Rng;

const CLIENTS: usize = 8;

/// The load tests take turns: on a 2-core machine, two at once would measure each other.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Short 报到 clock, no warnings or escalations: every unanswered summons breaches once.
const POLICY: &str = "warn_at_percent = 0\n[clocks.ack]\ntarget = \"2s\"\nnever_escalate = true\n";

// ----------------------------------------------------------------------------- malformed input

/// A body that can never be a valid command.
fn garbage(rng: &mut Rng) -> (Vec<u8>, &'static str) {
    let valid = json!({ "title": "t", "description": "d", "departments": ["住建局"], "topic": "other", "body": "b",
                        "reason": "r", "summary": "s", "note": "n", "satisfaction": "satisfied", "clock": "ack:住建局", "hours": 1 });
    match rng.below(9) {
        0 => ((0..rng.below(300)).map(|_| rng.next_u64() as u8).collect(), "application/json"),
        1 => (serde_json::to_vec(&json!([1, 2, 3])).unwrap(), "application/json"),
        2 => (b"\"just a string\"".to_vec(), "application/json"),
        3 => {
            let mut v = valid.clone();
            v["unexpected_field"] = json!(rng.next_u64());
            (serde_json::to_vec(&v).unwrap(), "application/json")
        }
        4 => {
            let mut v = valid.clone();
            let fields =
                ["title", "departments", "topic", "satisfaction", "reason", "hours", "clock", "summary", "body"];
            v[fields[rng.below(fields.len() as u64) as usize]] = json!({ "nested": [true, null] });
            v["unexpected_field"] = json!(1);
            (serde_json::to_vec(&v).unwrap(), "application/json")
        }
        5 => {
            // Past every field limit, under the body limit (413 is tested on its own).
            let huge = "长".repeat(6_000 + rng.below(14_000) as usize);
            (serde_json::to_vec(&json!({ "title": huge, "extra": 1 })).unwrap(), "application/json")
        }
        6 => {
            let mut bytes = serde_json::to_vec(&valid).unwrap();
            let at = 5 + rng.below(bytes.len() as u64 - 10) as usize;
            bytes[at] = 0xFF;
            bytes.insert(at, 0xC3);
            (bytes, "application/json")
        }
        7 => (serde_json::to_vec(&valid).unwrap(), "text/plain"),
        _ => (b"{\"title\": \"unterminated".to_vec(), "application/json"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_malformed_requests_never_get_a_5xx_and_never_write() {
    let s = api_server::TestServer::start("2026-03-02T10:00:00+08:00").await;
    let (_, w) = s
        .call(
            "POST",
            "/v1/whistles",
            Some("township:东坝镇"),
            Some(json!({ "title": "t", "description": "d", "departments": ["住建局"] })),
        )
        .await;
    let (_, f) =
        s.call("POST", "/v1/feedback", Some("township:东坝镇"), Some(json!({ "topic": "other", "body": "b" }))).await;
    let w = w["case"]["id"].as_str().unwrap().to_owned();
    let f = f["case"]["id"].as_str().unwrap().to_owned();
    s.settle().await;
    let head = s.log.head().await.unwrap();
    let ids = [w.clone(), f.clone(), Uuid::now_v7().to_string(), "not-an-id".into(), "%00".into(), "1".repeat(300)];
    let paths = [
        "/v1/whistles",
        "/v1/feedback",
        "/v1/whistles/{W}/ack",
        "/v1/whistles/{W}/decline",
        "/v1/whistles/{W}/assign",
        "/v1/whistles/{W}/departments",
        "/v1/whistles/{W}/progress",
        "/v1/whistles/{W}/handled",
        "/v1/whistles/{W}/confirm",
        "/v1/whistles/{W}/reopen",
        "/v1/whistles/{W}/withdraw",
        "/v1/feedback/{F}/reply",
        "/v1/feedback/{F}/resolve",
        "/v1/feedback/{F}/rate",
        "/v1/feedback/{F}/reopen",
        "/v1/cases/{W}/extensions",
        "/v1/cases/{W}/extensions/1/approve",
        "/v1/cases/{W}/extensions/1/refuse",
        "/v1/alerts/{W}/ack",
    ];
    let who = [
        "township:东坝镇",
        "department:住建局",
        "office:市减负办",
        "coordinator:市委编办",
        "supervisor:区委督查室",
        "admin:管理员",
    ];
    let mut rng = Rng::new(2026);
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let requests = 3_000;
    // A new connection per request: a refusal sent before its body was read (a wrong content
    // type) may close the connection, and a pooled client could race that close with its next
    // request and see the connection drop instead of an answer.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..requests {
        let template = paths[rng.below(paths.len() as u64) as usize];
        let mut path = template.to_owned();
        for (marker, good) in [("{W}", &w), ("{F}", &f)] {
            let id = if rng.chance(70) { good.clone() } else { ids[rng.below(ids.len() as u64) as usize].clone() };
            path = path.replace(marker, &id);
        }
        let (body, content_type) = garbage(&mut rng);
        // Actions without a body (ack, approve…) are given garbage too; an empty body would be valid.
        let res = http
            .post(format!("{}{path}", s.base))
            .bearer_auth(s.token(who[rng.below(who.len() as u64) as usize]))
            .header("content-type", content_type)
            .header(
                "Idempotency-Key",
                if rng.chance(5) {
                    reqwest::header::HeaderValue::from_bytes("中".as_bytes()).unwrap()
                } else {
                    "k".parse().unwrap()
                },
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        assert!(status.is_client_error(), "{path}: {status} {}", res.text().await.unwrap_or_default());
        *by_status.entry(status.as_u16()).or_default() += 1;
    }
    assert_eq!(s.log.head().await.unwrap(), head, "no malformed request wrote anything: {by_status:?}");
    assert!(by_status.len() >= 4, "the mix reached several kinds of refusal: {by_status:?}");
}

// ----------------------------------------------------------------------------- load helpers

/// What clients saw: case ids whose creation was acknowledged (2xx), and every other answer.
#[derive(Default)]
struct Outcomes {
    acknowledged: BTreeSet<String>,
    refused: BTreeMap<String, usize>,
}

impl Outcomes {
    /// Answers that leave it open whether the command was stored: `outcome_unknown`, timeouts,
    /// lost connections.
    fn ambiguous(&self) -> usize {
        self.refused
            .iter()
            .filter(|(why, _)| why.contains("outcome_unknown") || *why == "timeout" || *why == "connection")
            .map(|(_, n)| n)
            .sum()
    }
}

fn record(outcomes: &Mutex<Outcomes>, outcome: Result<String, String>) {
    let mut o = outcomes.lock().unwrap();
    match outcome {
        Ok(id) => {
            o.acknowledged.insert(id);
        }
        Err(why) => *o.refused.entry(why).or_default() += 1,
    }
}

/// `CLIENTS` clients raising urgent whistles against `urls` (round robin) until `stop`.
async fn load(
    urls: Vec<String>,
    token: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let clients = (0..CLIENTS).map(|c| {
        let (http, urls, token, stop, outcomes) = (http.clone(), urls.clone(), token.clone(), stop.clone(), outcomes.clone());
        async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url = &urls[(c + n) % urls.len()];
                n += 1;
                let body = json!({ "title": format!("负载 {c}-{n}"), "description": "d", "departments": ["交通局"], "urgency": "urgent" });
                let answer = http.post(format!("{url}/v1/whistles")).bearer_auth(&token).json(&body).send().await;
                let outcome: Result<String, String> = match answer {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let v: Value = r.json().await.unwrap_or_default();
                        v["case"]["id"].as_str().map(str::to_owned).ok_or_else(|| "created without a body".to_owned())
                    }
                    Ok(r) => {
                        let status = r.status().to_string();
                        let v: Value = r.json().await.unwrap_or_default();
                        Err(match v["error"]["code"].as_str() {
                            Some(code) => format!("{status} {code}"),
                            None => status,
                        })
                    }
                    Err(e) => Err(if e.is_timeout() { "timeout".into() } else { "connection".into() }),
                };
                record(&outcomes, outcome);
                // About ten commands a second per client: load, not a flood.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    futures::future::join_all(clients).await;
}

/// Runs the load for `total`, calling `fault` at the midpoint.
async fn under_load(urls: Vec<String>, token: String, total: Duration, fault: impl FnOnce()) -> Outcomes {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let runner = tokio::spawn(load(urls, token, stop.clone(), outcomes.clone()));
    tokio::time::sleep(total / 2).await;
    tokio::task::block_in_place(fault);
    tokio::time::sleep(total / 2).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    runner.await.unwrap();
    let outcomes = Arc::try_unwrap(outcomes).ok().unwrap().into_inner().unwrap();
    eprintln!("load: {} acknowledged, refused {:?}", outcomes.acknowledged.len(), outcomes.refused);
    outcomes
}

/// Every acknowledged case is in the log exactly once; returns breach counts per case.
async fn check_log(log: &dyn EventLog, acknowledged: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut breaches = BTreeMap::new();
    for id in acknowledged {
        let records = read_case_patiently(log, Uuid::parse_str(id).unwrap()).await;
        let events: Vec<EventBody> = records.iter().flat_map(|r| r.decode().unwrap().events).map(|e| e.body).collect();
        let raised = events.iter().filter(|e| matches!(e, EventBody::WhistleRaised { .. })).count();
        assert_eq!(raised, 1, "case {id}: acknowledged creation stored {raised} times");
        breaches.insert(id.clone(), events.iter().filter(|e| matches!(e, EventBody::SlaBreached { .. })).count());
    }
    breaches
}

/// A case's records; a cluster that just lost or regained a node may answer "temporarily
/// unavailable" for a moment.
async fn read_case_patiently(log: &dyn EventLog, case_id: Uuid) -> Vec<whistle::log::StoredRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match log.read_case(case_id).await {
            Ok(records) => return records,
            Err(e) if Instant::now() < deadline => {
                eprintln!("read_case {case_id}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("read_case {case_id}: {e}"),
        }
    }
}

async fn wait_ready(url: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every case has its breach (clocks are 2 s), at most 60 s.
async fn wait_breaches(log: &dyn EventLog, acknowledged: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let breaches = check_log(log, acknowledged).await;
        if breaches.values().all(|n| *n >= 1) || Instant::now() > deadline {
            return breaches;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ----------------------------------------------------------------------------- SIGKILL serve

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_serve_under_load_loses_nothing_acknowledged_and_doubles_no_alert() {
    let _turn = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let policy = dir.path().join("policy.toml");
    let mut serve = ServeProcess::start(&data, &["--policy", policy.to_str().unwrap()]);
    let url = serve.url();
    wait_ready(&url).await;
    let token = serve.token("西湖街道");
    let outcomes = under_load(vec![url.clone()], token, Duration::from_secs(4), || serve.kill()).await;
    assert!(outcomes.acknowledged.len() >= 20, "load ran: {} acknowledged", outcomes.acknowledged.len());
    serve.restart();
    wait_ready(&url).await;
    // Nothing else holds the embedded log now: read it through the service's own store after a stop.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let http = reqwest::Client::new();
    let supervisor = serve.token("区委督查室");
    let mut breaches: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &outcomes.acknowledged {
        loop {
            let v = serve_process::json_of(http.get(format!("{url}/v1/cases/{id}")).bearer_auth(&supervisor)).await;
            let history = v["history"].as_array().cloned().unwrap_or_default();
            let raised = history.iter().filter(|e| e["type"] == "whistle_raised").count();
            assert_eq!(raised, 1, "acknowledged case {id} stored once: {v}");
            let n = history.iter().filter(|e| e["type"] == "sla_breached").count();
            if n >= 1 || Instant::now() > deadline {
                breaches.insert(id.clone(), n);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(breaches.values().all(|n| *n == 1), "each missed clock alerted once, none lost: {breaches:?}");
    assert_eq!(serve.stop().map(|s| s.success()), Some(true));
    // The views left behind equal a fresh rebuild from the same log.
    let fresh = dir.path().join("fresh");
    copy_dir(&data.join("log"), &fresh.join("log"));
    let digest = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_whistle")).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().rsplit(' ').next().unwrap().to_owned()
    };
    let rebuilt = digest(&["rebuild", "--policy", policy.to_str().unwrap(), "--data", fresh.to_str().unwrap()]);
    assert_eq!(digest(&["views", "digest", "--data", data.to_str().unwrap()]), rebuilt);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

// ----------------------------------------------------------------------------- NATS restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_under_load_gives_errors_never_a_false_success_and_the_service_recovers() {
    let _turn = HEAVY.lock().await;
    let mut server = nats_server::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let policy = dir.path().join("policy.toml");
    let serve =
        ServeProcess::start(&dir.path().join("data"), &["--nats", &server.url(), "--policy", policy.to_str().unwrap()]);
    let url = serve.url();
    wait_ready(&url).await;
    let token = serve.token("西湖街道");
    let outcomes = under_load(vec![url.clone()], token.clone(), Duration::from_secs(6), || server.restart()).await;
    assert!(outcomes.acknowledged.len() >= 20, "load ran: {}", outcomes.acknowledged.len());
    // The service reconnected by itself: a new command goes through.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .post(format!("{url}/v1/whistles"))
            .bearer_auth(&token)
            .json(&json!({ "title": "恢复后", "description": "d", "departments": ["交通局"] }))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::CREATED {
            break;
        }
        assert!(r.status().is_server_error(), "only unavailability, never a client error: {}", r.status());
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = whistle::log::nats::NatsLog::connect(&whistle::log::nats::NatsOptions::new(server.url())).await.unwrap();
    let breaches = wait_breaches(&log, &outcomes.acknowledged).await;
    assert!(breaches.values().all(|n| *n == 1), "one breach per case: {breaches:?}");
}

/// Regression: a request answered 503 during a NATS outage was stored seconds later, when the
/// client's queued publish went out on reconnect, although the answer read as "not stored".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_during_a_nats_outage_is_answered_outcome_unknown_and_its_retry_stores_it_once() {
    let _turn = HEAVY.lock().await;
    let mut server = nats_server::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(&dir.path().join("data"), &["--nats", &server.url()]);
    let url = serve.url();
    wait_ready(&url).await;
    let token = serve.token("东坝镇");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let raise = || {
        http.post(format!("{url}/v1/whistles"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "outage-1")
            .json(&json!({ "title": "断线中", "description": "d", "departments": ["交通局"] }))
            .send()
    };
    server.kill();
    let answer = raise().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("outcome_unknown"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("may or may not") && message.contains("same Idempotency-Key"), "{message}");
    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let case_id = loop {
        let r = raise().await.unwrap();
        if r.status() == StatusCode::CREATED {
            let v: Value = r.json().await.unwrap();
            break v["case"]["id"].as_str().unwrap().to_owned();
        }
        assert!(r.status().is_server_error(), "{}", r.status());
        assert!(Instant::now() < deadline, "no answer after the server came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = whistle::log::nats::NatsLog::connect(&whistle::log::nats::NatsOptions::new(server.url())).await.unwrap();
    let stored = check_log(&log, &BTreeSet::from([case_id.clone()])).await;
    assert_eq!(stored.len(), 1, "the retried command is stored once");
    // The views follow the restarted server too.
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(format!("{url}/v1/cases/{case_id}")).bearer_auth(&token).send().await.unwrap().status()
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "the projector did not resubscribe after the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----------------------------------------------------------------------------- 3-node cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_a_node_under_load_and_two_instances_deliver_each_alert_exactly_once() {
    let _turn = HEAVY.lock().await;
    let receiver = webhook::Receiver::start(0).await;
    // The summoned department's own group: each summons once too.
    let department = webhook::Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut org = whistle::api::auth::Org::demo();
    org.alerts.webhooks.push(whistle::alerts::WebhookConfig {
        name: "supervisors".into(),
        url: receiver.url(),
        format: whistle::alerts::WebhookFormat::Generic,
        stages: vec![],
        units: vec![],
        attempts: None,
    });
    org.alerts.webhooks.push(whistle::alerts::WebhookConfig {
        name: "交通局群".into(),
        url: department.url(),
        format: whistle::alerts::WebhookFormat::Generic,
        stages: vec!["summons".into()],
        units: vec!["交通局".into()],
        attempts: None,
    });
    let cluster = LocalCluster::start(dir.path(), &org, Some(POLICY), "西湖街道").await;
    let token = cluster.token.clone();
    let (urls, base) = (cluster.urls.to_vec(), cluster.base);
    let outcomes = under_load(urls, token, Duration::from_secs(8), || cluster.node(2, "kill")).await;
    cluster.node(2, "start");
    assert!(outcomes.acknowledged.len() >= 20, "load ran: {} ({:?})", outcomes.acknowledged.len(), outcomes.refused);
    let nats_urls = format!("nats://127.0.0.1:{base},nats://127.0.0.1:{},nats://127.0.0.1:{}", base + 1, base + 2);
    let mut options = whistle::log::nats::NatsOptions::new(nats_urls);
    options.replicas = 3;
    // Right after a node rejoins, the cluster may still be electing leaders.
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        match whistle::log::nats::NatsLog::connect(&options).await {
            Ok(log) => break log,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cluster unreachable: {e}"),
        }
    };
    let breaches = wait_breaches(&log, &outcomes.acknowledged).await;
    assert!(breaches.values().all(|n| *n == 1), "one breach per case in the log: {breaches:?}");
    // Deliveries settle: wait until every alert arrived, or nothing new came for longer than
    // the delivery claim's redelivery time (a record handed to an instance whose connection
    // died is handed out again after it).
    let expected = outcomes.acknowledged.len();
    let mut seen = 0;
    let mut quiet_since = Instant::now();
    let settle_by = Instant::now() + Duration::from_secs(120);
    let delivered = || receiver.bodies().len() + department.bodies().len();
    while delivered() < 2 * expected && quiet_since.elapsed() < Duration::from_secs(20) && Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if delivered() > seen {
            seen = delivered();
            quiet_since = Instant::now();
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bodies = receiver.bodies();
    let ids: Vec<String> = bodies.iter().filter_map(|b| b["case_id"].as_str().map(str::to_owned)).collect();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    eprintln!("cluster: {} of {expected} breach alerts delivered by webhook", bodies.len());
    // Exactly once per channel, whichever instance claimed each: a node failure must neither
    // make two instances send the same alert nor make both skip it.
    assert_eq!(distinct.len(), ids.len(), "an alert was delivered twice");
    let missing: Vec<&String> = outcomes.acknowledged.difference(&distinct).collect();
    if !missing.is_empty() {
        for i in 1..=2 {
            let log = std::fs::read_to_string(cluster.dir.join(format!("whistle-{i}.log"))).unwrap_or_default();
            let noteworthy = |l: &&str| (l.contains("WARN") || l.contains("ERROR")) && !l.contains("whistle::watchdog");
            for line in log.lines().filter(noteworthy).take(40) {
                eprintln!("whistle-{i}: {line}");
            }
        }
    }
    assert!(missing.is_empty(), "{} breach alerts never delivered: {missing:?}", missing.len());
    // A request answered "outcome unknown" (its acknowledgement lost with the node) or never
    // answered may have been stored: its case is alerted like any other, but no more of them.
    let extra: Vec<&String> = distinct.difference(&outcomes.acknowledged).collect();
    assert!(extra.len() <= outcomes.ambiguous(), "alerts of cases never asked for: {extra:?} ({:?})", outcomes.refused);
    let summoned: Vec<String> =
        department.bodies().iter().filter_map(|b| b["case_id"].as_str().map(str::to_owned)).collect();
    let summoned_once: BTreeSet<String> = summoned.iter().cloned().collect();
    assert_eq!(summoned_once.len(), summoned.len(), "a summons was delivered twice");
    assert!(summoned_once.is_superset(&outcomes.acknowledged), "each acknowledged whistle's summons");
    assert_eq!(summoned_once, distinct, "a summons for every whistle stored, as for its breach");
    drop(cluster);
}

/// Evidence files on a 3-node cluster (Object Store with three replicas): uploads go on while
/// a node is killed; every upload answered 201 is then served, byte for byte, by both instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_losing_a_node_keeps_every_acknowledged_file() {
    let _turn = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut org = whistle::api::auth::Org::demo();
    org.attachments.max_per_case = 50;
    let cluster = LocalCluster::start(dir.path(), &org, None, "东坝镇").await;
    let token = cluster.token.clone();
    let urls = &cluster.urls;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let raised = serve_process::json_of(
        http.post(format!("{}/v1/whistles", urls[0]))
            .bearer_auth(&token)
            .json(&json!({ "title": "河道垃圾", "description": "现场照片", "departments": ["住建局"] })),
    )
    .await;
    let case = raised["case"]["id"].as_str().unwrap().to_owned();
    // Thirty photos of 40–70 KB (several Object Store chunks each), node 2 killed after ten.
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut refused = Vec::new();
    for i in 0..30u32 {
        if i == 10 {
            cluster.node(2, "kill");
        }
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        let mut rng = Rng::new(u64::from(i) + 1);
        bytes.extend((0..40_000 + i * 1_000).map(|_| rng.below(256) as u8));
        let sha256 = whistle::files::sha256_hex(&bytes);
        // As a person would: the same upload again (same Idempotency-Key) until it is taken,
        // while the cluster elects new leaders.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = http
                .post(format!("{}/v1/cases/{case}/attachments", urls[(i % 2) as usize]))
                .query(&[("name", format!("照片{i}.png"))])
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("photo-{i}"))
                .body(bytes.clone())
                .send()
                .await;
            match answer {
                Ok(res) if res.status() == StatusCode::CREATED => {
                    let body: Value = res.json().await.unwrap();
                    let number = body["case"]["detail"]["attachments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|a| a["sha256"] == sha256.as_str())
                        .expect("the answer's case lists the file")["number"]
                        .as_u64()
                        .unwrap();
                    acknowledged.push((number, sha256));
                    break;
                }
                Ok(res) => refused.push(format!("{i}: {}", res.status())),
                Err(e) => refused.push(format!("{i}: {e}")),
            }
            assert!(Instant::now() < deadline, "upload {i} never taken: {refused:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    eprintln!(
        "files: {} acknowledged, {} attempts refused while the cluster recovered",
        acknowledged.len(),
        refused.len()
    );
    assert_eq!(acknowledged.len(), 30, "every upload was taken in the end, without node 2");
    // Node 2 is still down: every acknowledged file comes back from either instance.
    for url in urls {
        for (number, sha256) in &acknowledged {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let res =
                    http.get(format!("{url}/v1/cases/{case}/attachments/{number}")).bearer_auth(&token).send().await;
                if let Ok(res) = res {
                    if res.status() == StatusCode::OK {
                        let body = res.bytes().await.unwrap();
                        assert_eq!(&whistle::files::sha256_hex(&body), sha256, "file {number} from {url}");
                        break;
                    }
                    // The views of the other instance may trail by a moment; nothing else.
                    assert!(
                        res.status() == StatusCode::NOT_FOUND || res.status().is_server_error(),
                        "{}",
                        res.status()
                    );
                }
                assert!(Instant::now() < deadline, "file {number} not served by {url}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    cluster.node(2, "start");
}

/// deploy/local-cluster.sh: three nats-servers and two `whistle serve` instances sharing
/// `org` (and a policy) and one township's token, stopped when dropped (also when the test
/// fails).
struct LocalCluster {
    /// Where the script keeps the nodes' stores, logs and the instances' data folders.
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
    policy: Option<std::path::PathBuf>,
    script: std::path::PathBuf,
    base: u16,
    /// The two instances.
    urls: [String; 2],
    /// The township's token, taken by both instances.
    token: String,
}

impl LocalCluster {
    /// Writes the organisation (and policy), a token for `township` (before the start: the
    /// script copies the first instance's token file to the second as it starts it), starts the
    /// cluster and waits until both instances are ready.
    async fn start(
        parent: &std::path::Path,
        org: &whistle::api::auth::Org,
        policy: Option<&str>,
        township: &str,
    ) -> LocalCluster {
        let config = parent.join("org.toml");
        std::fs::write(&config, org.to_toml()).unwrap();
        let policy = policy.map(|text| {
            let path = parent.join("policy.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let base = free_block();
        let dir = parent.join("cluster");
        let token = serve_process::add_token(&dir.join("whistle-1"), &config, "township", township);
        let cluster = LocalCluster {
            dir,
            token,
            config,
            policy,
            script: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local-cluster.sh"),
            base,
            urls: [format!("http://127.0.0.1:{}", base + 20), format!("http://127.0.0.1:{}", base + 21)],
        };
        cluster.run(&["start", cluster.dir.to_str().unwrap(), &base.to_string()]);
        for url in &cluster.urls {
            wait_ready(url).await;
        }
        cluster
    }

    fn run(&self, args: &[&str]) {
        let mut command = std::process::Command::new(&self.script);
        command
            .args(args)
            .env("WHISTLE_BIN", env!("CARGO_BIN_EXE_whistle"))
            .env("NATS_SERVER", nats_server::binary())
            .env("WHISTLE_CONFIG", &self.config);
        if let Some(policy) = &self.policy {
            command.env("WHISTLE_POLICY", policy);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kill` or `start` nats-server `n`.
    fn node(&self, n: u8, what: &str) {
        self.run(&["node", self.dir.to_str().unwrap(), &n.to_string(), what]);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script).args(["stop", self.dir.to_str().unwrap()]).output();
    }
}

/// A base port whose block of 22 ports is free.
fn free_block() -> u16 {
    let seed = u64::from(std::process::id());
    let mut rng = Rng::new(seed);
    for _ in 0..200 {
        let base = 20_000 + (rng.below(400) as u16) * 50;
        let free = (0..22).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no block of 22 free ports in 200 tries (seed {seed})");
}
