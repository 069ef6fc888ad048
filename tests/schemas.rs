//! `schemas/` holds one JSON Schema (2020-12) per event type and version. This test keeps the
//! files equal to what the types generate (run with `UPDATE_SCHEMAS=1` to rewrite them after a
//! deliberate change) and validates an example of every event type against its file.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;
use whistle::domain::event::*;
use whistle::domain::schema::event_schemas;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn t() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-09-18T10:00:00+08:00").unwrap().with_timezone(&Utc)
}

/// One example of every event type, with optional fields both present and absent somewhere.
fn examples() -> Vec<EventBody> {
    let clock = ClockRef::for_department(ClockKind::Ack, "住建局");
    vec![
        EventBody::WhistleRaised {
            township: "东坝镇".into(),
            title: "河道垃圾".into(),
            description: "d".into(),
            departments: vec!["住建局".into()],
            category: Some("环境".into()),
            location: Some("村口".into()),
            urgency: Urgency::Urgent,
        },
        EventBody::DepartmentAcknowledged { department: "住建局".into() },
        EventBody::DepartmentDeclined { department: "住建局".into(), reason: "r".into() },
        EventBody::DepartmentsAssigned { departments: vec!["城管局".into()], settles: vec!["住建局".into()] },
        EventBody::DepartmentsAdded { departments: vec!["交通局".into()] },
        EventBody::ProgressNoted { department: "住建局".into(), note: "n".into() },
        EventBody::DepartmentHandled { department: "住建局".into(), summary: "s".into() },
        EventBody::WhistleResolved {},
        EventBody::WhistleConfirmed { satisfaction: Satisfaction::BasicallySatisfied, ratings: Default::default() },
        EventBody::WhistleConfirmed {
            satisfaction: Satisfaction::Satisfied,
            ratings: [("城管局".to_owned(), Satisfaction::Unsatisfied)].into(),
        },
        EventBody::WhistleReopened { reason: "r".into() },
        EventBody::WhistleWithdrawn { reason: None },
        EventBody::FeedbackSubmitted {
            topic: FeedbackTopic::AppsChatGroups,
            body: "b".into(),
            anonymous: true,
            follow_up_code_sha256: Some("ab".repeat(32)),
        },
        EventBody::FeedbackReplied { body: "b".into() },
        EventBody::FeedbackResolved { summary: "s".into() },
        EventBody::FeedbackRated { satisfaction: Satisfaction::Unsatisfied },
        EventBody::FeedbackReopened { reason: "r".into() },
        EventBody::ExtensionRequested {
            number: 1,
            clock: clock.clone(),
            span: ExtensionSpan::WorkingDays(2),
            reason: "r".into(),
        },
        EventBody::ExtensionApproved { number: 1 },
        EventBody::ExtensionRefused { number: 1, reason: Some("r".into()) },
        EventBody::SlaWarned { clock: clock.clone(), due_at: t(), warn_at: t() },
        EventBody::SlaBreached { clock: ClockRef::case_wide(ClockKind::FeedbackReply), due_at: t() },
        EventBody::SlaEscalated { clock, due_at: t(), level: 2 },
        EventBody::AlertAcknowledged { alert_id: Uuid::now_v7() },
        EventBody::ReportPublished {
            kind: "monthly".into(),
            period: "2026-11".into(),
            from: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            summary: "排名第一 住建局".into(),
        },
        EventBody::CalendarPublished {
            year: 2027,
            notice: "国务院办公厅关于2027年部分节假日安排的通知".into(),
            holidays: vec![HolidayRange {
                name: "元旦".into(),
                from: chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
                to: chrono::NaiveDate::from_ymd_opt(2027, 1, 3).unwrap(),
            }],
            workdays: vec![chrono::NaiveDate::from_ymd_opt(2027, 1, 9).unwrap()],
        },
        EventBody::MarkedDuplicate { original: uuid::Uuid::from_u128(7) },
        EventBody::DuplicateUnlinked {},
        EventBody::CommentAdded {
            number: 1, body: "@住建局 请看上游".into(), mentions: vec!["住建局".into()]
        },
        EventBody::CommentAdded { number: 2, body: "已到现场".into(), mentions: vec![] },
        EventBody::CommentRetracted { number: 2 },
        EventBody::AttachmentAdded {
            number: 1,
            name: "河道.jpg".into(),
            size: 204_800,
            content_type: "image/jpeg".into(),
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        },
        EventBody::HandOverProposed {
            number: 1,
            from: "城管局".into(),
            to: "生态环境局".into(),
            reason: "水质问题".into(),
        },
        EventBody::HandOverAccepted { number: 1 },
        EventBody::HandOverRefused { number: 2, reason: Some("仍属本部门".into()) },
        EventBody::HandOverRefused { number: 3, reason: None },
        EventBody::DepartmentReassigned {
            from: "城管局".into(), to: "交通局".into(), reason: "道路部分".into()
        },
    ]
}

