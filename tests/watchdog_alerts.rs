//! The projector, watchdog and alert delivery on real logs (sled, and a real nats-server)
//! with a manual clock: alert timing, extensions, reopen, calendar publication, quiet hours,
//! webhook retries, poison records, and two watchdogs racing.

#[path = "support/backends.rs"]
#[macro_use]
mod backends;
#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/webhook.rs"]
mod webhook;

use backends::{open_log, Backend};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use uuid::Uuid;
use whistle::alerts::{AlertConfig, WebhookConfig, WebhookFormat};
use whistle::clock::{Clock, ManualClock};
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::event::{Actor, ClockKind, ClockRef, EventBody, ExtensionSpan, FeedbackTopic, Role, Urgency};
use whistle::domain::{Calendar, SlaPolicy, YearSchedule};
use whistle::execute::{execute, Executed, Executor};
use whistle::log::nats::{NatsLog, NatsOptions};
use whistle::log::EventLog;
use whistle::projector::views::Views;
use whistle::projector::Projector;
use whistle::service::{Node, NodeConfig};
use whistle::watchdog::Watchdog;

const TOWNSHIP: &str = "东坝镇";
const HOUSING: &str = "住建局";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn township() -> Actor {
    Actor::new(Role::Township, TOWNSHIP)
}

fn raise(urgency: Urgency) -> CommandBody {
    CommandBody::RaiseWhistle {
        title: "河道垃圾堆积".into(),
        description: "需要多部门协调".into(),
        departments: vec![HOUSING.into()],
        category: None,
        location: None,
        urgency,
    }
}

fn ack_clock() -> ClockRef {
    ClockRef::for_department(ClockKind::Ack, HOUSING)
}

/// One node's parts, driven by hand: commands, projection and watchdog ticks on demand.
struct Rig {
    _server: Option<nats_server::NatsServer>,
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    projector: Projector,
    watchdog: Watchdog,
    clock: ManualClock,
}

impl Rig {
    async fn new(backend: Backend, start: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (log, server) = open_log(backend, dir.path()).await;
        let views = Views::open(dir.path().join("views")).unwrap();
        let projector = Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
        let clock = ManualClock::new(at(start));
        let watchdog =
            Watchdog::new(Arc::new(Executor::new(log.clone())), views, Arc::new(clock.clone()), projector.progress());
        Rig { _server: server, _dir: dir, log, projector, watchdog, clock }
    }

    async fn run(&mut self, case_id: Uuid, actor: Actor, body: CommandBody) -> Executed {
        let cmd = Command::new(Uuid::now_v7(), case_id, actor, body);
        let done = execute(self.log.as_ref(), &cmd, self.clock.now()).await.expect("command accepted");
        self.project().await;
        done
    }

    async fn project(&mut self) {
        self.projector.catch_up(self.log.as_ref(), true, |_, _| {}).await.unwrap();
    }

    /// Publishes 2027 with 元旦 on 01-01..03 and no make-up working days.
    async fn publish_2027(&mut self) {
        let schedule = YearSchedule::from_toml(
            "year = 2027\nnotice = \"国务院办公厅关于2027年部分节假日安排的通知\"\n\
             holidays = [{ name = \"元旦\", from = \"2027-01-01\", to = \"2027-01-03\" }]\nworkdays = []",
        )
        .unwrap();
        let calendar_case = whistle::domain::event::CALENDAR_CASE_ID;
        self.run(calendar_case, Actor::new(Role::Admin, "市政府办"), CommandBody::PublishCalendar { schedule }).await;
    }

    /// Sets the clock, lets the watchdog act, projects; returns the alert events stored.
    async fn tick_at(&mut self, when: DateTime<Utc>) -> Vec<EventBody> {
        let before = self.log.head().await.unwrap();
        self.clock.set(when);
        self.watchdog.tick().await.unwrap();
        self.project().await;
        let head = self.log.head().await.unwrap();
        let mut out = Vec::new();
        if head == before {
            return out;
        }
        let mut stream = self.log.subscribe(before + 1).await.unwrap();
        loop {
            let next = tokio::time::timeout(StdDuration::from_secs(30), stream.next()).await;
            let r = next.expect("the log delivers up to its head within 30 s").unwrap().unwrap();
            out.extend(r.decode().unwrap().events.into_iter().map(|e| e.body).filter(|b| b.alert_stage().is_some()));
            if r.position >= head {
                return out;
            }
        }
    }
}

async fn warning_breach_and_escalation_fire_exactly_at_their_times(backend: Backend) {
    let mut rig = Rig::new(backend, "2026-03-02T10:00:00+08:00").await;
    let case = Uuid::now_v7();
    rig.run(case, township(), raise(Urgency::Normal)).await;
    let due = at("2026-03-03T10:00:00+08:00");
    assert!(rig.tick_at(at("2026-03-03T03:59:59+08:00")).await.is_empty(), "nothing before 75 %");
    assert_eq!(
        rig.tick_at(at("2026-03-03T04:00:00+08:00")).await,
        vec![EventBody::SlaWarned { clock: ack_clock(), due_at: due, warn_at: at("2026-03-03T04:00:00+08:00") }]
    );
    assert!(rig.tick_at(at("2026-03-03T09:59:59.999+08:00")).await.is_empty(), "nothing before the deadline");
    assert_eq!(rig.tick_at(due).await, vec![EventBody::SlaBreached { clock: ack_clock(), due_at: due }]);
    assert!(rig.tick_at(due + Duration::hours(23)).await.is_empty());
    assert_eq!(
        rig.tick_at(due + Duration::hours(24)).await,
        vec![EventBody::SlaEscalated { clock: ack_clock(), due_at: due, level: 2 }]
    );
    assert!(rig.tick_at(due + Duration::days(30)).await.is_empty(), "each stage once");
    let view = rig.projector.views().case(case).unwrap().unwrap();
    assert_eq!(view.overdue().len(), 1);
    assert_eq!(rig.projector.views().alerts(true, 10).unwrap().len(), 3);
    rig.projector.views().verify().expect("the views' counters equal what they count");
}

