//! The executor's case cache against a real sled log shared by two executors (two service
//! instances): a cached case that someone else has changed is decided again on the log's
//! state, a repeated command id writes nothing, and a creation on an existing case is refused.

#[path = "support/domain.rs"]
mod support;

use std::sync::Arc;

use uuid::Uuid;
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::event::EventBody;
use whistle::domain::Rejection;
use whistle::execute::{execute, ExecuteError, Executor};
use whistle::log::embedded::EmbeddedLog;
use whistle::log::EventLog;

use support::{at, department, raise, township, HOUSING, URBAN};

struct Pair {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    a: Executor,
    b: Executor,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(dir.path().join("log")).unwrap());
    Pair { a: Executor::new(log.clone()), b: Executor::new(log.clone()), log, _dir: dir }
}

fn cmd(case_id: Uuid, actor: whistle::domain::event::Actor, body: CommandBody) -> Command {
    Command::new(Uuid::now_v7(), case_id, actor, body)
}

#[tokio::test]
async fn a_command_rejected_on_a_stale_cached_case_is_decided_again_on_the_log() {
    let p = pair();
    let case = Uuid::now_v7();
    let now = at("2026-03-02T10:00:00+08:00");
    p.a.execute(&cmd(case, township(), raise(&[HOUSING, URBAN])), now).await.unwrap();
    // Instance B lets the housing department report in; A's cached case does not know.
    p.b.execute(&cmd(case, department(HOUSING), CommandBody::AcknowledgeSummons), now).await.unwrap();
    // On A's cached state the department has not reported in, so "handled" would be refused.
    let handled = CommandBody::ReportHandled { summary: "垃圾已清运".into() };
    let done = p.a.execute(&cmd(case, department(HOUSING), handled), now).await.expect("decided on the log's state");
    assert!(matches!(done.events[0].body, EventBody::DepartmentHandled { .. }), "{:?}", done.events);
    assert_eq!(p.log.read_case(case).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_stale_cached_case_cannot_store_a_second_report_in() {
    let p = pair();
    let case = Uuid::now_v7();
    let now = at("2026-03-02T10:00:00+08:00");
    p.a.execute(&cmd(case, township(), raise(&[HOUSING])), now).await.unwrap();
    p.b.execute(&cmd(case, department(HOUSING), CommandBody::AcknowledgeSummons), now).await.unwrap();
    let head = p.log.head().await.unwrap();
    // A's cache still says "not reported in"; its append names a stale position.
    let again = p.a.execute(&cmd(case, department(HOUSING), CommandBody::AcknowledgeSummons), now).await;
    let uncached = execute(p.log.as_ref(), &cmd(case, department(HOUSING), CommandBody::AcknowledgeSummons), now).await;
    assert_eq!(format!("{again:?}"), format!("{uncached:?}"), "cached and uncached executions agree");
    assert!(matches!(again, Err(ExecuteError::Rejected(_))), "{again:?}");
    assert_eq!(p.log.head().await.unwrap(), head, "nothing written");
}

#[tokio::test]
async fn a_repeated_command_id_is_answered_from_the_log_and_writes_nothing() {
    let p = pair();
    let case = Uuid::now_v7();
    let now = at("2026-03-02T10:00:00+08:00");
    let raised = cmd(case, township(), raise(&[HOUSING]));
    let first = p.a.execute(&raised, now).await.unwrap();
    let report_in = cmd(case, department(HOUSING), CommandBody::AcknowledgeSummons);
    p.b.execute(&report_in, now).await.unwrap();
    let head = p.log.head().await.unwrap();
    for executor in [&p.a, &p.b] {
        let again = executor.execute(&raised, now).await.unwrap();
        assert!(again.repeated);
        assert_eq!(again.position, first.position);
        assert_eq!(again.events, first.events);
        let again = executor.execute(&report_in, now).await.unwrap();
        assert!(again.repeated);
    }
    assert_eq!(p.log.head().await.unwrap(), head, "nothing written");
}

#[tokio::test]
async fn creating_a_case_that_exists_is_refused_without_a_write() {
    let p = pair();
    let case = Uuid::now_v7();
    let now = at("2026-03-02T10:00:00+08:00");
    p.a.execute(&cmd(case, township(), raise(&[HOUSING])), now).await.unwrap();
    let head = p.log.head().await.unwrap();
    // B has never seen the case: it tries the creation on an empty case first.
    let second = p.b.execute(&cmd(case, township(), raise(&[URBAN])), now).await;
    assert!(matches!(second, Err(ExecuteError::Rejected(Rejection::Conflict(_)))), "{second:?}");
    assert_eq!(p.log.head().await.unwrap(), head, "nothing written");
}

#[tokio::test]
async fn many_commands_through_two_executors_equal_one_reading_the_log() {
    let p = pair();
    let now = at("2026-03-02T10:00:00+08:00");
    let cases: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    for (i, case) in cases.iter().enumerate() {
        let ex = if i % 2 == 0 { &p.a } else { &p.b };
        ex.execute(&cmd(*case, township(), raise(&[HOUSING, URBAN])), now).await.unwrap();
    }
    // Alternate instances, so half of every step meets a stale cache.
    for (step, body) in [CommandBody::AcknowledgeSummons, CommandBody::ReportHandled { summary: "已处理".into() }]
        .into_iter()
        .enumerate()
    {
        for (i, case) in cases.iter().enumerate() {
            let ex = if (i + step) % 2 == 0 { &p.b } else { &p.a };
            ex.execute(&cmd(*case, department(HOUSING), body.clone()), now).await.unwrap();
        }
    }
    for case in &cases {
        let records = p.log.read_case(*case).await.unwrap();
        assert_eq!(records.len(), 3, "raise, report in, handled: each once");
        let state = whistle::execute::replay(&records);
        let cached = p.a.execute(&cmd(*case, department(URBAN), CommandBody::AcknowledgeSummons), now).await.unwrap();
        let expected: Vec<_> =
            whistle::domain::decide(&state, &cmd(*case, department(URBAN), CommandBody::AcknowledgeSummons), now)
                .unwrap()
                .into_iter()
                .map(|e| e.body)
                .collect();
        assert_eq!(cached.events.iter().map(|e| e.body.clone()).collect::<Vec<_>>(), expected);
    }
}

/// A real log that counts how often a case is read.
struct CountingReads {
    log: Arc<dyn EventLog>,
    reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl EventLog for CountingReads {
    async fn append(
        &self,
        commit: &whistle::log::Commit,
        expected: u64,
    ) -> Result<whistle::log::Appended, whistle::log::LogError> {
        self.log.append(commit, expected).await
    }
    async fn read_case(&self, case_id: Uuid) -> Result<Vec<whistle::log::StoredRecord>, whistle::log::LogError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.log.read_case(case_id).await
    }
    async fn subscribe(&self, from: u64) -> Result<whistle::log::RecordStream, whistle::log::LogError> {
        self.log.subscribe(from).await
    }
    async fn head(&self) -> Result<u64, whistle::log::LogError> {
        self.log.head().await
    }
    async fn claim(&self, name: &str) -> Result<whistle::log::ClaimStream, whistle::log::LogError> {
        self.log.claim(name).await
    }
    async fn publish_alert(&self, subject: &str, payload: bytes::Bytes) -> Result<(), whistle::log::LogError> {
        self.log.publish_alert(subject, payload).await
    }
    async fn watch_alerts(&self, prefix: &str) -> Result<whistle::log::AlertStream, whistle::log::LogError> {
        self.log.watch_alerts(prefix).await
    }
    async fn claim_delivery(&self, key: &str) -> Result<bool, whistle::log::LogError> {
        self.log.claim_delivery(key).await
    }
}

/// A command on a case the executor has not written (another instance did, or it restarted)
/// reads the case once: the scope check's read is what the command decides on. Before, the
/// executor read it a second time.
#[tokio::test]
async fn an_uncached_command_after_a_scope_check_reads_the_case_once() {
    let p = pair();
    let case = Uuid::now_v7();
    let now = at("2026-03-02T10:00:00+08:00");
    p.b.execute(&cmd(case, township(), raise(&[HOUSING])), now).await.unwrap();
    let counting = Arc::new(CountingReads { log: p.log.clone(), reads: Default::default() });
    let fresh = Executor::new(counting.clone());
    let records = counting.read_case(case).await.unwrap();
    fresh.learn(case, &records);
    let done = fresh.execute(&cmd(case, department(HOUSING), CommandBody::AcknowledgeSummons), now).await.unwrap();
    assert!(matches!(done.events[0].body, EventBody::DepartmentAcknowledged { .. }), "{:?}", done.events);
    assert_eq!(counting.reads.load(std::sync::atomic::Ordering::SeqCst), 1, "one read for the check and the command");

    // What was learned goes stale when another instance writes: the append conflicts and the
    // command is decided again on the log.
    let other = Uuid::now_v7();
    p.b.execute(&cmd(other, township(), raise(&[HOUSING, URBAN])), now).await.unwrap();
    fresh.learn(other, &p.log.read_case(other).await.unwrap());
    p.b.execute(&cmd(other, department(HOUSING), CommandBody::AcknowledgeSummons), now).await.unwrap();
    let again = fresh.execute(&cmd(other, department(HOUSING), CommandBody::AcknowledgeSummons), now).await;
    assert!(matches!(again, Err(ExecuteError::Rejected(_))), "{again:?}");
    assert_eq!(p.log.read_case(other).await.unwrap().len(), 2, "no second report-in stored");
}
