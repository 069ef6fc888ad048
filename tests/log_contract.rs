//! One contract for both event-log back ends, run against a real nats-server and a real sled.

#[path = "support/nats_server.rs"]
mod nats_server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::StreamExt;
use uuid::Uuid;
use whistle::domain::event::{Actor, Event, EventBody, Role, SCHEMA_VERSION};
use whistle::log::embedded::EmbeddedLog;
use whistle::log::nats::{NatsLog, NatsOptions};
use whistle::log::{Commit, EventLog, LogError, StoredRecord};

/// Longest wait for a subscription to deliver what the test expects.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A commit whose note carries `n`, so order can be checked after a round trip.
fn commit(case_id: Uuid, n: u32) -> Commit {
    let event = Event {
        event_id: Uuid::now_v7(),
        case_id,
        schema_version: SCHEMA_VERSION,
        actor: Actor::new(Role::Department, "住建局"),
        at: Utc.timestamp_opt(1_790_000_000 + i64::from(n), 0).unwrap(),
        body: EventBody::ProgressNoted { department: "住建局".into(), note: n.to_string() },
    };
    Commit { command_id: Uuid::now_v7(), case_id, events: vec![event.clone(), event] }
}

fn note_of(record: &StoredRecord) -> u32 {
    match &record.decode().expect("decodes").events[0].body {
        EventBody::ProgressNoted { note, .. } => note.parse().unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

async fn collect(log: &dyn EventLog, from: u64, count: usize) -> Vec<StoredRecord> {
    let mut stream = log.subscribe(from).await.expect("subscribe");
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let item = tokio::time::timeout(RECEIVE_TIMEOUT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} records arrived", out.len()))
            .expect("stream goes on");
        out.push(item.expect("record"));
    }
    out
}

/// A back end under test that can be restarted on the same storage.
trait Harness: Sized {
    async fn start() -> Self;
    fn log(&self) -> &dyn EventLog;
    async fn restart(&mut self);
}

struct Embedded {
    dir: tempfile::TempDir,
    log: Option<EmbeddedLog>,
}

impl Harness for Embedded {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path().join("log")).unwrap();
        Embedded { dir, log: Some(log) }
    }
    fn log(&self) -> &dyn EventLog {
        self.log.as_ref().unwrap()
    }
    async fn restart(&mut self) {
        self.log.take().unwrap().close().await.unwrap();
        // Subscriptions let go of the database as they notice the writer is gone.
        for _ in 0..200 {
            match EmbeddedLog::open(self.dir.path().join("log")) {
                Ok(log) => {
                    self.log = Some(log);
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        panic!("embedded log did not reopen");
    }
}

struct Nats {
    server: nats_server::NatsServer,
    log: NatsLog,
}

impl Harness for Nats {
    async fn start() -> Self {
        let server = nats_server::NatsServer::start();
        let log = NatsLog::connect(&NatsOptions::new(server.url())).await.unwrap();
        Nats { server, log }
    }
    fn log(&self) -> &dyn EventLog {
        &self.log
    }
    async fn restart(&mut self) {
        // SIGKILL: only what sync_interval: always put on disk survives.
        self.server.kill();
        self.server.start_again();
        self.log = NatsLog::connect(&NatsOptions::new(self.server.url())).await.unwrap();
    }
}

// ----------------------------------------------------------------------------- the contract

async fn round_trip<H: Harness>() {
    let h = H::start().await;
    let log = h.log();
    assert_eq!(log.head().await.unwrap(), 0);
    let case = Uuid::now_v7();
    let first = commit(case, 1);
    let a = log.append(&first, 0).await.unwrap();
    assert!(!a.duplicate);
    let second = commit(case, 2);
    let b = log.append(&second, a.position).await.unwrap();
    assert!(b.position > a.position);
    let records = log.read_case(case).await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].decode().unwrap(), first);
    assert_eq!(records[1].decode().unwrap(), second);
    assert_eq!(records[1].msg_id.as_deref(), Some(second.command_id.to_string().as_str()));
    assert_eq!(log.head().await.unwrap(), b.position);
    assert!(log.read_case(Uuid::now_v7()).await.unwrap().is_empty());
}

