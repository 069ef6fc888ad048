//! Folding the log into fresh views (a rebuild, a first start over a long log) gives exactly
//! the views that projecting record by record gives: key for key, by digest, on both back
//! ends, over traffic that exercises every kind of view — cases, lists, the deadline index,
//! statistics, alerts raised and acknowledged, a calendar correction that moves open
//! deadlines, a duplicate, an attachment and a dead letter.

#[path = "support/backends.rs"]
#[macro_use]
mod backends;
#[path = "support/nats_server.rs"]
mod nats_server;

use backends::Backend;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::event::{Actor, AlertStage, Role, CALENDAR_CASE_ID};
use whistle::domain::{Calendar, SlaPolicy, YearSchedule};
use whistle::execute::execute;
use whistle::log::EventLog;
use whistle::projector::keys::unit_list_prefix;
use whistle::projector::views::Views;
use whistle::projector::{Projector, FOLD_RECORDS_MIN};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Runs a command; refusals are allowed (the traffic decides what is still possible) and
/// counted by the caller from the answer.
async fn run(log: &dyn EventLog, case_id: Uuid, actor: Actor, body: CommandBody, now: DateTime<Utc>) -> bool {
    let cmd = Command::new(Uuid::now_v7(), case_id, actor, body);
    execute(log, &cmd, now).await.is_ok()
}

async fn catch_up(projector: &mut Projector, log: &dyn EventLog) {
    projector.catch_up(log, false, |_, _| {}).await.unwrap();
}