async fn a_late_warning_becomes_the_breach_and_a_stopped_clock_says_nothing(backend: Backend) {
    let mut rig = Rig::new(backend, "2026-03-02T10:00:00+08:00").await;
    let case = Uuid::now_v7();
    rig.run(case, township(), raise(Urgency::Normal)).await;
    // The service was down through the warning time and the deadline.
    let got = rig.tick_at(at("2026-03-03T11:00:00+08:00")).await;
    assert_eq!(got, vec![EventBody::SlaBreached { clock: ack_clock(), due_at: at("2026-03-03T10:00:00+08:00") }]);

    let other = Uuid::now_v7();
    rig.run(other, township(), raise(Urgency::Normal)).await;
    rig.run(other, Actor::new(Role::Department, HOUSING), CommandBody::AcknowledgeSummons).await;
    rig.tick_at(at("2026-03-10T11:00:00+08:00")).await;
    let records = rig.log.read_case(other).await.unwrap();
    let alerts = records.iter().flat_map(|r| r.decode().unwrap().events).filter(|e| e.body.alert_stage().is_some());
    assert_eq!(alerts.count(), 0, "a department that reported in is never alerted");
    assert!(rig.projector.views().case(other).unwrap().unwrap().armed.is_empty(), "reported in: no clock");
    rig.projector.views().verify().expect("the views' counters equal what they count");
}

async fn an_approved_extension_moves_the_breach(backend: Backend) {
    let mut rig = Rig::new(backend, "2026-03-02T10:00:00+08:00").await;
    let case = Uuid::now_v7();
    rig.run(case, township(), raise(Urgency::Normal)).await;
    let dept = Actor::new(Role::Department, HOUSING);
    let ask = CommandBody::RequestExtension {
        clock: ack_clock(),
        span: ExtensionSpan::Hours(12),
        reason: "需上报局领导".into(),
    };
    rig.run(case, dept, ask).await;
    rig.run(case, Actor::new(Role::Supervisor, "市委督查室"), CommandBody::ApproveExtension { number: 1 }).await;
    let alerts = rig.tick_at(at("2026-03-03T10:00:00+08:00")).await;
    assert!(
        alerts.iter().all(|a| !matches!(a, EventBody::SlaBreached { .. })),
        "old deadline passes quietly: {alerts:?}"
    );
    let due = at("2026-03-03T22:00:00+08:00");
    assert!(rig
        .tick_at(due - Duration::milliseconds(1))
        .await
        .iter()
        .all(|a| !matches!(a, EventBody::SlaBreached { .. })));
    assert_eq!(rig.tick_at(due).await, vec![EventBody::SlaBreached { clock: ack_clock(), due_at: due }]);
}

async fn reopened_feedback_breaches_on_its_new_resolve_deadline(backend: Backend) {
    let mut rig = Rig::new(backend, "2026-03-02T10:00:00+08:00").await;
    let case = Uuid::now_v7();
    let submit = CommandBody::SubmitFeedback {
        topic: FeedbackTopic::AppsChatGroups,
        body: "工作群要求每日打卡".into(),
        anonymous: false,
    };
    rig.run(case, township(), submit).await;
    let office = Actor::new(Role::Office, "市减负办");
    rig.run(case, office.clone(), CommandBody::ResolveFeedback { summary: "已清理该工作群".into() }).await;
    rig.clock.set(at("2026-03-04T15:00:00+08:00"));
    rig.run(case, township(), CommandBody::ReopenFeedback { reason: "又建了新群".into() }).await;
    // Reopened Wed 03-04: 7 working days = Thu 5 .. Fri 13 → due Sat 03-14 00:00.
    let resolve = ClockRef::case_wide(ClockKind::FeedbackResolve);
    let view = rig.projector.views().case(case).unwrap().unwrap();
    let due = view.armed.iter().find(|a| a.clock == resolve).unwrap().due_at;
    assert_eq!(due, at("2026-03-14T00:00:00+08:00"));
    let got = rig.tick_at(due).await;
    assert!(got.contains(&EventBody::SlaBreached { clock: resolve, due_at: due }), "{got:?}");
}

/// Feedback submitted on 2026-12-28, whose resolve deadline falls in unpublished 2027.
async fn year_end_feedback(backend: Backend) -> (Rig, Uuid) {
    let mut rig = Rig::new(backend, "2026-12-28T10:00:00+08:00").await;
    let case = Uuid::now_v7();
    let submit =
        CommandBody::SubmitFeedback {
            topic: FeedbackTopic::Other, body: "年底材料过多".into(), anonymous: false
        };
    rig.run(case, township(), submit).await;
    (rig, case)
}