/// A case with more records than one read asks for (NATS reads 256 per direct get) is read
/// whole and in order, interleaved with another case's records.
async fn a_long_case_is_read_whole_and_in_order<H: Harness>() {
    let h = H::start().await;
    let log = h.log();
    let (long, other) = (Uuid::now_v7(), Uuid::now_v7());
    let mut expected = 0;
    for n in 0..600 {
        expected = log.append(&commit(long, n), expected).await.unwrap().position;
        if n % 7 == 0 {
            let last = log.read_case(other).await.unwrap().last().map_or(0, |r| r.position);
            log.append(&commit(other, n), last).await.unwrap();
        }
    }
    let records = log.read_case(long).await.unwrap();
    assert_eq!(records.iter().map(note_of).collect::<Vec<_>>(), (0..600).collect::<Vec<_>>());
    assert!(records.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(log.read_case(other).await.unwrap().len(), 86);
}

async fn stale_expectations_conflict<H: Harness>() {
    let h = H::start().await;
    let log = h.log();
    let case = Uuid::now_v7();
    let a = log.append(&commit(case, 1), 0).await.unwrap();
    let again_new = log.append(&commit(case, 2), 0).await.unwrap_err();
    assert_eq!(again_new, LogError::Conflict { case_id: case, expected: 0 });
    let behind = log.append(&commit(case, 3), a.position + 7).await.unwrap_err();
    assert!(matches!(behind, LogError::Conflict { .. }), "{behind:?}");
    let other = Uuid::now_v7();
    let unknown = log.append(&commit(other, 1), a.position).await.unwrap_err();
    assert!(matches!(unknown, LogError::Conflict { .. }), "a case that does not exist has last position 0");
    assert_eq!(log.read_case(case).await.unwrap().len(), 1, "refused appends write nothing");
}

async fn concurrent_writers_one_wins<H: Harness>() {
    let h = H::start().await;
    let log = h.log();
    for round in 0..20 {
        let case = Uuid::now_v7();
        let base = log.append(&commit(case, 0), 0).await.unwrap().position;
        let (one, two) = (commit(case, 1), commit(case, 2));
        let (x, y) = tokio::join!(log.append(&one, base), log.append(&two, base));
        let wins = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {x:?} {y:?}");
        let loser = if x.is_err() { x } else { y };
        assert!(matches!(loser, Err(LogError::Conflict { .. })), "{loser:?}");
        assert_eq!(log.read_case(case).await.unwrap().len(), 2);
    }
}

async fn retried_command_is_stored_once<H: Harness>() {
    let h = H::start().await;
    let log = h.log();
    let case = Uuid::now_v7();
    let first = commit(case, 1);
    let a = log.append(&first, 0).await.unwrap();
    let again = log.append(&first, 0).await.unwrap();
    assert_eq!(again, whistle::log::Appended { position: a.position, duplicate: true });
    // Another command lands, then the first is retried with its now-stale expectation.
    let b = log.append(&commit(case, 2), a.position).await.unwrap();
    let late = log.append(&first, 0).await.unwrap();
    assert_eq!(late, whistle::log::Appended { position: a.position, duplicate: true });
    let mid = commit(case, 3);
    let c = log.append(&mid, b.position).await.unwrap();
    assert_eq!(log.append(&mid, b.position).await.unwrap().position, c.position);
    let records = log.read_case(case).await.unwrap();
    assert_eq!(records.iter().map(note_of).collect::<Vec<_>>(), vec![1, 2, 3]);
}

async fn subscription_follows_append_order_and_resumes<H: Harness>() {
    let h = H::start().await;
    let log = h.log();
    let cases: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let mut last: BTreeMap<Uuid, u64> = BTreeMap::new();
    let mut appended = Vec::new();
    for n in 0..50u32 {
        let case = cases[n as usize % 5];
        let a = log.append(&commit(case, n), last.get(&case).copied().unwrap_or(0)).await.unwrap();
        last.insert(case, a.position);
        appended.push(a.position);
    }
    let all = collect(log, 1, 50).await;
    assert_eq!(all.iter().map(|r| r.position).collect::<Vec<_>>(), appended);
    assert_eq!(all.iter().map(note_of).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    let from = appended[31];
    let tail = collect(log, from, 19).await;
    assert_eq!(tail[0].position, from, "resumes exactly at the position asked for");
    assert_eq!(tail.iter().map(note_of).collect::<Vec<_>>(), (31..50).collect::<Vec<_>>());
    // New records reach a live subscription.
    let mut live = log.subscribe(appended[49] + 1).await.unwrap();
    let case = cases[0];
    let fresh = log.append(&commit(case, 99), last[&case]).await.unwrap();
    let got = tokio::time::timeout(RECEIVE_TIMEOUT, live.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((got.position, note_of(&got)), (fresh.position, 99));
}

async fn acknowledged_appends_survive_a_restart<H: Harness>() {
    let mut h = H::start().await;
    let case = Uuid::now_v7();
    let mut last = 0;
    for n in 0..30 {
        last = h.log().append(&commit(case, n), last).await.unwrap().position;
    }
    h.restart().await;
    let records = h.log().read_case(case).await.unwrap();
    assert_eq!(records.iter().map(note_of).collect::<Vec<_>>(), (0..30).collect::<Vec<_>>());
    assert_eq!(h.log().head().await.unwrap(), last);
    let next = h.log().append(&commit(case, 30), last).await.unwrap();
    assert!(next.position > last, "appends go on after the restart");
}

async fn thousand_concurrent_appends_to_a_hundred_cases<H: Harness>() {
    let h = H::start().await;
    let log = h.log();
    let cases: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    let writers = cases.iter().map(|case| async move {
        let mut last = 0;
        for n in 0..10 {
            last = log.append(&commit(*case, n), last).await.expect("append").position;
        }
    });
    futures::future::join_all(writers).await;
    for case in &cases {
        let records = log.read_case(*case).await.unwrap();
        assert_eq!(records.iter().map(note_of).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>(), "case {case}");
        assert!(records.windows(2).all(|w| w[0].position < w[1].position));
    }
    assert_eq!(log.head().await.unwrap(), 1_000);
    let all = collect(log, 1, 1_000).await;
    assert!(all.windows(2).all(|w| w[1].position == w[0].position + 1), "no gaps, no reordering");
}

async fn a_delivery_is_claimed_once<H: Harness>() {
    let h = H::start().await;
    let log = h.log();
    assert!(log.claim_delivery("webhook/督查室/alert-1").await.unwrap());
    assert!(!log.claim_delivery("webhook/督查室/alert-1").await.unwrap(), "the second claim loses");
    assert!(log.claim_delivery("webhook/督查室/alert-2").await.unwrap());
    let claims = futures::future::join_all((0..8).map(|_| log.claim_delivery("subject/alert-3"))).await;
    assert_eq!(claims.into_iter().filter(|c| *c.as_ref().unwrap()).count(), 1, "racing claims: one wins");

    // Several at once: each answered on its own, in order, as one at a time would be.
    let keys: Vec<String> =
        ["subject/alert-4", "webhook/督查室/alert-1", "subject/alert-4", "subject/alert-5"].map(String::from).to_vec();
    let won: Vec<bool> = log.claim_deliveries(&keys).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(won, [true, false, false, true], "new, claimed before, twice in one batch, new");
    assert!(!log.claim_delivery("subject/alert-5").await.unwrap(), "a batch's claims hold");
    let won: Vec<bool> = log.claim_deliveries(&keys).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(won, [false; 4]);
    assert!(log.claim_deliveries(&[]).await.is_empty());
}

macro_rules! contract {
    ($module:ident, $harness:ty) => {
        mod $module {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn round_trip() {
                super::round_trip::<$harness>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_long_case_is_read_whole_and_in_order() {
                super::a_long_case_is_read_whole_and_in_order::<$harness>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stale_expectations_conflict() {
                super::stale_expectations_conflict::<$harness>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_one_wins() {
                super::concurrent_writers_one_wins::<$harness>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retried_command_is_stored_once() {
                super::retried_command_is_stored_once::<$harness>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn subscription_follows_append_order_and_resumes() {
                super::subscription_follows_append_order_and_resumes::<$harness>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acknowledged_appends_survive_a_restart() {
                super::acknowledged_appends_survive_a_restart::<$harness>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_delivery_is_claimed_once() {
                super::a_delivery_is_claimed_once::<$harness>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn thousand_concurrent_appends_to_a_hundred_cases() {
                super::thousand_concurrent_appends_to_a_hundred_cases::<$harness>().await
            }
        }
    };
}

contract!(embedded, Embedded);
contract!(nats, Nats);

// ----------------------------------------------------------------------------- NATS specifics

#[tokio::test]
async fn nats_down_at_start_is_one_clear_error() {
    let port = nats_server::free_port();
    let err = match NatsLog::connect(&NatsOptions::new(format!("nats://127.0.0.1:{port}"))).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with(&format!("event log: cannot reach NATS at nats://127.0.0.1:{port}")), "{err}");
    assert_eq!(err.lines().count(), 1);
}

/// A server with a `WHISTLE` stream on `whistle.case.>` made beforehand with `config` (as an
/// operator or an earlier release would), and a JetStream context on it.
async fn server_with_stream(
    config: async_nats::jetstream::stream::Config,
) -> (nats_server::NatsServer, async_nats::jetstream::Context) {
    let server = nats_server::NatsServer::start();
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let config = async_nats::jetstream::stream::Config {
        name: "WHISTLE".into(),
        subjects: vec!["whistle.case.>".into()],
        ..config
    };
    js.create_stream(config).await.unwrap();
    (server, js)
}

#[tokio::test]
async fn an_incompatible_stream_is_an_error_and_left_unchanged() {
    let (server, js) = server_with_stream(async_nats::jetstream::stream::Config {
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let err = match NatsLog::connect(&NatsOptions::new(server.url())).await {
        Ok(_) => panic!("accepted a stream whose events expire"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("max_age") && err.contains("left unchanged"), "{err}");
    let mut stream = js.get_stream("WHISTLE").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.max_age, Duration::from_secs(3600));
}

/// A stream made before cases were read with direct gets is allowed them on connect, and
/// what it holds is read back whole.
#[tokio::test]
async fn a_stream_without_direct_gets_is_allowed_them_and_read_whole() {
    let (server, js) = server_with_stream(async_nats::jetstream::stream::Config {
        storage: async_nats::jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await;
    let log = NatsLog::connect(&NatsOptions::new(server.url())).await.unwrap();
    let mut stream = js.get_stream("WHISTLE").await.unwrap();
    assert!(stream.info().await.unwrap().config.allow_direct);
    let case = Uuid::now_v7();
    let first = log.append(&commit(case, 1), 0).await.unwrap();
    log.append(&commit(case, 2), first.position).await.unwrap();
    assert_eq!(log.read_case(case).await.unwrap().iter().map(note_of).collect::<Vec<_>>(), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_subscriptions_go_on_across_a_server_restart() {
    let mut server = nats_server::NatsServer::start();
    let log = Arc::new(NatsLog::connect(&NatsOptions::new(server.url())).await.unwrap());
    let case = Uuid::now_v7();
    let mut last = 0;
    for n in 0..5 {
        last = log.append(&commit(case, n), last).await.unwrap().position;
    }
    let mut live = log.subscribe(1).await.unwrap();
    for n in 0..5 {
        let r = tokio::time::timeout(RECEIVE_TIMEOUT, live.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(note_of(&r), n);
    }
    server.restart();
    // The same connection reconnects by itself; appends retry until the server is back.
    for n in 5..10 {
        last = log.append(&commit(case, n), last).await.unwrap().position;
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let r = tokio::time::timeout(RECEIVE_TIMEOUT, live.next()).await.expect("subscription resumes");
        if let Some(Ok(r)) = r {
            seen.push(note_of(&r));
        }
    }
    assert_eq!(seen, vec![5, 6, 7, 8, 9]);
}

#[test]
fn deploy_configs_are_valid_nats_server_configs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let server_config = path.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.ends_with(".conf") && (n.starts_with("single-node") || n.starts_with("cluster-node"))
        });
        if server_config {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("sync_interval: always"), "{} must sync every write", path.display());
            let out =
                std::process::Command::new(nats_server::binary()).arg("-c").arg(&path).arg("-t").output().unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "single node and three cluster nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_file_lets_the_service_work_and_alert_consumers_only_listen() {
    let accounts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/accounts.conf");
    let text = std::fs::read_to_string(&accounts)
        .unwrap()
        .replace("$WHISTLE_NATS_PASSWORD", "\"service-secret\"")
        .replace("$WHISTLE_ALERTS_PASSWORD", "\"alerts-secret\"");
    let server = nats_server::NatsServer::start_prepared("include ./accounts.conf\n", |dir| {
        std::fs::write(dir.join("accounts.conf"), &text).unwrap();
    });
    let mut options = NatsOptions::new(server.url());
    options.user = Some("whistle".into());
    options.password = Some("service-secret".into());
    let log = NatsLog::connect(&options).await.expect("the service user creates and uses the stream");
    let case = Uuid::now_v7();
    log.append(&commit(case, 1), 0).await.unwrap();
    assert_eq!(log.read_case(case).await.unwrap().len(), 1);
    let mut claims = log.claim("permission-check").await.expect("the service user may run its consumer");
    log.append(&commit(case, 2), log.head().await.unwrap()).await.unwrap();
    let claimed = tokio::time::timeout(RECEIVE_TIMEOUT, claims.next()).await.unwrap().unwrap().unwrap();
    claimed.ack.ack().await.unwrap();

    let listener = async_nats::ConnectOptions::with_user_and_password("alerts".into(), "alerts-secret".into())
        .connect(server.url())
        .await
        .unwrap();
    let mut alerts = listener.subscribe("whistle.alert.>").await.unwrap();
    listener.flush().await.unwrap();
    log.publish_alert("whistle.alert.breach.住建局", bytes::Bytes::from_static(b"{}")).await.unwrap();
    let got = tokio::time::timeout(RECEIVE_TIMEOUT, alerts.next()).await.unwrap().unwrap();
    assert_eq!(got.subject.as_str(), "whistle.alert.breach.住建局");
    let head = log.head().await.unwrap();
    let _ = listener.publish("whistle.case.forged", "forged".into()).await;
    let _ = listener.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(log.head().await.unwrap(), head, "an alert consumer cannot write events");
    let js = async_nats::jetstream::new(listener);
    let lookup = tokio::time::timeout(Duration::from_secs(2), js.get_stream("WHISTLE")).await;
    assert!(!matches!(lookup, Ok(Ok(_))), "nor read the case stream");
}

/// The bench's NATS sections shared one stream: the alert-latency section's service found the
/// delivery consumer two million records behind (every earlier section's raises to deliver) and
/// none of its 1,000 alerts arrived in time. Each section now starts from a server without the
/// service's streams, and the bench refuses a server that holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_sections_on_nats_start_from_a_server_without_the_services_streams() {
    let server = nats_server::NatsServer::start();
    let options = NatsOptions::new(server.url());
    let log = NatsLog::connect(&options).await.unwrap();
    log.append(&commit(Uuid::now_v7(), 1), 0).await.unwrap();
    assert!(log.claim_delivery("subject/one").await.unwrap());
    drop(log.claim("bench-consumer").await.unwrap());
    let used = whistle::log::nats::streams_in_use(&options).await.unwrap();
    assert_eq!(used, vec![("WHISTLE".to_owned(), 1), ("WHISTLE_DELIVERIES".to_owned(), 1)]);

    // A bench run against this server is refused and leaves it as it was.
    let json = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_whistle"))
        .args(["bench", "--quick", "--section", "alerts", "--nats", &server.url(), "--json"])
        .arg(json.path().join("bench.json"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("WHISTLE (1 message)") && said.contains("fresh store"), "{said}");
    assert_eq!(log.head().await.unwrap(), 1);

    whistle::log::nats::remove_streams(&options).await.unwrap();
    assert!(whistle::log::nats::streams_in_use(&options).await.unwrap().is_empty());
    // Removing what is not there is no error; a service started next begins at position 0.
    whistle::log::nats::remove_streams(&options).await.unwrap();
    let fresh = NatsLog::connect(&options).await.unwrap();
    assert_eq!(fresh.head().await.unwrap(), 0);
}