async fn a_fold_equals_projecting_record_by_record(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (embedded, server) = match backend {
        Backend::Embedded => (Some(whistle::log::embedded::EmbeddedLog::open(dir.path().join("log")).unwrap()), None),
        Backend::Nats => (None, Some(nats_server::NatsServer::start())),
    };
    let nats_log = match &server {
        Some(server) => Some(
            whistle::log::nats::NatsLog::connect(&whistle::log::nats::NatsOptions::new(server.url())).await.unwrap(),
        ),
        None => None,
    };
    let log: &dyn EventLog = match (&embedded, &nats_log) {
        (Some(log), _) => log,
        (_, Some(log)) => log,
        _ => unreachable!(),
    };
    let views = Views::open(dir.path().join("views")).unwrap();
    let mut projector = Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();

    // Fewer records than a fold takes: projected record by record from here on.
    let start = at("2026-03-02T08:00:00+08:00");
    whistle::sim::fill(log, 11, 8, 500, start).await.unwrap();
    assert!(log.head().await.unwrap() < FOLD_RECORDS_MIN);
    catch_up(&mut projector, log).await;
    let folds_before = views.compactions();

    // Alerts: the first pending deadlines recorded as the watchdog would, two acknowledged.
    let now = at("2026-06-01T10:00:00+08:00");
    let mut recorded = 0;
    for entry in views.due_alerts(now, 40).unwrap() {
        let body = match entry.stage {
            AlertStage::Warning => CommandBody::RecordSlaWarning {
                clock: entry.clock.clone(),
                due_at: entry.due_at,
                warn_at: entry.fire_at,
            },
            AlertStage::Breach => CommandBody::RecordSlaBreach { clock: entry.clock.clone(), due_at: entry.due_at },
            AlertStage::Escalation => continue,
        };
        recorded += usize::from(run(log, entry.case_id, Actor::system(), body, entry.fire_at).await);
    }
    catch_up(&mut projector, log).await;
    assert!(recorded >= 5, "only {recorded} alerts recorded: the traffic exercises too little");
    let supervisor = Actor::new(Role::Supervisor, "督查室");
    for alert in views.alerts(true, 2).unwrap() {
        let body = CommandBody::AcknowledgeAlert { alert_id: alert.alert_id };
        assert!(run(log, alert.case_id, supervisor.clone(), body, now).await);
    }

    // A duplicate between two whistles of one township.
    let township = whistle::sim::TOWNSHIPS[0];
    let (ids, _) = views.list(&[unit_list_prefix(township)], None, 50).unwrap();
    let mut linked = false;
    'pairs: for duplicate in &ids {
        for original in &ids {
            let body = CommandBody::MarkDuplicate { original: *original };
            if duplicate != original && run(log, *duplicate, Actor::new(Role::Township, township), body, now).await {
                linked = true;
                break 'pairs;
            }
        }
    }
    assert!(linked, "no duplicate could be marked among {} whistles", ids.len());

    // An attachment, a record no one can read, and a corrected 2026 calendar that moves the
    // open deadlines (every armed case is re-armed in the same batch).
    let body = CommandBody::AddAttachment {
        name: "现场.jpg".into(),
        size: 1234,
        content_type: "image/jpeg".into(),
        sha256: "ab".repeat(32),
    };
    assert!(run(log, ids[0], Actor::new(Role::Township, township), body, now).await);
    match (&embedded, &server) {
        (Some(log), _) => {
            log.append_raw("whistle.case.x", bytes::Bytes::from_static(b"{not json")).await.unwrap();
        }
        (_, Some(server)) => {
            let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
            js.publish("whistle.case.x", "{not json".into()).await.unwrap().await.unwrap();
        }
        _ => unreachable!(),
    }
    let corrected = YearSchedule::from_toml(
        "year = 2026\nnotice = \"更正\"\n\
         holidays = [{ name = \"元旦\", from = \"2026-01-01\", to = \"2026-01-03\" }, \
                     { name = \"春节\", from = \"2026-02-15\", to = \"2026-02-23\" }, \
                     { name = \"临时\", from = \"2026-03-03\", to = \"2026-03-06\" }]\nworkdays = []",
    )
    .unwrap();
    let admin = Actor::new(Role::Admin, "市政府办");
    assert!(run(log, CALENDAR_CASE_ID, admin, CommandBody::PublishCalendar { schedule: corrected }, now).await);
    catch_up(&mut projector, log).await;

    // More traffic after all that, in batches of up to a thousand records.
    whistle::sim::fill(log, 12, 8, 2_500, start + Duration::days(1)).await.unwrap();
    catch_up(&mut projector, log).await;
    let head = log.head().await.unwrap();
    assert_eq!(views.checkpoint().unwrap(), head);
    assert_eq!(views.compactions(), folds_before, "projected record by record, never folded");
    assert_eq!(views.dead_letter_count().unwrap(), 1);
    assert!(views.armed_count().unwrap() > 0);
    assert!(views.alert_count(AlertStage::Breach).unwrap() + views.alert_count(AlertStage::Warning).unwrap() >= 5);
    let projected = views.digest().unwrap();

    // The fold: the same log into empty views, as a first start over it does (a rebuild
    // folds too, but stops at the dead letter).
    let fresh = Views::open(dir.path().join("fresh")).unwrap();
    let mut folding = Projector::new(fresh.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    let folds = fresh.compactions();
    let totals = folding.catch_up(log, false, |_, _| {}).await.unwrap();
    assert_eq!(fresh.compactions(), folds + 1, "the views were folded, in one step");
    assert_eq!(totals.records, head);
    assert_eq!(totals.dead_letters, 1);
    assert_eq!(fresh.digest().unwrap(), projected, "a fold of {head} records equals projecting them record by record");
    fresh.verify().unwrap();

    // Generations of a few cases: cases are packed (on the packer's thread) and decoded again
    // many times over, also while records touch them.
    let packing = Views::open(dir.path().join("packing")).unwrap();
    let mut folding = Projector::new(packing.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    folding.set_fold_generation_cases(7);
    folding.catch_up(log, false, |_, _| {}).await.unwrap();
    assert_eq!(packing.compactions(), folds + 1, "folded");
    assert_eq!(packing.digest().unwrap(), projected, "a fold that packs every seven cases");

    // A fold that fills up installs what it holds; the rest is projected record by record.
    let capped = Views::open(dir.path().join("capped")).unwrap();
    let mut folding = Projector::new(capped.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    folding.set_fold_cases_max(100);
    // What the views hold as each batch ends: nothing while folding, then the fold's cases and
    // more with each batch projected after it.
    let mut stored = Vec::new();
    let watched = capped.clone();
    folding.catch_up(log, false, |_, _| stored.push(watched.checkpoint().unwrap())).await.unwrap();
    assert_eq!(capped.compactions(), folds + 1);
    assert!(stored.iter().any(|c| *c > 0 && *c < head), "projected on after a partial fold: {stored:?}");
    assert_eq!(capped.digest().unwrap(), projected, "a fold of 100 cases, then record by record");
}

on_both!(a_fold_equals_projecting_record_by_record);

/// The calendar case's view holds its years as map keys inside a tagged state: it must read
/// back from its stored bytes, as when a second calendar is published after a restart (or a
/// fold packs the calendar case and a later publication touches it again).
#[tokio::test]
async fn the_calendar_cases_view_reads_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = whistle::log::embedded::EmbeddedLog::open(dir.path().join("log")).unwrap();
    let views = Views::open(dir.path().join("views")).unwrap();
    let admin = Actor::new(Role::Admin, "市政府办");
    let now = at("2026-11-30T10:00:00+08:00");
    let publish = |year: i32| {
        YearSchedule::from_toml(&format!(
            "year = {year}\nnotice = \"国办发明电〔{}〕号\"\nholidays = [{{ name = \"元旦\", from = \"{year}-01-01\", to = \"{year}-01-01\" }}]\nworkdays = []",
            year - 1
        ))
        .unwrap()
    };
    let body = CommandBody::PublishCalendar { schedule: publish(2027) };
    assert!(run(&log, CALENDAR_CASE_ID, admin.clone(), body, now).await);
    let mut projector = Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    catch_up(&mut projector, &log).await;
    drop(projector);

    let view = views.case(CALENDAR_CASE_ID).unwrap().expect("the calendar case has a view");
    assert!(view.state.exists());
    // A restarted projector reads the calendar case from the views to apply the next one.
    let body = CommandBody::PublishCalendar { schedule: publish(2028) };
    assert!(run(&log, CALENDAR_CASE_ID, admin, body, now).await);
    let mut projector = Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    catch_up(&mut projector, &log).await;
    assert_eq!(views.checkpoint().unwrap(), log.head().await.unwrap());
    let view = views.case(CALENDAR_CASE_ID).unwrap().expect("the calendar case has a view");
    match view.state {
        whistle::domain::State::Calendar(calendar) => {
            assert_eq!(calendar.published.keys().copied().collect::<Vec<_>>(), [2027, 2028]);
        }
        other => panic!("the calendar case holds {other:?}"),
    }
}
