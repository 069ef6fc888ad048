//! Notices to the units that owe a clock or raised a case, on both back ends, with a webhook
//! receiver per unit on 127.0.0.1, a manual clock and working hours (09:00–18:00 Beijing): the
//! summons reaches exactly the summoned departments, quiet hours hold it and drop it once
//! answered, a deadline at night gets a reminder in the working hours before it, urgent ones go
//! at once, the township hears back, and every notice is on `whistle.notice.<kind>.<unit>`.

#[path = "support/backends.rs"]
#[macro_use]
mod backends;
#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/small_disk.rs"]
mod small_disk;
#[path = "support/webhook.rs"]
mod webhook;

use backends::{open_log, Backend};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use uuid::Uuid;
use whistle::alerts::{AlertConfig, WebhookConfig, WebhookFormat};
use whistle::clock::{Clock, ManualClock};
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::event::{Actor, Role, Urgency};
use whistle::execute::execute;
use whistle::log::nats::NatsOptions;
use whistle::log::EventLog;
use whistle::projector::views::Views;
use whistle::service::{LogHandle, Node, NodeConfig};

const UNITS: [&str; 4] = ["住建局", "城管局", "交通局", "东坝镇"];

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// A node with these webhooks (no monthly report), once its delivery claims from the log:
/// records stored after that are delivered.
async fn start_node(log: &Arc<dyn EventLog>, views: Views, clock: &ManualClock, webhooks: Vec<WebhookConfig>) -> Node {
    let config = NodeConfig {
        alerts: AlertConfig { webhooks, ..AlertConfig::default() },
        reports: whistle::reports::ReportSchedule { monthly: false, ..Default::default() },
        ..NodeConfig::default()
    };
    let node = Node::start(log.clone(), views, Arc::new(clock.clone()), config).await.unwrap();
    tokio::time::timeout(StdDuration::from_secs(20), node.delivery.claiming()).await.expect("delivery claims");
    node
}

/// One service with one webhook (and one receiver) per unit.
struct Rig {
    _server: Option<nats_server::NatsServer>,
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    node: Node,
    clock: ManualClock,
    receivers: BTreeMap<&'static str, webhook::Receiver>,
}

impl Rig {
    async fn start(backend: Backend, start: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (log, server) = open_log(backend, dir.path()).await;
        let mut receivers = BTreeMap::new();
        let mut webhooks = Vec::new();
        for unit in UNITS {
            let receiver = webhook::Receiver::start(0).await;
            let stages = if unit == "东坝镇" {
                vec!["reported_in", "declined", "handled", "progress"]
            } else {
                vec!["summons", "reminder"]
            };
            webhooks.push(WebhookConfig {
                name: format!("{unit}群"),
                url: receiver.url(),
                format: WebhookFormat::Wecom,
                stages: stages.into_iter().map(str::to_owned).collect(),
                units: vec![unit.to_owned()],
                attempts: None,
            });
            receivers.insert(unit, receiver);
        }
        let views = Views::open(dir.path().join("views")).unwrap();
        let clock = ManualClock::new(at(start));
        let node = start_node(&log, views, &clock, webhooks).await;
        Rig { _server: server, _dir: dir, log, node, clock, receivers }
    }

    async fn run(&self, case_id: Uuid, role: Role, unit: &str, body: CommandBody) {
        let cmd = Command::new(Uuid::now_v7(), case_id, Actor::new(role, unit), body);
        let done = execute(self.log.as_ref(), &cmd, self.clock.now()).await.expect("command accepted");
        self.node.caught_up_to(done.position).await;
    }

    async fn raise(&self, urgency: Urgency, departments: &[&str]) -> Uuid {
        let case = Uuid::now_v7();
        let body = CommandBody::RaiseWhistle {
            title: "河道垃圾堆积".into(),
            description: "村口河道需多部门协调".into(),
            departments: departments.iter().map(|d| (*d).to_owned()).collect(),
            category: None,
            location: None,
            urgency,
        };
        self.run(case, Role::Township, "东坝镇", body).await;
        case
    }