fn event(body: EventBody) -> Event {
    Event {
        event_id: Uuid::now_v7(),
        case_id: Uuid::now_v7(),
        schema_version: SCHEMA_VERSION,
        actor: Actor::new(Role::Township, "东坝镇"),
        at: t(),
        body,
    }
}

fn read_schema(file_name: &str) -> Value {
    let path = schema_dir().join(file_name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn schema_files_equal_the_generated_schemas() {
    let generated = event_schemas();
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    for s in &generated {
        let text = serde_json::to_string_pretty(&s.schema).unwrap() + "\n";
        let path = schema_dir().join(&s.file_name);
        if update {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(on_disk, text, "{} is stale; rerun with UPDATE_SCHEMAS=1 after a deliberate change", s.file_name);
    }
    let files: BTreeSet<String> = std::fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let expected: BTreeSet<String> = generated.iter().map(|s| s.file_name.clone()).collect();
    assert_eq!(files, expected, "schemas/ has files no event type generates, or lacks some");
}

#[test]
fn every_event_type_has_an_example_and_a_schema() {
    let schema_types: BTreeSet<String> = event_schemas().into_iter().map(|s| s.type_name).collect();
    let example_types: BTreeSet<String> = examples().iter().map(|b| b.type_name().to_owned()).collect();
    assert_eq!(schema_types, example_types);
    assert_eq!(schema_types.len(), 34);
}

#[test]
fn every_example_validates_against_its_schema_file() {
    for body in examples() {
        let e = event(body);
        let instance = serde_json::to_value(&e).unwrap();
        let schema = read_schema(&format!("{}.v{}.json", e.type_name(), e.schema_version));
        let validator = jsonschema::draft202012::new(&schema).expect("schema compiles");
        let errors: Vec<String> = validator.iter_errors(&instance).map(|err| err.to_string()).collect();
        assert!(errors.is_empty(), "{} fails its schema: {errors:?}\n{instance}", e.type_name());
        let back: Event = serde_json::from_value(instance).unwrap();
        assert_eq!(back, e, "round trip");
    }
}

#[test]
fn schemas_reject_what_the_type_would_not_write() {
    let e = event(EventBody::DepartmentAcknowledged { department: "住建局".into() });
    let schema = read_schema("department_acknowledged.v1.json");
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let mut extra = serde_json::to_value(&e).unwrap();
    extra["surprise"] = Value::from(1);
    assert!(!validator.is_valid(&extra), "unknown fields are refused");
    let mut missing = serde_json::to_value(&e).unwrap();
    missing.as_object_mut().unwrap().remove("department");
    assert!(!validator.is_valid(&missing), "required fields are required");
    let mut wrong_type = serde_json::to_value(&e).unwrap();
    wrong_type["type"] = Value::from("whistle_raised");
    assert!(!validator.is_valid(&wrong_type), "the type string is fixed");
    let mut old = serde_json::to_value(&e).unwrap();
    old["schema_version"] = Value::from(2);
    assert!(!validator.is_valid(&old), "the version is fixed");
}

/// The payload of alerts and notices (`whistle.alert.…`, `whistle.notice.…`, generic webhooks).
#[test]
fn the_notice_payload_has_a_schema_file_and_notices_validate_against_it() {
    let schema = serde_json::to_value(schemars::schema_for!(whistle::alerts::AlertNotice)).unwrap();
    let path = schema_dir().join("notices").join("notice.v1.json");
    let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), text, "{} is stale", path.display());
    let validator = jsonschema::draft202012::new(&schema).expect("schema compiles");
    let case = Uuid::from_u128(7);
    let raise = Event {
        event_id: Uuid::from_u128(1),
        case_id: case,
        schema_version: SCHEMA_VERSION,
        actor: Actor::new(Role::Township, "东坝镇"),
        at: t(),
        body: examples().remove(0),
    };
    let mut view = whistle::projector::model::CaseView::new(case);
    view.state = whistle::domain::State::replay([&raise]);
    view.rearm(&whistle::domain::SlaPolicy::default(), &whistle::domain::Calendar::official());
    let notices = whistle::alerts::AlertNotice::for_units(&raise, &view, 1, "市减负办", "市委编办");
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].stage, "summons");
    assert!(notices[0].due_at.is_some(), "the summons names its deadline");
    let instance = serde_json::to_value(&notices[0]).unwrap();
    let errors: Vec<String> = validator.iter_errors(&instance).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{instance}");
}