async fn publishing_a_year_recomputes_provisional_deadlines(backend: Backend) {
    let (mut rig, case) = year_end_feedback(backend).await;
    let resolve = ClockRef::case_wide(ClockKind::FeedbackResolve);
    let armed = |rig: &Rig| {
        rig.projector.views().case(case).unwrap().unwrap().armed.into_iter().find(|a| a.clock == resolve).unwrap()
    };
    let before = armed(&rig);
    assert!(before.provisional);
    assert_eq!(before.due_at, at("2027-01-07T00:00:00+08:00"), "weekday rule: 12-29..31, 01-01, 01-04..06");
    rig.publish_2027().await;
    let after = armed(&rig);
    assert!(!after.provisional);
    assert_eq!(after.due_at, at("2027-01-08T00:00:00+08:00"), "01-01 is now a holiday");
    // The deadline index moved too: nothing fires at the old deadline.
    let got = rig.tick_at(at("2027-01-07T00:00:00+08:00")).await;
    assert!(got.iter().all(|a| !matches!(a, EventBody::SlaBreached { clock, .. } if *clock == resolve)), "{got:?}");
    let got = rig.tick_at(at("2027-01-08T00:00:00+08:00")).await;
    assert!(got.contains(&EventBody::SlaBreached { clock: resolve.clone(), due_at: at("2027-01-08T00:00:00+08:00") }));
    // A restarted projector still knows the published year.
    let reopened = Projector::new(rig.projector.views().clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    assert!(reopened.calendar().has_year(2027));
}

async fn publishing_a_year_moves_a_deadline_whose_alerts_have_all_fired(backend: Backend) {
    let (mut rig, case) = year_end_feedback(backend).await;
    // Long after the provisional deadline: every stage of every clock fires, nothing is pending.
    for _ in 0..8 {
        rig.tick_at(at("2027-03-01T10:00:00+08:00")).await;
    }
    assert!(rig.projector.views().due_alerts(at("2030-01-01T00:00:00+08:00"), 10).unwrap().is_empty());
    let resolve = ClockRef::case_wide(ClockKind::FeedbackResolve);
    let armed = |rig: &Rig| {
        rig.projector.views().case(case).unwrap().unwrap().armed.into_iter().find(|a| a.clock == resolve).unwrap()
    };
    assert_eq!(armed(&rig).due_at, at("2027-01-07T00:00:00+08:00"));
    assert!(armed(&rig).provisional);
    rig.publish_2027().await;
    let after = armed(&rig);
    assert!(!after.provisional);
    assert_eq!(after.due_at, at("2027-01-08T00:00:00+08:00"), "the shown deadline follows the published year");
}

#[tokio::test]
async fn a_poison_record_is_set_aside_and_projection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = whistle::log::embedded::EmbeddedLog::open(dir.path().join("log")).unwrap();
    log.append_raw("whistle.case.x", bytes::Bytes::from_static(b"{not json")).await.unwrap();
    let case = Uuid::now_v7();
    let cmd = Command::new(Uuid::now_v7(), case, township(), raise(Urgency::Normal));
    execute(&log, &cmd, at("2026-03-02T10:00:00+08:00")).await.unwrap();
    let views = Views::open(dir.path().join("views")).unwrap();
    let mut projector = Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    let totals = projector.catch_up(&log, false, |_, _| {}).await.unwrap();
    assert_eq!(totals.dead_letters, 1);
    assert!(views.case(case).unwrap().is_some(), "the good record after it is projected");
    let letters = views.dead_letters(10).unwrap();
    assert_eq!(letters[0].subject, "whistle.case.x");
    assert_eq!(letters[0].payload, "{not json");
    assert!(letters[0].reason.starts_with("not a commit"), "{}", letters[0].reason);
    // An explicit rebuild stops at it instead, with a clear message.
    let err = whistle::projector::rebuild(views, &log, SlaPolicy::default(), Calendar::official(), |_, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("record 1 on whistle.case.x cannot be projected: not a commit"), "{err}");
}