    /// The markdown texts a unit's group has received.
    fn texts(&self, unit: &str) -> Vec<String> {
        self.receivers[unit]
            .bodies()
            .iter()
            .map(|b: &Value| b["markdown"]["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until `unit`'s group has `n` messages, then a little longer to see no more come.
    async fn expect(&self, unit: &str, n: usize) -> Vec<String> {
        if n > 0 {
            self.receivers[unit].wait_for(n).await;
        }
        tokio::time::sleep(StdDuration::from_millis(400)).await;
        let texts = self.texts(unit);
        assert_eq!(texts.len(), n, "{unit}: {texts:?}");
        texts
    }

    /// Moves the clock and gives delivery a moment.
    async fn set(&self, when: &str) {
        self.clock.set(at(when));
        tokio::time::sleep(StdDuration::from_millis(300)).await;
    }
}

async fn a_summons_reaches_exactly_the_summoned_departments_and_the_township_hears_back(backend: Backend) {
    let rig = Rig::start(backend, "2026-03-02T10:00:00+08:00").await;
    let mut subject = rig.log.watch_alerts("whistle.notice.").await.unwrap();
    let started = std::time::Instant::now();
    let case = rig.raise(Urgency::Normal, &["住建局", "城管局"]).await;
    let housing = rig.expect("住建局", 1).await;
    assert!(started.elapsed() < StdDuration::from_secs(2), "at once");
    assert!(
        housing[0].contains("【召集报到】东坝镇吹哨「河道垃圾堆积」，请住建局于 2026-03-03 10:00 前报到"),
        "{housing:?}"
    );
    rig.expect("城管局", 1).await;
    rig.expect("交通局", 0).await;
    // A foreign client sees the summons on its subject.
    let (name, payload) = tokio::time::timeout(StdDuration::from_secs(10), subject.next()).await.unwrap().unwrap();
    assert!(name.starts_with("whistle.notice.summons."), "{name}");
    let notice: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(notice["stage"], "summons");
    assert_eq!(notice["case_id"], case.to_string());

    rig.run(case, Role::Department, "住建局", CommandBody::AcknowledgeSummons).await;
    rig.run(case, Role::Department, "城管局", CommandBody::DeclineSummons { reason: "不属于本部门职责".into() }).await;
    rig.run(case, Role::Department, "住建局", CommandBody::ReportHandled { summary: "已清理".into() }).await;
    let township = rig.expect("东坝镇", 3).await;
    assert!(township.iter().any(|t| t.contains("【已报到】住建局 已报到")), "{township:?}");
    assert!(township.iter().any(|t| t.contains("【退回】城管局")), "{township:?}");
    assert!(township.iter().any(|t| t.contains("【已办结】住建局 报告「河道垃圾堆积」已办结：已清理")), "{township:?}");
    // Nothing more to the departments: each notice once.
    rig.expect("住建局", 1).await;
    rig.expect("城管局", 1).await;
    rig.node.stop().await;
}

async fn quiet_hours_hold_a_summons_and_drop_it_once_answered(backend: Backend) {
    // Friday 20:00: after hours.
    let rig = Rig::start(backend, "2026-03-06T20:00:00+08:00").await;
    let case = rig.raise(Urgency::Normal, &["住建局", "城管局"]).await;
    rig.expect("住建局", 0).await;
    rig.expect("城管局", 0).await;
    // 住建局 reports in on Saturday without having been told.
    rig.set("2026-03-07T10:00:00+08:00").await;
    rig.run(case, Role::Department, "住建局", CommandBody::AcknowledgeSummons).await;
    rig.set("2026-03-09T09:00:00+08:00").await;
    let urban = rig.expect("城管局", 1).await;
    assert!(urban[0].contains("请城管局于 2026-03-07 20:00 前报到"), "{urban:?}");
    rig.expect("住建局", 0).await;
    rig.node.stop().await;
}

async fn a_deadline_at_night_gets_a_reminder_in_the_working_hours_before_it(backend: Backend) {
    // Monday 02:00: the 报到 deadline is Tuesday 02:00.
    let rig = Rig::start(backend, "2026-03-02T02:00:00+08:00").await;
    rig.raise(Urgency::Normal, &["住建局"]).await;
    rig.expect("住建局", 0).await;
    rig.set("2026-03-02T09:00:00+08:00").await;
    rig.expect("住建局", 1).await;
    rig.set("2026-03-02T15:59:00+08:00").await;
    rig.expect("住建局", 1).await;
    rig.set("2026-03-02T16:00:00+08:00").await;
    let texts = rig.expect("住建局", 2).await;
    assert!(texts[1].contains("【催办】住建局 的「报到」将于 2026-03-03 02:00 到期"), "{texts:?}");
    // The warning (Monday 20:00) is held for the morning, which comes after the deadline:
    // nobody is woken, and nothing stale is sent.
    for when in ["2026-03-02T20:00:00+08:00", "2026-03-03T01:00:00+08:00", "2026-03-03T09:30:00+08:00"] {
        rig.set(when).await;
        rig.expect("住建局", 2).await;
    }
    rig.node.stop().await;
}

async fn an_urgent_summons_goes_at_once_at_night(backend: Backend) {
    let rig = Rig::start(backend, "2026-03-06T23:00:00+08:00").await;
    rig.raise(Urgency::Urgent, &["交通局"]).await;
    let texts = rig.expect("交通局", 1).await;
    assert!(texts[0].starts_with("**【紧急】【召集报到】"), "{texts:?}");
    rig.node.stop().await;
}

/// Regression: a comment's `@住建局` reached no one (the notice path did not know comments). And
/// a township whose whistle is linked to another as a duplicate hears the original's progress.
async fn a_mention_reaches_the_unit_and_a_duplicates_township_hears_the_original(backend: Backend) {
    let rig = Rig::start(backend, "2026-03-02T10:00:00+08:00").await;
    let mut subject = rig.log.watch_alerts("whistle.notice.").await.unwrap();
    let original = rig.raise(Urgency::Normal, &["住建局"]).await;
    let duplicate = Uuid::now_v7();
    let again = CommandBody::RaiseWhistle {
        title: "河道垃圾堆积".into(),
        description: "同一条河".into(),
        departments: vec!["住建局".into()],
        category: None,
        location: None,
        urgency: Urgency::Normal,
    };
    rig.run(duplicate, Role::Township, "西湖街道", again).await;
    rig.run(duplicate, Role::Township, "西湖街道", CommandBody::MarkDuplicate { original }).await;
    let mention =
        CommandBody::AddComment { body: "@住建局 上游也要清理".into(), mentions: vec!["住建局".into()] };
    rig.run(original, Role::Township, "东坝镇", mention).await;
    rig.run(original, Role::Department, "住建局", CommandBody::AcknowledgeSummons).await;
    let mut seen: Vec<(String, String)> = Vec::new();
    let wanted =
        ["whistle.notice.mention.住建局", "whistle.notice.reported_in.东坝镇", "whistle.notice.reported_in.西湖街道"];
    while !wanted.iter().all(|w| seen.iter().any(|(name, _)| name == w)) {
        let next = tokio::time::timeout(StdDuration::from_secs(10), subject.next()).await;
        let (name, payload) = next.unwrap_or_else(|_| panic!("waiting for {wanted:?}, saw {seen:?}")).unwrap();
        let notice: Value = serde_json::from_slice(&payload).unwrap();
        seen.push((name, notice["text"].as_str().unwrap_or_default().to_owned()));
    }
    let text = |name: &str| seen.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).unwrap();
    assert!(text("whistle.notice.mention.住建局")
        .contains("【提及】东坝镇在「河道垃圾堆积」中提到您：@住建局 上游也要清理"));
    assert!(text("whistle.notice.reported_in.西湖街道").contains("【已报到】住建局 已报到"));
    rig.node.stop().await;
}

on_both!(
    a_mention_reaches_the_unit_and_a_duplicates_township_hears_the_original,
    a_summons_reaches_exactly_the_summoned_departments_and_the_township_hears_back,
    quiet_hours_hold_a_summons_and_drop_it_once_answered,
    a_deadline_at_night_gets_a_reminder_in_the_working_hours_before_it,
    an_urgent_summons_goes_at_once_at_night,
);

/// Two instances on one NATS stream: every summons reaches each summoned department's group
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_nats_send_each_notice_once() {
    let server = nats_server::NatsServer::start();
    let clock = ManualClock::new(at("2026-03-02T10:00:00+08:00"));
    let housing = webhook::Receiver::start(0).await;
    let webhooks = vec![WebhookConfig {
        name: "住建局群".into(),
        url: housing.url(),
        format: WebhookFormat::Generic,
        stages: vec!["summons".into()],
        units: vec!["住建局".into()],
        attempts: None,
    }];
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut logs: Vec<Arc<dyn EventLog>> = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let log = LogHandle::open(dir.path(), Some(&NatsOptions::new(server.url()))).await.unwrap().log();
        let views = Views::open(dir.path().join("views")).unwrap();
        let node = start_node(&log, views, &clock, webhooks.clone()).await;
        nodes.push(node);
        logs.push(log);
        dirs.push(dir);
    }
    let mut cases = Vec::new();
    for i in 0..6 {
        let case = Uuid::now_v7();
        let body = CommandBody::RaiseWhistle {
            title: format!("事项 {i}"),
            description: "需协调".into(),
            departments: vec!["住建局".into()],
            category: None,
            location: None,
            urgency: Urgency::Normal,
        };
        let cmd = Command::new(Uuid::now_v7(), case, Actor::new(Role::Township, "东坝镇"), body);
        execute(logs[i % 2].as_ref(), &cmd, clock.now()).await.unwrap();
        cases.push(case.to_string());
    }
    let bodies = housing.wait_for(6).await;
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    let mut seen: Vec<String> =
        housing.bodies().iter().map(|b| b["case_id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(seen.len(), 6, "each summons once: {bodies:?}");
    seen.sort();
    cases.sort();
    assert_eq!(seen, cases);
    for node in nodes {
        node.stop().await;
    }
}

/// A group whose webhook keeps failing: after its retries, operators hear of it on their own
/// channel, and the failure is counted by kind and channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_group_raises_an_operator_notice_is_counted_and_does_not_hold_up_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogHandle::open(dir.path(), None).await.unwrap().log();
    let broken = webhook::Receiver::start(usize::MAX).await;
    let operators = webhook::Receiver::start(0).await;
    let webhooks = vec![
        WebhookConfig {
            name: "住建局群".into(),
            url: broken.url(),
            format: WebhookFormat::Generic,
            stages: vec!["summons".into()],
            units: vec!["住建局".into()],
            attempts: Some(2),
        },
        WebhookConfig {
            name: "运维".into(),
            url: operators.url(),
            format: WebhookFormat::Generic,
            stages: vec!["operator".into()],
            units: vec![],
            attempts: None,
        },
    ];
    let clock = ManualClock::new(at("2026-03-02T10:00:00+08:00"));
    let node = start_node(&log, Views::open(dir.path().join("views")).unwrap(), &clock, webhooks).await;
    let body = CommandBody::RaiseWhistle {
        title: "河道垃圾堆积".into(),
        description: "需协调".into(),
        departments: vec!["住建局".into()],
        category: None,
        location: None,
        urgency: Urgency::Normal,
    };
    let cmd = Command::new(Uuid::now_v7(), Uuid::now_v7(), Actor::new(Role::Township, "东坝镇"), body);
    execute(log.as_ref(), &cmd, clock.now()).await.unwrap();
    let told = operators.wait_for(1).await;
    assert!(
        told[0]["text"].as_str().unwrap().contains("webhook「住建局群」多次重试后仍未送达一条「summons」消息"),
        "{told:?}"
    );
    assert_eq!(broken.attempts.load(std::sync::atomic::Ordering::Relaxed), 2);
    let counts = node.delivery.stats.by_kind();
    let count = |kind: &str, channel: &str, outcome: &str| {
        counts.iter().find(|((k, c, o), _)| k == kind && c == channel && *o == outcome).map_or(0, |(_, n)| *n)
    };
    assert_eq!(count("summons", "住建局群", "failed"), 1, "{counts:?}");
    assert_eq!(count("summons", "subject", "sent"), 1, "{counts:?}");
    // Stops promptly: the send loop's way back into its queue does not keep it open.
    let stopping = std::time::Instant::now();
    node.stop().await;
    assert!(stopping.elapsed() < StdDuration::from_secs(5), "stop took {:?}", stopping.elapsed());
}

/// Summonses held for working hours while the views' disk was full were lost: the outbox could
/// not store them, the record was acknowledged, and the departments never heard of it. They are
/// now kept in memory, offered to the outbox again, and sent in the working morning all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summonses_held_while_the_outbox_cannot_be_written_still_go_out_in_the_morning() {
    const DEPARTMENTS: [&str; 12] = [
        "住建局",
        "城管局",
        "交通局",
        "水务局",
        "生态环境局",
        "农业农村局",
        "卫健委",
        "教育局",
        "民政局",
        "公安局",
        "消防救援大队",
        "供电所",
    ];
    let Some(disk) = small_disk::SmallDisk::mount(16) else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = LogHandle::open(dir.path(), None).await.unwrap().log();
    let groups = webhook::Receiver::start(0).await;
    let webhooks = vec![WebhookConfig {
        name: "部门群".into(),
        url: groups.url(),
        format: WebhookFormat::Wecom,
        stages: vec!["summons".into()],
        units: DEPARTMENTS.iter().map(|d| (*d).to_owned()).collect(),
        attempts: None,
    }];
    // Friday 20:00: after hours, so each summons is held for Monday morning.
    let clock = ManualClock::new(at("2026-03-06T20:00:00+08:00"));
    // The log has room; the views (and their outbox) are on a disk about to be full.
    let views = Views::open(disk.mount.join("views")).unwrap();
    let node = start_node(&log, views.clone(), &clock, webhooks).await;
    disk.fill();
    // sled lays out a whole segment at a time: write until it needs a new one, which the full
    // disk refuses.
    let filler = vec![0x5Au8; 8 * 1024];
    let refused = (0..1_000).any(|n| views.delivery_put(format!("filler:{n}").as_bytes(), &filler).is_err());
    assert!(refused, "a full disk refuses the outbox's writes");
    let body = CommandBody::RaiseWhistle {
        title: "河道垃圾堆积".into(),
        description: "村口河道垃圾堆积，涉及住建、城管、水务、环保等多个部门，需要统一协调处置。".repeat(8),
        departments: DEPARTMENTS.iter().map(|d| (*d).to_owned()).collect(),
        category: None,
        location: None,
        urgency: Urgency::Normal,
    };
    let cmd = Command::new(Uuid::now_v7(), Uuid::now_v7(), Actor::new(Role::Township, "东坝镇"), body);
    execute(log.as_ref(), &cmd, clock.now()).await.unwrap();
    // Delivery decides the summonses (reading the case from the log while the views cannot be
    // written) and holds them.
    let held = || node.delivery.stats.held.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(40);
    while held() < DEPARTMENTS.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 12 summonses held: {:?}",
            held(),
            node.delivery.stats.by_kind()
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(groups.bodies().is_empty(), "nothing at night: {:?}", groups.bodies());
    // Room again over the weekend; Monday 09:00 every summons goes, once.
    disk.free();
    clock.set(at("2026-03-09T09:00:00+08:00"));
    tokio::time::timeout(StdDuration::from_secs(30), groups.wait_for(DEPARTMENTS.len())).await.expect("sent");
    tokio::time::sleep(StdDuration::from_millis(400)).await;
    let texts: Vec<String> =
        groups.bodies().iter().map(|b| b["markdown"]["content"].as_str().unwrap_or_default().to_owned()).collect();
    for department in DEPARTMENTS {
        let to = format!("请{department}于");
        assert_eq!(texts.iter().filter(|t| t.contains(&to)).count(), 1, "{department}: {texts:?}");
    }
    assert_eq!(texts.len(), DEPARTMENTS.len(), "{texts:?}");
    node.stop().await;
}

/// Who each event tells, from the case as it stands after it.
#[test]
fn each_event_tells_the_unit_that_must_act_or_raised_the_case() {
    use whistle::domain::{decide, evolve, Calendar, SlaPolicy, State};
    use whistle::projector::model::CaseView;
    let mut state = State::Empty;
    let mut now = at("2026-03-02T10:00:00+08:00");
    let mut told: Vec<(String, String)> = Vec::new();
    let case = Uuid::from_u128(9);
    let mut step = |actor: Actor, body: CommandBody, told: &mut Vec<(String, String)>| {
        let cmd = Command::new(Uuid::now_v7(), case, actor, body);
        for event in decide(&state, &cmd, now).expect("accepted") {
            state = evolve(std::mem::take(&mut state), &event);
            let mut view = CaseView::new(case);
            view.state = state.clone();
            view.rearm(&SlaPolicy::default(), &Calendar::official());
            for n in whistle::alerts::AlertNotice::for_units(&event, &view, 1, "市减负办", "市委编办") {
                told.push((n.stage.clone(), n.unit.clone()));
            }
        }
        now += chrono::Duration::minutes(5);
    };
    let department = |d: &str| Actor::new(Role::Department, d);
    let raise = CommandBody::RaiseWhistle {
        title: "河道垃圾堆积".into(),
        description: "需协调".into(),
        departments: vec!["住建局".into(), "城管局".into()],
        category: None,
        location: None,
        urgency: Urgency::Normal,
    };
    step(Actor::new(Role::Township, "东坝镇"), raise, &mut told);
    step(department("城管局"), CommandBody::DeclineSummons { reason: "非本部门".into() }, &mut told);
    step(
        Actor::new(Role::Coordinator, "市委编办"),
        CommandBody::AssignDepartments { departments: vec!["交通局".into()] },
        &mut told,
    );
    step(department("住建局"), CommandBody::AcknowledgeSummons, &mut told);
    step(
        department("住建局"),
        CommandBody::RequestExtension {
            clock: whistle::domain::event::ClockRef::for_department(
                whistle::domain::event::ClockKind::WhistleResolve,
                "住建局",
            ),
            span: whistle::domain::event::ExtensionSpan::Hours(24),
            reason: "需现场勘查".into(),
        },
        &mut told,
    );
    step(Actor::new(Role::Supervisor, "区委督查室"), CommandBody::ApproveExtension { number: 1 }, &mut told);
    step(department("住建局"), CommandBody::NoteProgress { note: "已清理一半".into() }, &mut told);
    step(department("住建局"), CommandBody::ReportHandled { summary: "已清理".into() }, &mut told);
    let pairs: Vec<(&str, &str)> = told.iter().map(|(k, u)| (k.as_str(), u.as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("summons", "住建局"),
            ("summons", "城管局"),
            ("declined", "东坝镇"),
            ("dispute", "市委编办"),
            ("summons", "交通局"),
            ("reported_in", "东坝镇"),
            ("extension", "supervisors"),
            ("extension_decided", "住建局"),
            ("progress", "东坝镇"),
            ("handled", "东坝镇"),
        ]
    );
}

/// Feedback: the office is told of it; a named submitter hears the reply, an anonymous one is
/// never named in a notice (they read the follow-up page).
#[test]
fn feedback_tells_the_office_and_only_a_named_submitter() {
    use whistle::domain::{decide, evolve, Calendar, SlaPolicy, State};
    use whistle::projector::model::CaseView;
    for anonymous in [false, true] {
        let case = Uuid::from_u128(10);
        let mut state = State::Empty;
        let mut told = Vec::new();
        let bodies = [
            (
                Actor::new(Role::Township, "东坝镇"),
                CommandBody::SubmitFeedback {
                    topic: whistle::domain::event::FeedbackTopic::ExcessivePaperwork,
                    body: "材料太多".into(),
                    anonymous,
                },
            ),
            (Actor::new(Role::Office, "市减负办"), CommandBody::ReplyFeedback { body: "已收到".into() }),
            (Actor::new(Role::Office, "市减负办"), CommandBody::ResolveFeedback { summary: "已整改".into() }),
        ];
        for (actor, body) in bodies {
            let cmd = Command::new(Uuid::now_v7(), case, actor, body).with_follow_up_code("k7Qm-2xPz-9RtW-4vLc");
            for event in decide(&state, &cmd, at("2026-03-02T10:00:00+08:00")).expect("accepted") {
                state = evolve(std::mem::take(&mut state), &event);
                let mut view = CaseView::new(case);
                view.state = state.clone();
                view.rearm(&SlaPolicy::default(), &Calendar::official());
                told.extend(whistle::alerts::AlertNotice::for_units(&event, &view, 1, "市减负办", "市委编办"));
            }
        }
        let pairs: Vec<(String, String)> = told.iter().map(|n| (n.stage.clone(), n.unit.clone())).collect();
        let mut expected = vec![("feedback".to_owned(), "市减负办".to_owned())];
        if !anonymous {
            expected.push(("reply".into(), "东坝镇".into()));
            expected.push(("resolved".into(), "东坝镇".into()));
        }
        assert_eq!(pairs, expected, "anonymous: {anonymous}");
        if anonymous {
            let json = serde_json::to_string(&told).unwrap();
            assert!(!json.contains("东坝镇"), "an anonymous submitter is never named: {json}");
        }
    }
}
