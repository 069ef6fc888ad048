//! Given / when / then for one problem, one case: duplicates and unlinking, the comment
//! thread and its retraction window, hand-overs between departments and reassignment.

#[path = "support/domain.rs"]
mod support;

use chrono::Duration;
use support::*;
use uuid::Uuid;
use whistle::domain::command::CommandBody;
use whistle::domain::decide::{COMMENTS_PER_CASE_MAX, HAND_OVERS_PER_CASE_MAX};
use whistle::domain::event::{Actor, ClockKind, ClockRef, EventBody, Role};
use whistle::domain::state::{Case, ExtensionStatus, FeedbackStatus, PartStatus, State, Whistle, WhistleStatus};

const ORIGINAL: Uuid = Uuid::from_u128(0x0A1);

fn whistle_of(state: &State) -> &Case<Whistle> {
    match state {
        State::Whistle(c) => c,
        other => panic!("not a whistle: {other:?}"),
    }
}
fn mark() -> CommandBody {
    CommandBody::MarkDuplicate { original: ORIGINAL }
}
fn comment(body: &str) -> CommandBody {
    CommandBody::AddComment { body: body.into(), mentions: Vec::new() }
}
fn propose(to: &str) -> CommandBody {
    CommandBody::ProposeHandOver { to: to.into(), reason: "水质问题归生态环境局".into() }
}
fn decide_hand_over(number: u32, accept: bool) -> CommandBody {
    CommandBody::DecideHandOver { number, accept, reason: None, township_decides: false }
}
fn ack_clock(d: &str) -> ClockRef {
    ClockRef::for_department(ClockKind::Ack, d)
}

// ----------------------------------------------------------------------------- duplicates

#[test]
fn a_duplicate_closes_pointing_to_its_original_and_releases_its_summonses() {
    let spec = Spec::whistle(&[HOUSING, URBAN]).given(department(HOUSING), CommandBody::AcknowledgeSummons);
    let mut spec = spec;
    assert_eq!(spec.then_events(township(), mark()), [EventBody::MarkedDuplicate { original: ORIGINAL }]);
    let spec = spec.given(township(), mark());
    let case = whistle_of(&spec.state);
    assert_eq!(case.kind.status, WhistleStatus::Duplicate);
    assert_eq!(case.duplicate_of, Some(ORIGINAL));
    assert!(case.clocks.is_empty(), "its clocks stop: {:?}", case.clocks);
    assert!(case.kind.departments.values().all(|p| p.status == PartStatus::Released));
}

#[test]
fn unlinking_restores_parts_and_clocks_from_their_first_start() {
    let spec = Spec::whistle(&[HOUSING, URBAN]).given(department(HOUSING), CommandBody::AcknowledgeSummons);
    let before = whistle_of(&spec.state).clone();
    let spec = spec.given(department(URBAN), mark()).after(Duration::days(3));
    let mut spec = spec;
    assert_eq!(spec.then_events(coordinator(), CommandBody::UnlinkDuplicate), [EventBody::DuplicateUnlinked {}]);
    let spec = spec.given(coordinator(), CommandBody::UnlinkDuplicate);
    let after = whistle_of(&spec.state);
    assert_eq!(after.kind.status, WhistleStatus::Open);
    assert_eq!(after.kind.departments, before.kind.departments, "parts as they were");
    assert_eq!(after.clocks, before.clocks, "same clocks, same first start: the linked days count");
    assert_eq!(after.duplicate_of, None);
}

#[test]
fn the_township_the_coordinator_and_summoned_departments_may_link_and_no_one_else() {
    for allowed in [township(), coordinator(), department(HOUSING)] {
        let mut spec = Spec::whistle(&[HOUSING]);
        assert!(spec.when(allowed.clone(), mark()).is_ok(), "{allowed:?}");
    }
    for refused in [other_township(), department(TRANSPORT), supervisor(), office()] {
        let mut spec = Spec::whistle(&[HOUSING]);
        assert_rejection(&spec.then_rejected(refused, mark()), "forbidden", "may link it");
    }
    // A summoned department may unlink a duplicate that released it.
    let mut spec = Spec::whistle(&[HOUSING]).given(township(), mark());
    assert!(spec.when(department(HOUSING), CommandBody::UnlinkDuplicate).is_ok());
}

#[test]
fn a_case_links_once_not_to_itself_and_not_when_closed() {
    let mut spec = Spec::whistle(&[HOUSING]);
    let itself = CommandBody::MarkDuplicate { original: spec.case_id };
    assert_rejection(&spec.then_rejected(township(), itself), "invalid_field", "itself");
    let mut linked = Spec::whistle(&[HOUSING]).given(township(), mark());
    assert_rejection(&linked.then_rejected(township(), mark()), "conflict", "already marked");
    assert_rejection(&linked.then_rejected(department(HOUSING), CommandBody::AcknowledgeSummons), "conflict", "");
    let mut withdrawn = Spec::whistle(&[HOUSING]).given(township(), CommandBody::WithdrawWhistle { reason: None });
    assert_rejection(&withdrawn.then_rejected(township(), mark()), "conflict", "withdrawn");
    let mut open = Spec::whistle(&[HOUSING]);
    assert_rejection(&open.then_rejected(township(), CommandBody::UnlinkDuplicate), "conflict", "not marked");
}