#[tokio::test]
async fn a_poison_message_published_raw_to_nats_lands_in_the_dead_letters() {
    let server = nats_server::NatsServer::start();
    let log = NatsLog::connect(&NatsOptions::new(server.url())).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.publish("whistle.case.x", "garbage".into()).await.unwrap().await.unwrap();
    let typed = br#"{"command_id":"0192e0a0-0000-7000-8000-000000000001","case_id":"0192e0a0-0000-7000-8000-000000000002","events":[{"type":"no_such_event"}]}"#;
    js.publish("whistle.case.0192e0a0-0000-7000-8000-000000000002", bytes::Bytes::from_static(typed))
        .await
        .unwrap()
        .await
        .unwrap();
    let case = Uuid::now_v7();
    execute(&log, &Command::new(Uuid::now_v7(), case, township(), raise(Urgency::Normal)), Utc::now()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let views = Views::open(dir.path().join("views")).unwrap();
    let mut projector = Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    let totals = projector.catch_up(&log, false, |_, _| {}).await.unwrap();
    assert_eq!(totals.dead_letters, 2);
    assert_eq!(views.dead_letter_count().unwrap(), 2);
    assert!(views.case(case).unwrap().is_some());
}

// ----------------------------------------------------------------------------- delivery

fn webhook(url: String) -> AlertConfig {
    AlertConfig {
        webhooks: vec![WebhookConfig {
            name: "supervisors".into(),
            url,
            format: WebhookFormat::Generic,
            stages: vec![],
            units: vec![],
            attempts: None,
        }],
        ..AlertConfig::default()
    }
}

/// One WeCom group robot taking the SLA alerts.
fn robot_webhook(url: String) -> AlertConfig {
    let mut alerts = webhook(url);
    alerts.webhooks[0].format = WebhookFormat::Wecom;
    alerts
}

/// No 通报: these tests count alerts (the monthly 通报 is tested in tests/reports.rs).
fn alerts_only() -> whistle::reports::ReportSchedule {
    whistle::reports::ReportSchedule { monthly: false, ..Default::default() }
}

struct Live {
    _server: Option<nats_server::NatsServer>,
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    node: Node,
    clock: ManualClock,
}

async fn live_node(backend: Backend, start: &str, alerts: AlertConfig) -> Live {
    let dir = tempfile::tempdir().unwrap();
    let (log, server) = open_log(backend, dir.path()).await;
    let views = Views::open(dir.path().join("views")).unwrap();
    let clock = ManualClock::new(at(start));
    let config = NodeConfig { alerts, reports: alerts_only(), ..NodeConfig::default() };
    let node = Node::start(log.clone(), views, Arc::new(clock.clone()), config).await.unwrap();
    Live { _server: server, _dir: dir, log, node, clock }
}

impl Live {
    async fn run(&self, case_id: Uuid, actor: Actor, body: CommandBody) -> Executed {
        let cmd = Command::new(Uuid::now_v7(), case_id, actor, body);
        let done = execute(self.log.as_ref(), &cmd, self.clock.now()).await.unwrap();
        self.node.caught_up_to(done.position).await;
        done
    }
}

async fn the_running_watchdog_wakes_for_the_deadline_and_every_channel_hears_once(backend: Backend) {
    let receiver = webhook::Receiver::start(0).await;
    let live = live_node(backend, "2026-03-02T10:00:00+08:00", webhook(receiver.url())).await;
    let mut subject = live.log.watch_alerts("whistle.alert.").await.unwrap();
    let mut stream = live.node.live_alerts();
    let case = Uuid::now_v7();
    live.run(case, township(), raise(Urgency::Normal)).await;
    live.clock.set(at("2026-03-03T10:00:00+08:00"));
    let alert = tokio::time::timeout(StdDuration::from_secs(20), stream.recv()).await.expect("live alert").unwrap();
    assert_eq!(alert.stage, whistle::domain::event::AlertStage::Breach);
    assert_eq!(alert.unit, HOUSING);
    let (name, payload) = tokio::time::timeout(StdDuration::from_secs(20), subject.next()).await.unwrap().unwrap();
    assert_eq!(name, "whistle.alert.breach.1.住建局", "stage, supervisor level, unit");
    let notice: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(notice["alert_id"], alert.alert_id.to_string());
    assert!(notice["text"].as_str().unwrap().contains("【超时】住建局 的「报到」已超时"), "{notice}");
    let bodies = receiver.wait_for(1).await;
    assert_eq!(bodies[0]["alert_id"], alert.alert_id.to_string());
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert_eq!(receiver.bodies().len(), 1, "once");
    live.node.stop().await;
}

async fn a_failing_webhook_receives_each_alert_exactly_once_after_retries(backend: Backend) {
    let receiver = webhook::Receiver::start(3).await;
    let live = live_node(backend, "2026-03-02T10:00:00+08:00", webhook(receiver.url())).await;
    let cases: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for case in &cases {
        live.run(*case, township(), raise(Urgency::Normal)).await;
    }
    live.clock.set(at("2026-03-03T10:00:00+08:00"));
    let bodies = receiver.wait_for(3).await;
    tokio::time::sleep(StdDuration::from_secs(1)).await;
    let bodies_after = receiver.bodies();
    assert_eq!(bodies_after.len(), 3, "{bodies:?}");
    let mut ids: Vec<String> = bodies_after.iter().map(|b| b["alert_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each alert once");
    assert_eq!(receiver.attempts.load(std::sync::atomic::Ordering::SeqCst), 6, "3 refused, then 3 accepted");
    live.node.stop().await;
}

/// Every webhook shared one send loop: a webhook that kept failing (up to eight attempts over
/// half a minute per message) held every other webhook's alerts behind its retries. Each
/// webhook now has a queue of its own.
async fn a_failing_webhook_does_not_hold_up_the_others(backend: Backend) {
    let broken = webhook::Receiver::start(usize::MAX).await;
    let working = webhook::Receiver::start(0).await;
    let hook = |name: &str, url: String, attempts| WebhookConfig {
        name: name.into(),
        url,
        format: WebhookFormat::Generic,
        stages: vec![],
        units: vec![],
        attempts,
    };
    let alerts = AlertConfig {
        // The broken one first: its messages are queued ahead of the working one's.
        webhooks: vec![hook("broken", broken.url(), Some(4)), hook("supervisors", working.url(), None)],
        ..AlertConfig::default()
    };
    let live = live_node(backend, "2026-03-02T10:00:00+08:00", alerts).await;
    for _ in 0..2 {
        live.run(Uuid::now_v7(), township(), raise(Urgency::Normal)).await;
    }
    live.clock.set(at("2026-03-03T10:00:00+08:00"));
    working.wait_for(2).await;
    let tried = broken.attempts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(tried < 8, "both breaches reached the working webhook only after {tried} of the broken one's 8 attempts");
    live.node.stop().await;
    assert_eq!(broken.attempts.load(std::sync::atomic::Ordering::SeqCst), 8, "the broken one still tried each 4 times");
    assert_eq!(working.bodies().len(), 2);
}

/// A WeCom or DingTalk group robot refuses a message with HTTP 200 and a non-zero `errcode`
/// (its rate limit, a revoked key): such an answer counted as sent, and the message was lost.
#[tokio::test]
async fn a_group_robot_that_refuses_with_an_errcode_is_retried_until_it_takes_the_message() {
    let robot = webhook::Receiver::start_robot(2).await;
    let alerts = robot_webhook(robot.url());
    let live = live_node(Backend::Embedded, "2026-03-02T10:00:00+08:00", alerts).await;
    live.run(Uuid::now_v7(), township(), raise(Urgency::Normal)).await;
    live.clock.set(at("2026-03-03T10:00:00+08:00"));
    let bodies = robot.wait_for(1).await;
    assert!(bodies[0]["markdown"]["content"].as_str().unwrap().contains("【超时】住建局"), "{bodies:?}");
    live.node.stop().await;
    assert_eq!(robot.attempts.load(std::sync::atomic::Ordering::SeqCst), 3, "two refusals, then taken");
    assert_eq!(robot.bodies().len(), 1, "once");
}

/// Webhook sends waited in memory after delivery had acknowledged their records: a send not
/// made when the service stopped was made by no instance, ever. They now wait in an outbox in
/// the views until done, and a service that starts again sends what is left, once.
#[tokio::test]
async fn a_webhook_send_not_made_when_the_service_stops_is_made_once_it_starts_again() {
    let robot = webhook::Receiver::start_robot(0).await;
    let alerts = robot_webhook(robot.url());
    let config = || NodeConfig { alerts: alerts.clone(), reports: alerts_only(), ..NodeConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let (log, _server) = open_log(Backend::Embedded, dir.path()).await;
    let views = Views::open(dir.path().join("views")).unwrap();
    let clock = ManualClock::new(at("2026-03-02T10:00:00+08:00"));
    let node = Node::start(log.clone(), views.clone(), Arc::new(clock.clone()), config()).await.unwrap();
    // 21 breaches to one robot, which takes 20 a minute: the 21st waits when the service stops.
    for _ in 0..21 {
        let cmd = Command::new(Uuid::now_v7(), Uuid::now_v7(), township(), raise(Urgency::Normal));
        let done = execute(log.as_ref(), &cmd, clock.now()).await.unwrap();
        node.caught_up_to(done.position).await;
    }
    clock.set(at("2026-03-03T10:00:00+08:00"));
    robot.wait_for(20).await;
    node.stop().await;
    assert_eq!(robot.bodies().len(), 20, "the 21st waited for the robot's minute");

    let node = Node::start(log.clone(), views.clone(), Arc::new(clock.clone()), config()).await.unwrap();
    robot.wait_for(21).await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert_eq!(robot.bodies().len(), 21, "each breach once");
    node.stop().await;
}

/// Delivery wrote each batch's webhook sends to the outbox, and marked each send made, with a
/// flush of the views that the claim loop waited for: the next breach was published only once
/// the disk had taken the last one's sends (a p99 of 120–200 ms in the bench where the subject
/// alone took 3 ms). Outbox writes now happen beside the claim loop, which goes on publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_is_published_while_the_last_ones_webhook_sends_wait_for_the_disk() {
    let receiver = webhook::Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let (log, _server) = open_log(Backend::Embedded, dir.path()).await;
    let views = Views::open(dir.path().join("views")).unwrap();
    let clock = ManualClock::new(at("2026-03-02T10:00:00+08:00"));
    let config = NodeConfig { alerts: webhook(receiver.url()), reports: alerts_only(), ..NodeConfig::default() };
    let node = Node::start(log.clone(), views.clone(), Arc::new(clock.clone()), config).await.unwrap();
    let mut subject = log.watch_alerts("whistle.alert.breach.").await.unwrap();
    // Two whistles half an hour apart: their breaches come one by one.
    let cases = [Uuid::now_v7(), Uuid::now_v7()];
    for (case, raised) in cases.iter().zip(["2026-03-02T10:00:00+08:00", "2026-03-02T10:30:00+08:00"]) {
        clock.set(at(raised));
        let cmd = Command::new(Uuid::now_v7(), *case, township(), raise(Urgency::Normal));
        let done = execute(log.as_ref(), &cmd, clock.now()).await.unwrap();
        node.caught_up_to(done.position).await;
    }
    // The views' disk stops taking delivery writes (held on a thread of its own).
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (holding, held) = std::sync::mpsc::channel::<()>();
    let holder = views.clone();
    let stall = std::thread::spawn(move || {
        let _held = holder.hold_delivery_writes();
        holding.send(()).unwrap();
        let _ = released.recv();
    });
    held.recv().unwrap();
    for (n, (case, due)) in cases.iter().zip(["2026-03-03T10:00:00+08:00", "2026-03-03T10:30:00+08:00"]).enumerate() {
        clock.set(at(due));
        let published = tokio::time::timeout(StdDuration::from_secs(10), subject.next()).await;
        let (_, payload) = published
            .unwrap_or_else(|_| panic!("breach {} is published while the disk holds the sends before it", n + 1))
            .unwrap();
        let notice: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(notice["case_id"], case.to_string());
    }
    release.send(()).unwrap();
    stall.join().unwrap();
    let bodies = receiver.wait_for(2).await;
    let breached: Vec<&str> = bodies.iter().map(|b| b["case_id"].as_str().unwrap()).collect();
    assert_eq!(breached, [cases[0].to_string(), cases[1].to_string()], "then both go to the webhook");
    node.stop().await;
}

/// A normal and an urgent whistle raised Mon 01:30, their 报到 clocks breached Tue 01:30 (outside
/// working hours), both breaches recorded.
async fn night_breaches(backend: Backend) -> (webhook::Receiver, Live, Uuid, Uuid) {
    let receiver = webhook::Receiver::start(0).await;
    let live = live_node(backend, "2026-03-02T01:30:00+08:00", webhook(receiver.url())).await;
    let normal = Uuid::now_v7();
    let urgent = Uuid::now_v7();
    live.run(normal, township(), raise(Urgency::Normal)).await;
    live.run(urgent, township(), raise(Urgency::Urgent)).await;
    let mut stream = live.node.live_alerts();
    live.clock.set(at("2026-03-03T01:30:00+08:00"));
    for _ in 0..2 {
        tokio::time::timeout(StdDuration::from_secs(20), stream.recv()).await.expect("both recorded at once").unwrap();
    }
    (receiver, live, normal, urgent)
}

async fn quiet_hours_hold_non_urgent_alerts_for_the_next_working_morning(backend: Backend) {
    let (receiver, live, normal, urgent) = night_breaches(backend).await;
    let first = receiver.wait_for(1).await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert_eq!(receiver.bodies().len(), 1, "only the urgent whistle's alert goes out at night");
    assert_eq!(first[0]["case_id"], urgent.to_string());
    assert_eq!(live.node.delivery.stats.held.load(std::sync::atomic::Ordering::Relaxed), 1);
    live.clock.set(at("2026-03-03T08:59:59+08:00"));
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(receiver.bodies().len(), 1, "still held before 09:00");
    live.clock.set(at("2026-03-03T09:00:00+08:00"));
    let both = receiver.wait_for(2).await;
    assert_eq!(both[1]["case_id"], normal.to_string());
    live.node.stop().await;
}

/// Regression: escalations went out at once whatever the urgency, so a non-urgent one reached
/// people's groups at 03:50 at night.
async fn a_non_urgent_escalation_waits_for_working_hours_and_an_urgent_one_goes_at_once(backend: Backend) {
    // Escalated Wed 01:30, outside working hours too.
    let (receiver, live, normal, urgent) = night_breaches(backend).await;
    let mut stream = live.node.live_alerts();
    receiver.wait_for(1).await;
    live.clock.set(at("2026-03-04T01:30:00+08:00"));
    for _ in 0..2 {
        let alert =
            tokio::time::timeout(StdDuration::from_secs(20), stream.recv()).await.expect("escalations").unwrap();
        assert_eq!(alert.stage, whistle::domain::event::AlertStage::Escalation);
    }
    // By now: the urgent breach and escalation. The normal breach's release (Tue 09:00) was
    // skipped over by the clock, so it waits for the next working morning with the escalation.
    receiver.wait_for(2).await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    let stages_of = |case: Uuid| -> Vec<String> {
        let mut stages: Vec<String> = receiver
            .bodies()
            .iter()
            .filter(|b| b["case_id"] == case.to_string())
            .map(|b| b["stage"].as_str().unwrap().to_owned())
            .collect();
        stages.sort_unstable();
        stages
    };
    assert_eq!(stages_of(urgent), vec!["breach", "escalation"], "the urgent whistle's go out at night");
    assert!(stages_of(normal).is_empty(), "nothing of the normal whistle goes out at night");
    assert_eq!(
        live.node.delivery.stats.held.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "breach and escalation held"
    );
    live.clock.set(at("2026-03-04T09:00:00+08:00"));
    receiver.wait_for(4).await;
    assert_eq!(stages_of(normal), vec!["breach", "escalation"]);
    live.node.stop().await;
}

async fn an_alert_on_a_holiday_waits_for_the_first_working_morning_after_it(backend: Backend) {
    let receiver = webhook::Receiver::start(0).await;
    // National Day 2026: 10-01..10-07 off; raised 10-01 10:00, due 10-02 10:00 (a holiday).
    let live = live_node(backend, "2026-10-01T10:00:00+08:00", webhook(receiver.url())).await;
    let case = Uuid::now_v7();
    live.run(case, township(), raise(Urgency::Normal)).await;
    let mut stream = live.node.live_alerts();
    live.clock.set(at("2026-10-02T10:00:00+08:00"));
    tokio::time::timeout(StdDuration::from_secs(20), stream.recv()).await.expect("recorded at once").unwrap();
    live.clock.set(at("2026-10-07T18:00:00+08:00"));
    // The escalation (due + 24 h) is recorded on the holiday and held like the breach.
    tokio::time::timeout(StdDuration::from_secs(20), stream.recv()).await.expect("escalation recorded").unwrap();
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert_eq!(receiver.bodies().len(), 0, "breach and escalation are held through the holiday");
    live.clock.set(at("2026-10-08T09:00:00+08:00"));
    let got = receiver.wait_for(2).await;
    let mut stages: Vec<&str> = got.iter().map(|b| b["stage"].as_str().unwrap()).collect();
    stages.sort_unstable();
    assert_eq!(stages, vec!["breach", "escalation"]);
    assert!(got.iter().all(|b| b["case_id"] == case.to_string()));
    live.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_watchdogs_on_one_stream_store_and_deliver_each_breach_once() {
    let server = nats_server::NatsServer::start();
    let receiver = webhook::Receiver::start(1).await;
    let clock = ManualClock::new(at("2026-03-02T10:00:00+08:00"));
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut logs: Vec<Arc<dyn EventLog>> = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(NatsLog::connect(&NatsOptions::new(server.url())).await.unwrap());
        let views = Views::open(dir.path().join("views")).unwrap();
        let config = NodeConfig { alerts: webhook(receiver.url()), reports: alerts_only(), ..NodeConfig::default() };
        nodes.push(Node::start(log.clone(), views, Arc::new(clock.clone()), config).await.unwrap());
        logs.push(log);
        dirs.push(dir);
    }
    let mut subject = logs[0].watch_alerts("whistle.alert.breach.").await.unwrap();
    let cases: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let mut last = 0;
    for (i, case) in cases.iter().enumerate() {
        let cmd = Command::new(Uuid::now_v7(), *case, township(), raise(Urgency::Normal));
        last = execute(logs[i % 2].as_ref(), &cmd, clock.now()).await.unwrap().position;
    }
    for node in &nodes {
        node.caught_up_to(last).await;
    }
    // Both watchdogs wake for the same deadlines.
    clock.set(at("2026-03-03T10:00:00+08:00"));
    let bodies = receiver.wait_for(8).await;
    let mut published = Vec::new();
    while published.len() < 8 {
        let (_, payload) = tokio::time::timeout(StdDuration::from_secs(20), subject.next()).await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        published.push(v["alert_id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    let mut breaches: BTreeMap<Uuid, usize> = BTreeMap::new();
    for case in &cases {
        for record in logs[0].read_case(*case).await.unwrap() {
            for e in record.decode().unwrap().events {
                if matches!(e.body, EventBody::SlaBreached { .. }) {
                    *breaches.entry(*case).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(breaches.len(), 8);
    assert!(breaches.values().all(|n| *n == 1), "one breach per case in the log: {breaches:?}");
    assert_eq!(receiver.bodies().len(), 8, "each delivered once: {bodies:?}");
    published.sort();
    published.dedup();
    assert_eq!(published.len(), 8);
    assert!(
        tokio::time::timeout(StdDuration::from_millis(500), subject.next()).await.is_err(),
        "no second publication"
    );
    // A year published through one instance reaches the live calendar of both.
    let new_year = chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    assert!(nodes[1].progress.calendar.borrow().day(new_year).provisional);
    let schedule = YearSchedule::from_toml(
        "year = 2027\nnotice = \"国务院办公厅关于2027年部分节假日安排的通知\"\n\
         holidays = [{ name = \"元旦\", from = \"2027-01-01\", to = \"2027-01-03\" }]\nworkdays = []",
    )
    .unwrap();
    let publish = Command::new(
        Uuid::now_v7(),
        whistle::domain::event::CALENDAR_CASE_ID,
        Actor::new(Role::Admin, "市政府办"),
        CommandBody::PublishCalendar { schedule },
    );
    let position = execute(logs[0].as_ref(), &publish, clock.now()).await.unwrap().position;
    for node in &nodes {
        node.caught_up_to(position).await;
        let day = node.progress.calendar.borrow().day(new_year);
        assert!(!day.working && !day.provisional, "元旦 2027 is a published holiday on every instance");
    }
    for node in nodes {
        node.stop().await;
    }
}

// ----------------------------------------------------------------------------- the ladder

/// Two districts, three levels: each district's 督查室 (level 1), the east district's 区委 and
/// the city's 督查室 (level 2), the city's 市委 (level 3).
const LADDER_ORG: &str = r#"
townships = ["东坝镇", "西湖街道"]
departments = ["住建局"]
office = "市减负办"
coordinator = "市委编办"

[[districts]]
name = "东区"
townships = ["东坝镇"]

[[districts]]
name = "西区"
townships = ["西湖街道"]

[[supervisors]]
unit = "东区督查室"
level = 1
district = "东区"

[[supervisors]]
unit = "西区督查室"
level = 1
district = "西区"

[[supervisors]]
unit = "东区委"
level = 2
district = "东区"

[[supervisors]]
unit = "市委督查室"
level = 2

[[supervisors]]
unit = "市委"
level = 3
"#;

/// (stage, level, case) of each alert a receiver got, in order.
fn ladder_calls(receiver: &webhook::Receiver) -> Vec<(String, u64, String)> {
    receiver
        .bodies()
        .iter()
        .map(|b| {
            (
                b["stage"].as_str().unwrap().to_owned(),
                b["level"].as_u64().unwrap(),
                b["case_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Escalation levels recorded in the log for a case's 报到 clock, in order, and its breaches.
async fn recorded_ladder(log: &dyn EventLog, case: Uuid) -> (usize, Vec<u8>) {
    let (mut breaches, mut levels) = (0, Vec::new());
    for record in log.read_case(case).await.unwrap() {
        for e in record.decode().unwrap().events {
            match e.body {
                EventBody::SlaBreached { .. } => breaches += 1,
                EventBody::SlaEscalated { level, .. } => levels.push(level),
                _ => {}
            }
        }
    }
    (breaches, levels)
}

/// The escalation ladder on a manual clock, with `instances` services on one log: a breach
/// reaches the level-1 supervisors above the case's township, each escalation the next level's
/// above it, each once and as its own event; the ladder stops when the clock stops.
async fn the_ladder_climbs_each_level_above_the_township_once(backend: Backend, instances: usize) {
    let org = whistle::api::auth::Org::from_toml(LADDER_ORG).unwrap();
    assert_eq!(org.top_level(), 3);
    let units = ["东区督查室", "西区督查室", "东区委", "市委督查室", "市委"];
    let mut receivers = BTreeMap::new();
    let mut webhooks = Vec::new();
    for unit in units {
        let receiver = webhook::Receiver::start(0).await;
        webhooks.push(WebhookConfig {
            name: unit.into(),
            url: receiver.url(),
            format: WebhookFormat::Generic,
            stages: vec!["breach".into(), "escalation".into()],
            units: vec![unit.into()],
            attempts: None,
        });
        receivers.insert(unit, receiver);
    }
    let config = NodeConfig {
        policy: SlaPolicy::default().with_top_level(org.top_level()),
        alerts: AlertConfig { webhooks, ..AlertConfig::default() },
        reports: alerts_only(),
        units: whistle::alerts::NoticeUnits { supervision: org.supervision(), ..Default::default() },
        ..NodeConfig::default()
    };
    let clock = ManualClock::new(at("2026-03-02T10:00:00+08:00"));
    let dir = tempfile::tempdir().unwrap();
    let (first_log, server) = open_log(backend, dir.path()).await;
    let mut logs = vec![first_log];
    while logs.len() < instances {
        let url = server.as_ref().expect("several instances share a NATS server").url();
        logs.push(Arc::new(NatsLog::connect(&NatsOptions::new(url)).await.unwrap()));
    }
    let mut nodes = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let views = Views::open(dir.path().join(format!("views-{i}"))).unwrap();
        nodes.push(Node::start(log.clone(), views, Arc::new(clock.clone()), config.clone()).await.unwrap());
    }
    let west = Actor::new(Role::Township, "西湖街道");
    let (east_a, west_b, east_c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut last = 0;
    for (i, (case, who)) in [(east_a, township()), (west_b, west), (east_c, township())].into_iter().enumerate() {
        let cmd = Command::new(Uuid::now_v7(), case, who, raise(Urgency::Normal));
        last = execute(logs[i % logs.len()].as_ref(), &cmd, clock.now()).await.unwrap().position;
    }
    for node in &nodes {
        node.caught_up_to(last).await;
    }
    // Tue 10:00: the breaches, to each district's own 督查室.
    clock.set(at("2026-03-03T10:00:00+08:00"));
    receivers["东区督查室"].wait_for(2).await;
    receivers["西区督查室"].wait_for(1).await;
    // Wed 10:00: level 2 — the east district's 区委 for its cases, the city's 督查室 for all.
    clock.set(at("2026-03-04T10:00:00+08:00"));
    receivers["东区委"].wait_for(2).await;
    receivers["市委督查室"].wait_for(3).await;
    // C's department reports in: its ladder stops at level 2.
    let ack =
        Command::new(Uuid::now_v7(), east_c, Actor::new(Role::Department, HOUSING), CommandBody::AcknowledgeSummons);
    let acked = execute(logs[0].as_ref(), &ack, clock.now()).await.unwrap().position;
    for node in &nodes {
        node.caught_up_to(acked).await;
    }
    // Thu 10:00: level 3, the city's 市委, for A and B.
    clock.set(at("2026-03-05T10:00:00+08:00"));
    receivers["市委"].wait_for(2).await;
    // A week on: nothing more.
    clock.set(at("2026-03-12T10:00:00+08:00"));
    tokio::time::sleep(StdDuration::from_secs(1)).await;
    let (a, b, c) = (east_a.to_string(), west_b.to_string(), east_c.to_string());
    let sorted = |unit: &str| {
        let mut calls = ladder_calls(&receivers[unit]);
        calls.sort();
        calls
    };
    let mut east_breaches = vec![("breach".to_owned(), 1, a.clone()), ("breach".to_owned(), 1, c.clone())];
    east_breaches.sort();
    assert_eq!(sorted("东区督查室"), east_breaches, "level 1 of the east district: its two breaches, once each");
    assert_eq!(sorted("西区督查室"), vec![("breach".to_owned(), 1, b.clone())], "level 1 of the west district");
    let mut east_two = vec![("escalation".to_owned(), 2, a.clone()), ("escalation".to_owned(), 2, c.clone())];
    east_two.sort();
    assert_eq!(sorted("东区委"), east_two, "level 2 of the east district: never the west's case");
    let mut city_two: Vec<_> = [&a, &b, &c].iter().map(|id| ("escalation".to_owned(), 2, (*id).clone())).collect();
    city_two.sort();
    assert_eq!(sorted("市委督查室"), city_two, "level 2 of the city: every case");
    let mut city_three = vec![("escalation".to_owned(), 3, a.clone()), ("escalation".to_owned(), 3, b.clone())];
    city_three.sort();
    assert_eq!(sorted("市委"), city_three, "level 3: the cases still overdue, not C");
    assert_eq!(recorded_ladder(logs[0].as_ref(), east_a).await, (1, vec![2, 3]), "each step its own event, once");
    assert_eq!(recorded_ladder(logs[0].as_ref(), west_b).await, (1, vec![2, 3]));
    assert_eq!(recorded_ladder(logs[0].as_ref(), east_c).await, (1, vec![2]), "the ladder stops with the clock");
    for node in nodes {
        node.stop().await;
    }
}

async fn the_ladder_climbs_each_level_above_the_township_once_on_one_instance(backend: Backend) {
    the_ladder_climbs_each_level_above_the_township_once(backend, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ladder_climbs_each_level_above_the_township_once_with_two_instances_on_nats() {
    the_ladder_climbs_each_level_above_the_township_once(Backend::Nats, 2).await;
}

// ----------------------------------------------------------------------------- both back ends

on_both!(
    warning_breach_and_escalation_fire_exactly_at_their_times,
    a_late_warning_becomes_the_breach_and_a_stopped_clock_says_nothing,
    an_approved_extension_moves_the_breach,
    reopened_feedback_breaches_on_its_new_resolve_deadline,
    publishing_a_year_recomputes_provisional_deadlines,
    publishing_a_year_moves_a_deadline_whose_alerts_have_all_fired,
    the_running_watchdog_wakes_for_the_deadline_and_every_channel_hears_once,
    a_failing_webhook_receives_each_alert_exactly_once_after_retries,
    a_failing_webhook_does_not_hold_up_the_others,
    the_ladder_climbs_each_level_above_the_township_once_on_one_instance,
    quiet_hours_hold_non_urgent_alerts_for_the_next_working_morning,
    an_alert_on_a_holiday_waits_for_the_first_working_morning_after_it,
    a_non_urgent_escalation_waits_for_working_hours_and_an_urgent_one_goes_at_once,
);