#[test]
fn the_office_links_feedback_about_the_same_practice() {
    let mut spec = Spec::feedback(false);
    assert_rejection(&spec.then_rejected(township(), mark()), "forbidden", "office");
    let spec = spec.given(office(), mark());
    match &spec.state {
        State::Feedback(c) => {
            assert_eq!(c.kind.status, FeedbackStatus::Duplicate);
            assert!(c.clocks.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let spec = spec.given(office(), CommandBody::UnlinkDuplicate);
    match &spec.state {
        State::Feedback(c) => assert_eq!((c.kind.status, c.clocks.len()), (FeedbackStatus::Open, 2)),
        other => panic!("{other:?}"),
    }
}

// ----------------------------------------------------------------------------- comments

#[test]
fn everyone_on_a_case_comments_and_comments_are_numbered() {
    let mut spec = Spec::whistle(&[HOUSING]);
    let events = spec.then_events(
        department(HOUSING),
        CommandBody::AddComment {
            body: "@东坝镇 上游也要清".into(), mentions: vec![TOWNSHIP.into(), TOWNSHIP.into()]
        },
    );
    assert_eq!(
        events,
        [EventBody::CommentAdded {
            number: 1, body: "@东坝镇 上游也要清".into(), mentions: vec![TOWNSHIP.into()]
        }]
    );
    let spec = spec
        .given(department(HOUSING), comment("一"))
        .given(township(), comment("二"))
        .given(supervisor(), comment("三"));
    let numbers: Vec<(u32, String)> =
        whistle_of(&spec.state).comments.iter().map(|c| (c.number, c.by.unit.clone())).collect();
    assert_eq!(numbers, [(1, HOUSING.into()), (2, TOWNSHIP.into()), (3, "市委督查室".into())]);
}

#[test]
fn comments_are_bounded_in_length_and_number() {
    let mut spec = Spec::whistle(&[HOUSING]);
    assert_rejection(&spec.then_rejected(township(), comment(&"字".repeat(1001))), "invalid_field", "longer than 1000");
    assert_rejection(&spec.then_rejected(township(), comment("  ")), "invalid_field", "empty");
    let mut full = Spec::whistle(&[HOUSING]);
    for n in 0..COMMENTS_PER_CASE_MAX {
        full = full.given(township(), comment(&format!("第{n}条")));
    }
    assert_rejection(&full.then_rejected(township(), comment("再一条")), "conflict", "most comments");
}

#[test]
fn the_author_retracts_a_comment_within_ten_minutes_and_no_one_else_does() {
    let spec = Spec::whistle(&[HOUSING]).given(department(HOUSING), comment("写错了"));
    let retract = || CommandBody::RetractComment { number: 1 };
    let mut other = Spec::whistle(&[HOUSING]).given(department(HOUSING), comment("写错了"));
    assert_rejection(&other.then_rejected(township(), retract()), "forbidden", "author");
    let mut late = Spec::whistle(&[HOUSING]).given(department(HOUSING), comment("写错了")).after(Duration::minutes(10));
    assert_rejection(&late.then_rejected(department(HOUSING), retract()), "conflict", "within 10 minutes");
    let mut spec = spec.after(Duration::minutes(8));
    assert_eq!(spec.then_events(department(HOUSING), retract()), [EventBody::CommentRetracted { number: 1 }]);
    let mut spec = spec.given(department(HOUSING), retract());
    assert!(whistle_of(&spec.state).comments[0].retracted);
    assert_rejection(&spec.then_rejected(department(HOUSING), retract()), "conflict", "already retracted");
    assert_rejection(
        &spec.then_rejected(department(HOUSING), CommandBody::RetractComment { number: 9 }),
        "not_found",
        "no comment 9",
    );
}

#[test]
fn the_anonymous_submitter_comments_with_the_code_only() {
    let mut spec = Spec::feedback(true);
    let anonymous = Actor::anonymous();
    assert_rejection(
        &spec.then_rejected_with_code(anonymous.clone(), comment("补充情况"), Some("wrong-code-0000000")),
        "forbidden",
        "submitter",
    );
    let events = spec.when_with_code(anonymous, comment("补充情况"), Some(FOLLOW_UP_CODE)).unwrap();
    assert_eq!(events[0].actor.role, Role::Anonymous, "recorded as the submitter, never a unit");
    let mut whistle = Spec::whistle(&[HOUSING]);
    assert_rejection(&whistle.then_rejected(Actor::anonymous(), comment("x")), "forbidden", "sign in");
}

// ----------------------------------------------------------------------------- hand-overs

#[test]
fn an_accepted_hand_over_summons_the_new_department_afresh_and_releases_the_first() {
    let spec = Spec::whistle(&[URBAN]).after(Duration::hours(3));
    let mut spec = spec;
    assert_eq!(
        spec.then_events(department(URBAN), propose(ECOLOGY)),
        [EventBody::HandOverProposed {
            number: 1,
            from: URBAN.into(),
            to: ECOLOGY.into(),
            reason: "水质问题归生态环境局".into()
        }]
    );
    let spec = spec.given(department(URBAN), propose(ECOLOGY)).after(Duration::hours(5));
    let accepted_at = spec.now;
    let spec = spec.given(coordinator(), decide_hand_over(1, true));
    let case = whistle_of(&spec.state);
    assert_eq!(case.kind.departments[URBAN].status, PartStatus::Released, "no mark: a released part is not counted");
    assert_eq!(case.kind.departments[ECOLOGY].status, PartStatus::Summoned);
    assert!(!case.clocks.contains_key(&ack_clock(URBAN)));
    assert_eq!(case.clocks[&ack_clock(ECOLOGY)].started_at, accepted_at, "a fresh 24 hours");
    assert_eq!(case.kind.hand_overs[0].status, ExtensionStatus::Approved);
}

#[test]
fn a_refused_hand_over_leaves_the_first_clock_running_from_where_it_was() {
    let spec = Spec::whistle(&[URBAN]);
    let started = whistle_of(&spec.state).clocks[&ack_clock(URBAN)].started_at;
    let spec = spec.given(department(URBAN), propose(ECOLOGY)).given(coordinator(), decide_hand_over(1, false));
    let case = whistle_of(&spec.state);
    assert_eq!(case.clocks[&ack_clock(URBAN)].started_at, started, "the proposal never stopped it");
    assert_eq!(case.kind.departments[URBAN].status, PartStatus::Summoned);
    assert!(!case.kind.departments.contains_key(ECOLOGY));
    assert_eq!(case.kind.hand_overs[0].status, ExtensionStatus::Refused);
}

#[test]
fn who_decides_a_hand_over_and_what_it_may_name() {
    let mut spec = Spec::whistle(&[URBAN, HOUSING]).given(department(URBAN), propose(ECOLOGY));
    assert_rejection(&spec.then_rejected(township(), decide_hand_over(1, true)), "forbidden", "coordinator");
    let township_may = CommandBody::DecideHandOver { number: 1, accept: true, reason: None, township_decides: true };
    assert!(spec.when(township(), township_may.clone()).is_ok(), "when org.toml lets the township decide");
    assert_rejection(&spec.then_rejected(other_township(), township_may), "forbidden", "");
    assert_rejection(&spec.then_rejected(department(URBAN), propose(TRANSPORT)), "conflict", "awaits a decision");
    assert_rejection(&spec.then_rejected(department(HOUSING), propose(URBAN)), "conflict", "already summoned");
    assert_rejection(&spec.then_rejected(township(), propose(TRANSPORT)), "forbidden", "");
    assert_rejection(&spec.then_rejected(coordinator(), decide_hand_over(7, true)), "not_found", "7");
}

#[test]
fn a_whistle_sees_at_most_three_hand_over_proposals() {
    let mut spec = Spec::whistle(&[URBAN]);
    for (n, to) in [ECOLOGY, TRANSPORT, HOUSING].iter().enumerate() {
        spec = spec.given(department(URBAN), propose(to)).given(coordinator(), decide_hand_over(n as u32 + 1, false));
    }
    assert_eq!(HAND_OVERS_PER_CASE_MAX, 3);
    assert_rejection(&spec.then_rejected(department(URBAN), propose("文旅局")), "conflict", "at most 3");
}

#[test]
fn the_coordinator_reassigns_at_any_time_with_a_reason() {
    let spec = Spec::whistle(&[URBAN]).given(department(URBAN), CommandBody::AcknowledgeSummons);
    let reassign = |reason: &str| CommandBody::ReassignDepartment {
        from: URBAN.into(),
        to: TRANSPORT.into(),
        reason: reason.into(),
    };
    let mut spec = spec;
    assert_rejection(&spec.then_rejected(township(), reassign("道路部分")), "forbidden", "coordinator");
    assert_rejection(&spec.then_rejected(coordinator(), reassign(" ")), "invalid_field", "reason");
    let spec = spec.given(coordinator(), reassign("道路部分归交通局"));
    let case = whistle_of(&spec.state);
    assert_eq!(case.kind.departments[URBAN].status, PartStatus::Released);
    assert_eq!(case.kind.departments[TRANSPORT].status, PartStatus::Summoned);
    assert!(case.clocks.keys().all(|c| c.department.as_deref() != Some(URBAN)), "{:?}", case.clocks);
}
