//! Given events, when a command, then events or a rejection: every command of both case
//! kinds, and every way each can be refused.

#[path = "support/domain.rs"]
mod support;

use chrono::Duration;
use support::*;
use uuid::Uuid;
use whistle::domain::command::CommandBody;
use whistle::domain::event::{Actor, ClockKind, ClockRef, EventBody, ExtensionSpan, Role, Satisfaction, Urgency};
use whistle::domain::state::{FeedbackStatus, PartStatus, State, WhistleStatus};

fn ack() -> CommandBody {
    CommandBody::AcknowledgeSummons
}
fn decline(reason: &str) -> CommandBody {
    CommandBody::DeclineSummons { reason: reason.into() }
}
fn handled(summary: &str) -> CommandBody {
    CommandBody::ReportHandled { summary: summary.into() }
}
fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|d| d.to_string()).collect()
}
fn whistle_of(state: &State) -> &whistle::domain::state::Case<whistle::domain::state::Whistle> {
    match state {
        State::Whistle(c) => c,
        other => panic!("not a whistle: {other:?}"),
    }
}
fn feedback_of(state: &State) -> &whistle::domain::state::Case<whistle::domain::state::Feedback> {
    match state {
        State::Feedback(c) => c,
        other => panic!("not feedback: {other:?}"),
    }
}
fn ack_clock(d: &str) -> ClockRef {
    ClockRef::for_department(ClockKind::Ack, d)
}

// ----------------------------------------------------------------------------- raising

#[test]
fn a_township_raises_a_whistle_summoning_departments() {
    let mut spec = Spec::new();
    let events = spec.when(township(), raise(&[HOUSING, URBAN])).unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.case_id, spec.case_id);
    assert_eq!(e.actor, township());
    assert_eq!(e.at, spec.now);
    assert_eq!(e.event_id.get_version_num(), 7, "event ids are UUIDv7");
    assert_eq!(
        e.body,
        EventBody::WhistleRaised {
            township: TOWNSHIP.into(),
            title: "河道垃圾堆积".into(),
            description: "村口河道垃圾堆积，涉及多个部门职责。".into(),
            departments: names(&[HOUSING, URBAN]),
            category: Some("环境".into()),
            location: None,
            urgency: Urgency::Normal,
        }
    );
}

#[test]
fn raised_whistle_runs_one_ack_clock_per_department() {
    let spec = Spec::whistle(&[HOUSING, URBAN]);
    let case = whistle_of(&spec.state);
    let clocks: Vec<&ClockRef> = case.clocks.keys().collect();
    assert_eq!(
        clocks,
        vec![&ack_clock(URBAN), &ack_clock(HOUSING)]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(case.kind.status, WhistleStatus::Open);
}

#[test]
fn only_a_township_may_raise_a_whistle() {
    let r = Spec::new().then_rejected(department(HOUSING), raise(&[URBAN]));
    assert_rejection(&r, "forbidden", "only a township may");
}

#[test]
fn a_whistle_needs_a_title_a_description_and_departments() {
    let mut spec = Spec::new();
    let mut no_title = raise(&[HOUSING]);
    if let CommandBody::RaiseWhistle { title, .. } = &mut no_title {
        *title = "   ".into();
    }
    assert_rejection(&spec.then_rejected(township(), no_title), "invalid_field", "title must not be empty");

    let mut no_description = raise(&[HOUSING]);
    if let CommandBody::RaiseWhistle { description, .. } = &mut no_description {
        *description = String::new();
    }
    assert_rejection(&spec.then_rejected(township(), no_description), "invalid_field", "description must not be empty");

    assert_rejection(&spec.then_rejected(township(), raise(&[])), "invalid_field", "at least one department");
    assert_rejection(
        &spec.then_rejected(township(), raise(&[HOUSING, HOUSING])),
        "invalid_field",
        "department 住建局 is named twice",
    );
    assert_rejection(&spec.then_rejected(township(), raise(&["住建\n局"])), "invalid_field", "must be one line");
}

#[test]
fn overlong_and_control_character_text_is_refused() {
    let mut spec = Spec::new();
    let mut long = raise(&[HOUSING]);
    if let CommandBody::RaiseWhistle { title, .. } = &mut long {
        *title = "长".repeat(201);
    }
    assert_rejection(&spec.then_rejected(township(), long), "invalid_field", "longer than 200 characters");
    let mut control = raise(&[HOUSING]);
    if let CommandBody::RaiseWhistle { description, .. } = &mut control {
        *description = "bell\u{7}".into();
    }
    assert_rejection(&spec.then_rejected(township(), control), "invalid_field", "control characters");
    let many: Vec<String> = (0..31).map(|i| format!("部门{i}")).collect();
    let body = CommandBody::RaiseWhistle {
        title: "t".into(),
        description: "d".into(),
        departments: many,
        category: None,
        location: None,
        urgency: Urgency::Urgent,
    };
    assert_rejection(&spec.then_rejected(township(), body), "invalid_field", "at most 30 departments");
}

#[test]
fn a_case_is_raised_only_once() {
    let r = Spec::whistle(&[HOUSING]).then_rejected(township(), raise(&[URBAN]));
    assert_rejection(&r, "conflict", "already exists");
    let r = Spec::whistle(&[HOUSING]).then_rejected(township(), submit(false));
    assert_rejection(&r, "conflict", "already exists");
}

#[test]
fn commands_on_a_case_that_does_not_exist_are_not_found() {
    let r = Spec::new().then_rejected(department(HOUSING), ack());
    assert_rejection(&r, "not_found", "does not exist");
}

// ----------------------------------------------------------------------------- reporting in

#[test]
fn a_summoned_department_reports_in() {
    let mut spec = Spec::whistle(&[HOUSING, URBAN]);
    let events = spec.then_events(department(HOUSING), ack());
    assert_eq!(events, vec![EventBody::DepartmentAcknowledged { department: HOUSING.into() }]);
    let spec = spec.given(department(HOUSING), ack());
    let case = whistle_of(&spec.state);
    assert!(!case.clocks.contains_key(&ack_clock(HOUSING)), "ack clock stops");
    assert!(case.clocks.contains_key(&ack_clock(URBAN)), "other clocks keep running");
    assert!(case.clocks.contains_key(&ClockRef::for_department(ClockKind::WhistleResolve, HOUSING)));
    assert_eq!(case.kind.departments[HOUSING].status, PartStatus::Acknowledged);
}

#[test]
fn a_department_not_summoned_may_not_report_in() {
    let r = Spec::whistle(&[URBAN]).then_rejected(department(HOUSING), ack());
    assert_rejection(&r, "forbidden", "department 住建局 is not summoned on this whistle");
}

#[test]
fn only_departments_report_in() {
    let r = Spec::whistle(&[HOUSING]).then_rejected(township(), ack());
    assert_rejection(&r, "forbidden", "a township may not report in");
}

#[test]
fn reporting_in_twice_is_a_conflict() {
    let r = Spec::whistle(&[HOUSING]).given(department(HOUSING), ack()).then_rejected(department(HOUSING), ack());
    assert_rejection(&r, "conflict", "has already reported in");
}

#[test]
fn a_withdrawn_whistle_takes_no_reports() {
    let r = Spec::whistle(&[HOUSING])
        .given(township(), CommandBody::WithdrawWhistle { reason: None })
        .then_rejected(department(HOUSING), ack());
    assert_rejection(&r, "conflict", "withdrawn, not open");
}

// ----------------------------------------------------------------------------- disputes

#[test]
fn a_department_declines_with_a_reason_and_a_dispute_clock_starts() {
    let mut spec = Spec::whistle(&[HOUSING, URBAN]);
    let events = spec.then_events(department(HOUSING), decline("  不属于本部门职责  "));
    assert_eq!(
        events,
        vec![EventBody::DepartmentDeclined { department: HOUSING.into(), reason: "不属于本部门职责".into() }]
    );
    let spec = spec.given(department(HOUSING), decline("不属于本部门职责"));
    let case = whistle_of(&spec.state);
    assert!(case.clocks.contains_key(&ClockRef::for_department(ClockKind::Dispute, HOUSING)));
    assert!(!case.clocks.contains_key(&ack_clock(HOUSING)));
    assert_eq!(case.kind.open_disputes().collect::<Vec<_>>(), vec![HOUSING]);
}

#[test]
fn declining_needs_a_reason_and_a_pending_summons() {
    let mut spec = Spec::whistle(&[HOUSING]);
    assert_rejection(
        &spec.then_rejected(department(HOUSING), decline(" ")),
        "invalid_field",
        "reason must not be empty",
    );
    let r =
        Spec::whistle(&[HOUSING]).given(department(HOUSING), ack()).then_rejected(department(HOUSING), decline("x"));
    assert_rejection(&r, "conflict", "already reported in");
    let r =
        Spec::whistle(&[HOUSING]).given(department(HOUSING), decline("x")).then_rejected(department(HOUSING), ack());
    assert_rejection(&r, "conflict", "has declined");
}

#[test]
fn a_coordinator_assigns_the_right_department_and_settles_the_dispute() {
    let mut spec = Spec::whistle(&[HOUSING, URBAN]).given(department(HOUSING), decline("河道归生态环境局"));
    let events = spec.then_events(coordinator(), CommandBody::AssignDepartments { departments: names(&[ECOLOGY]) });
    assert_eq!(
        events,
        vec![EventBody::DepartmentsAssigned { departments: names(&[ECOLOGY]), settles: names(&[HOUSING]) }]
    );
    let spec = spec.given(coordinator(), CommandBody::AssignDepartments { departments: names(&[ECOLOGY]) });
    let case = whistle_of(&spec.state);
    assert_eq!(case.kind.departments[HOUSING].status, PartStatus::Released);
    assert_eq!(case.kind.departments[ECOLOGY].status, PartStatus::Summoned);
    assert!(case.clocks.contains_key(&ack_clock(ECOLOGY)), "the assigned department gets its own 24 h clock");
    assert!(!case.clocks.contains_key(&ClockRef::for_department(ClockKind::Dispute, HOUSING)));
}

#[test]
fn a_coordinator_can_hold_the_declining_department_responsible() {
    let spec = Spec::whistle(&[HOUSING])
        .given(department(HOUSING), decline("不是我们"))
        .given(coordinator(), CommandBody::AssignDepartments { departments: names(&[HOUSING]) });
    let case = whistle_of(&spec.state);
    assert_eq!(case.kind.departments[HOUSING].status, PartStatus::Summoned);
    assert!(case.clocks.contains_key(&ack_clock(HOUSING)));
}

#[test]
fn assigning_needs_a_coordinator_and_an_open_dispute() {
    let r = Spec::whistle(&[HOUSING])
        .then_rejected(coordinator(), CommandBody::AssignDepartments { departments: names(&[URBAN]) });
    assert_rejection(&r, "conflict", "no responsibility dispute is open");
    let r = Spec::whistle(&[HOUSING])
        .given(department(HOUSING), decline("x"))
        .then_rejected(supervisor(), CommandBody::AssignDepartments { departments: names(&[URBAN]) });
    assert_rejection(&r, "forbidden", "only a coordinator may");
    let r = Spec::whistle(&[HOUSING])
        .given(department(HOUSING), decline("x"))
        .then_rejected(coordinator(), CommandBody::AssignDepartments { departments: vec![] });
    assert_rejection(&r, "invalid_field", "at least one department");
}

#[test]
fn settling_the_last_dispute_after_the_rest_is_handled_resolves_the_whistle() {
    let mut spec = Spec::whistle(&[HOUSING, URBAN])
        .given(department(URBAN), ack())
        .given(department(URBAN), handled("已清理"))
        .given(department(HOUSING), decline("不是我们"));
    assert_eq!(whistle_of(&spec.state).kind.status, WhistleStatus::Open, "an open dispute keeps it open");
    let events = spec.then_events(coordinator(), CommandBody::AssignDepartments { departments: names(&[URBAN]) });
    assert_eq!(events.last(), Some(&EventBody::WhistleResolved {}));
}

// ----------------------------------------------------------------------------- more departments

#[test]
fn the_township_summons_more_departments_later() {
    let mut spec = Spec::whistle(&[HOUSING]).given(department(HOUSING), ack());
    let events = spec.then_events(township(), CommandBody::AddDepartments { departments: names(&[TRANSPORT]) });
    assert_eq!(events, vec![EventBody::DepartmentsAdded { departments: names(&[TRANSPORT]) }]);
    let spec = spec
        .after(Duration::hours(3))
        .given(township(), CommandBody::AddDepartments { departments: names(&[TRANSPORT]) });
    let case = whistle_of(&spec.state);
    let started = case.clocks[&ack_clock(TRANSPORT)].started_at;
    assert_eq!(started, spec.now - Duration::minutes(1), "its clock starts when it is summoned");
}

#[test]
fn adding_a_department_already_summoned_or_by_another_township_is_refused() {
    let r = Spec::whistle(&[HOUSING])
        .then_rejected(township(), CommandBody::AddDepartments { departments: names(&[HOUSING]) });
    assert_rejection(&r, "conflict", "department 住建局 is already summoned");
    let r = Spec::whistle(&[HOUSING])
        .then_rejected(other_township(), CommandBody::AddDepartments { departments: names(&[URBAN]) });
    assert_rejection(&r, "forbidden", "only 东坝镇, the township that raised this whistle");
    let r = Spec::whistle(&[HOUSING])
        .given(department(HOUSING), decline("x"))
        .then_rejected(township(), CommandBody::AddDepartments { departments: names(&[HOUSING]) });
    assert_rejection(&r, "conflict", "already summoned");
}

#[test]
fn a_released_department_can_be_summoned_again() {
    let spec = Spec::whistle(&[HOUSING, URBAN])
        .given(department(HOUSING), decline("x"))
        .given(coordinator(), CommandBody::AssignDepartments { departments: names(&[URBAN]) })
        .given(township(), CommandBody::AddDepartments { departments: names(&[HOUSING]) });
    assert_eq!(whistle_of(&spec.state).kind.departments[HOUSING].status, PartStatus::Summoned);
}

#[test]
fn a_whistle_summons_at_most_sixty_departments() {
    let first: Vec<String> = (0..30).map(|i| format!("甲{i}")).collect();
    let second: Vec<String> = (0..30).map(|i| format!("乙{i}")).collect();
    let mut spec = Spec::new()
        .given(
            township(),
            CommandBody::RaiseWhistle {
                title: "t".into(),
                description: "d".into(),
                departments: first,
                category: None,
                location: None,
                urgency: Urgency::Normal,
            },
        )
        .given(township(), CommandBody::AddDepartments { departments: second });
    let r = spec.then_rejected(township(), CommandBody::AddDepartments { departments: names(&["丙"]) });
    assert_rejection(&r, "invalid_field", "at most 60 departments");
}

// ----------------------------------------------------------------------------- working, handled

#[test]
fn a_working_department_notes_progress() {
    let mut spec = Spec::whistle(&[HOUSING]).given(department(HOUSING), ack());
    let events = spec.then_events(department(HOUSING), CommandBody::NoteProgress { note: "已派人勘察".into() });
    assert_eq!(events, vec![EventBody::ProgressNoted { department: HOUSING.into(), note: "已派人勘察".into() }]);
}

#[test]
fn progress_needs_a_department_that_reported_in() {
    let r =
        Spec::whistle(&[HOUSING]).then_rejected(department(HOUSING), CommandBody::NoteProgress { note: "n".into() });
    assert_rejection(&r, "conflict", "must report in (报到) first");
    let r = Spec::whistle(&[HOUSING]).then_rejected(department(URBAN), CommandBody::NoteProgress { note: "n".into() });
    assert_rejection(&r, "forbidden", "not summoned");
    let r = Spec::whistle(&[HOUSING])
        .given(department(HOUSING), ack())
        .then_rejected(department(HOUSING), CommandBody::NoteProgress { note: "".into() });
    assert_rejection(&r, "invalid_field", "note must not be empty");
}

#[test]
fn the_whistle_resolves_when_the_last_department_reports_handled() {
    let mut spec = Spec::whistle(&[HOUSING, URBAN]).given(department(HOUSING), ack()).given(department(URBAN), ack());
    let first = spec.then_events(department(HOUSING), handled("已清淤"));
    assert_eq!(first, vec![EventBody::DepartmentHandled { department: HOUSING.into(), summary: "已清淤".into() }]);
    let mut spec = spec.given(department(HOUSING), handled("已清淤"));
    let last = spec.then_events(department(URBAN), handled("已清运垃圾"));
    assert_eq!(
        last,
        vec![
            EventBody::DepartmentHandled { department: URBAN.into(), summary: "已清运垃圾".into() },
            EventBody::WhistleResolved {},
        ]
    );
}

#[test]
fn handled_needs_a_working_department_once() {
    let r = Spec::whistle(&[HOUSING]).then_rejected(department(HOUSING), handled("x"));
    assert_rejection(&r, "conflict", "must report in");
    let r = Spec::whistle(&[HOUSING, URBAN])
        .given(department(HOUSING), ack())
        .given(department(HOUSING), handled("x"))
        .then_rejected(department(HOUSING), handled("x"));
    assert_rejection(&r, "conflict", "already reported its part handled");
    let r = Spec::whistle(&[HOUSING]).given(department(HOUSING), ack()).then_rejected(department(HOUSING), handled(""));
    assert_rejection(&r, "invalid_field", "summary must not be empty");
}

// ----------------------------------------------------------------------------- confirm, reopen, withdraw

fn resolved_whistle() -> Spec {
    Spec::whistle(&[HOUSING]).given(department(HOUSING), ack()).given(department(HOUSING), handled("已处理"))
}

#[test]
fn the_township_confirms_with_a_rating() {
    let mut spec = resolved_whistle();
    let events = spec.then_events(
        township(),
        CommandBody::ConfirmWhistle { satisfaction: Satisfaction::BasicallySatisfied, ratings: Default::default() },
    );
    assert_eq!(
        events,
        vec![EventBody::WhistleConfirmed {
            satisfaction: Satisfaction::BasicallySatisfied,
            ratings: Default::default()
        }]
    );
    let spec = spec.given(
        township(),
        CommandBody::ConfirmWhistle { satisfaction: Satisfaction::Satisfied, ratings: Default::default() },
    );
    assert_eq!(whistle_of(&spec.state).kind.status, WhistleStatus::Confirmed);
}

#[test]
fn confirming_needs_a_resolved_whistle_and_its_own_township() {
    let r = Spec::whistle(&[HOUSING]).then_rejected(
        township(),
        CommandBody::ConfirmWhistle { satisfaction: Satisfaction::Satisfied, ratings: Default::default() },
    );
    assert_rejection(&r, "conflict", "only a resolved whistle can be confirmed; this one is open");
    let r = resolved_whistle().then_rejected(
        other_township(),
        CommandBody::ConfirmWhistle { satisfaction: Satisfaction::Satisfied, ratings: Default::default() },
    );
    assert_rejection(&r, "forbidden", "only 东坝镇");
    let r = resolved_whistle().then_rejected(
        department(HOUSING),
        CommandBody::ConfirmWhistle { satisfaction: Satisfaction::Satisfied, ratings: Default::default() },
    );
    assert_rejection(&r, "forbidden", "only 东坝镇");
}

#[test]
fn reopening_puts_departments_back_to_work_and_rearms_their_clocks() {
    let mut spec = resolved_whistle();
    let events = spec.then_events(township(), CommandBody::ReopenWhistle { reason: "垃圾又堆起来了".into() });
    assert_eq!(events, vec![EventBody::WhistleReopened { reason: "垃圾又堆起来了".into() }]);
    let spec = spec.given(township(), CommandBody::ReopenWhistle { reason: "垃圾又堆起来了".into() });
    let case = whistle_of(&spec.state);
    assert_eq!(case.kind.status, WhistleStatus::Open);
    assert_eq!(case.reopen_count, 1);
    assert_eq!(case.kind.departments[HOUSING].status, PartStatus::Acknowledged);
    assert!(case.clocks.contains_key(&ClockRef::for_department(ClockKind::WhistleResolve, HOUSING)));
}

#[test]
fn reopening_needs_a_reason_and_a_resolved_whistle() {
    let r = resolved_whistle().then_rejected(township(), CommandBody::ReopenWhistle { reason: " ".into() });
    assert_rejection(&r, "invalid_field", "reason must not be empty");
    let r = Spec::whistle(&[HOUSING]).then_rejected(township(), CommandBody::ReopenWhistle { reason: "x".into() });
    assert_rejection(&r, "conflict", "only a resolved whistle can be reopened");
}

#[test]
fn the_township_withdraws_its_whistle_and_every_clock_stops() {
    let mut spec = Spec::whistle(&[HOUSING, URBAN]);
    let events = spec.then_events(township(), CommandBody::WithdrawWhistle { reason: Some("已自行解决".into()) });
    assert_eq!(events, vec![EventBody::WhistleWithdrawn { reason: Some("已自行解决".into()) }]);
    let spec = spec.given(township(), CommandBody::WithdrawWhistle { reason: None });
    assert!(whistle_of(&spec.state).clocks.is_empty());
}

#[test]
fn withdrawing_twice_or_after_confirmation_or_by_others_is_refused() {
    let r = Spec::whistle(&[HOUSING])
        .given(township(), CommandBody::WithdrawWhistle { reason: None })
        .then_rejected(township(), CommandBody::WithdrawWhistle { reason: None });
    assert_rejection(&r, "conflict", "already withdrawn");
    let r = resolved_whistle()
        .given(
            township(),
            CommandBody::ConfirmWhistle { satisfaction: Satisfaction::Unsatisfied, ratings: Default::default() },
        )
        .then_rejected(township(), CommandBody::WithdrawWhistle { reason: None });
    assert_rejection(&r, "conflict", "already confirmed");
    let r = Spec::whistle(&[HOUSING]).then_rejected(other_township(), CommandBody::WithdrawWhistle { reason: None });
    assert_rejection(&r, "forbidden", "only 东坝镇");
}

#[test]
fn feedback_commands_on_a_whistle_are_not_found() {
    let r = Spec::whistle(&[HOUSING]).then_rejected(office(), CommandBody::ReplyFeedback { body: "x".into() });
    assert_rejection(&r, "not_found", "is a whistle, not feedback");
}

// ----------------------------------------------------------------------------- feedback

#[test]
fn a_named_submission_records_the_submitter_and_starts_both_clocks() {
    let mut spec = Spec::new();
    let events = spec.when(township(), submit(false)).unwrap();
    assert_eq!(events[0].actor, township());
    let spec = Spec::new().given(township(), submit(false));
    let case = feedback_of(&spec.state);
    assert_eq!(case.kind.submitter, Some(township()));
    assert!(case.clocks.contains_key(&ClockRef::case_wide(ClockKind::FeedbackReply)));
    assert!(case.clocks.contains_key(&ClockRef::case_wide(ClockKind::FeedbackResolve)));
}

#[test]
fn an_anonymous_submission_stores_no_identity_and_only_the_code_hash() {
    let mut spec = Spec::new();
    let events = spec.when_with_code(township(), submit(true), Some(FOLLOW_UP_CODE)).unwrap();
    let e = &events[0];
    assert_eq!(e.actor, Actor::anonymous());
    let json = serde_json::to_string(e).unwrap();
    assert!(!json.contains(TOWNSHIP), "no identity in {json}");
    assert!(!json.contains(FOLLOW_UP_CODE), "no code in {json}");
    match &e.body {
        EventBody::FeedbackSubmitted { follow_up_code_sha256: Some(h), anonymous: true, .. } => {
            assert_eq!(h.len(), 64);
            assert_eq!(h, &whistle::domain::decide::follow_up_code_sha256(FOLLOW_UP_CODE));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn anonymous_feedback_needs_a_long_enough_code() {
    let r = Spec::new().then_rejected_with_code(township(), submit(true), Some("short"));
    assert_rejection(&r, "invalid_field", "follow-up code of at least 16 characters");
    let r = Spec::new().then_rejected(township(), submit(true));
    assert_rejection(&r, "invalid_field", "follow-up code");
}

#[test]
fn feedback_is_submitted_by_grassroots_officials_with_a_body() {
    let r = Spec::new().then_rejected(department(HOUSING), submit(false));
    assert_rejection(&r, "forbidden", "only a township may");
    let body = CommandBody::SubmitFeedback {
        topic: whistle::domain::event::FeedbackTopic::Other,
        body: "".into(),
        anonymous: false,
    };
    assert_rejection(&Spec::new().then_rejected(township(), body), "invalid_field", "body must not be empty");
}

#[test]
fn the_office_replies_and_the_reply_clock_stops() {
    let mut spec = Spec::feedback(false);
    let events = spec.then_events(office(), CommandBody::ReplyFeedback { body: "已收到，正在核查".into() });
    assert_eq!(events, vec![EventBody::FeedbackReplied { body: "已收到，正在核查".into() }]);
    let spec = spec.given(office(), CommandBody::ReplyFeedback { body: "已收到".into() });
    let case = feedback_of(&spec.state);
    assert!(!case.clocks.contains_key(&ClockRef::case_wide(ClockKind::FeedbackReply)));
    assert!(case.clocks.contains_key(&ClockRef::case_wide(ClockKind::FeedbackResolve)));
}

#[test]
fn only_the_office_replies_or_resolves_and_only_while_open() {
    let r = Spec::feedback(false).then_rejected(department(HOUSING), CommandBody::ReplyFeedback { body: "x".into() });
    assert_rejection(&r, "forbidden", "only a office may");
    let r = Spec::feedback(false).then_rejected(supervisor(), CommandBody::ResolveFeedback { summary: "x".into() });
    assert_rejection(&r, "forbidden", "only a office may");
    let r = Spec::feedback(false)
        .given(office(), CommandBody::ResolveFeedback { summary: "已通知相关部门整改".into() })
        .then_rejected(office(), CommandBody::ReplyFeedback { body: "x".into() });
    assert_rejection(&r, "conflict", "already resolved");
    let r = Spec::feedback(false).then_rejected(office(), CommandBody::ReplyFeedback { body: "".into() });
    assert_rejection(&r, "invalid_field", "body must not be empty");
}

#[test]
fn resolving_stops_both_clocks() {
    let mut spec = Spec::feedback(false);
    let events = spec.then_events(office(), CommandBody::ResolveFeedback { summary: "已整改".into() });
    assert_eq!(events, vec![EventBody::FeedbackResolved { summary: "已整改".into() }]);
    let spec = spec.given(office(), CommandBody::ResolveFeedback { summary: "已整改".into() });
    assert!(feedback_of(&spec.state).clocks.is_empty());
}

fn resolved_feedback(anonymous: bool) -> Spec {
    Spec::feedback(anonymous).given(office(), CommandBody::ResolveFeedback { summary: "已整改".into() })
}

#[test]
fn the_named_submitter_rates_the_resolution() {
    let mut spec = resolved_feedback(false);
    let events = spec.then_events(township(), CommandBody::RateFeedback { satisfaction: Satisfaction::Satisfied });
    assert_eq!(events, vec![EventBody::FeedbackRated { satisfaction: Satisfaction::Satisfied }]);
    let r = resolved_feedback(false)
        .then_rejected(other_township(), CommandBody::RateFeedback { satisfaction: Satisfaction::Satisfied });
    assert_rejection(&r, "forbidden", "only the submitter of this feedback may rate it");
    let r = Spec::feedback(false)
        .then_rejected(township(), CommandBody::RateFeedback { satisfaction: Satisfaction::Satisfied });
    assert_rejection(&r, "conflict", "still open");
    let r = resolved_feedback(false)
        .given(township(), CommandBody::RateFeedback { satisfaction: Satisfaction::Unsatisfied })
        .then_rejected(township(), CommandBody::RateFeedback { satisfaction: Satisfaction::Satisfied });
    assert_rejection(&r, "conflict", "closed with a rating");
}

#[test]
fn the_anonymous_submitter_acts_with_the_follow_up_code_only() {
    let mut spec = resolved_feedback(true);
    let events = spec
        .when_with_code(
            Actor::anonymous(),
            CommandBody::RateFeedback { satisfaction: Satisfaction::Satisfied },
            Some(FOLLOW_UP_CODE),
        )
        .unwrap();
    assert_eq!(events[0].actor, Actor::anonymous());
    let r = resolved_feedback(true).then_rejected_with_code(
        Actor::anonymous(),
        CommandBody::RateFeedback { satisfaction: Satisfaction::Satisfied },
        Some("wrong-code-wrong-code"),
    );
    assert_rejection(&r, "forbidden", "only the submitter");
    let r = resolved_feedback(true)
        .then_rejected(township(), CommandBody::RateFeedback { satisfaction: Satisfaction::Satisfied });
    assert_rejection(&r, "forbidden", "only the submitter");
}

#[test]
fn reopening_feedback_rearms_the_resolve_clock() {
    let mut spec = resolved_feedback(false).after(Duration::days(2));
    let events = spec.then_events(township(), CommandBody::ReopenFeedback { reason: "问题仍然存在".into() });
    assert_eq!(events, vec![EventBody::FeedbackReopened { reason: "问题仍然存在".into() }]);
    let reopened_at = spec.now;
    let spec = spec.given(township(), CommandBody::ReopenFeedback { reason: "问题仍然存在".into() });
    let case = feedback_of(&spec.state);
    assert_eq!(case.kind.status, FeedbackStatus::Open);
    assert_eq!(case.reopen_count, 1);
    assert_eq!(case.clocks[&ClockRef::case_wide(ClockKind::FeedbackResolve)].started_at, reopened_at);
    assert!(!case.clocks.contains_key(&ClockRef::case_wide(ClockKind::FeedbackReply)), "it was answered already");
    let r = Spec::feedback(false).then_rejected(township(), CommandBody::ReopenFeedback { reason: "x".into() });
    assert_rejection(&r, "conflict", "cannot be reopened: it is still open");
    let r = resolved_feedback(false).then_rejected(township(), CommandBody::ReopenFeedback { reason: "".into() });
    assert_rejection(&r, "invalid_field", "reason must not be empty");
}

#[test]
fn whistle_commands_on_feedback_are_not_found() {
    let r = Spec::feedback(false).then_rejected(department(HOUSING), ack());
    assert_rejection(&r, "not_found", "is feedback, not a whistle");
}

// ----------------------------------------------------------------------------- extensions

fn extension(clock: ClockRef, span: ExtensionSpan) -> CommandBody {
    CommandBody::RequestExtension { clock, span, reason: "需要协调上级部门".into() }
}

#[test]
fn the_party_that_owes_a_clock_asks_for_an_extension() {
    let mut spec = Spec::whistle(&[HOUSING]);
    let events = spec.then_events(department(HOUSING), extension(ack_clock(HOUSING), ExtensionSpan::Hours(12)));
    assert_eq!(
        events,
        vec![EventBody::ExtensionRequested {
            number: 1,
            clock: ack_clock(HOUSING),
            span: ExtensionSpan::Hours(12),
            reason: "需要协调上级部门".into(),
        }]
    );
    let mut spec = Spec::feedback(false);
    let clock = ClockRef::case_wide(ClockKind::FeedbackResolve);
    assert_eq!(spec.then_events(office(), extension(clock, ExtensionSpan::WorkingDays(2))).len(), 1);
    let mut spec = Spec::whistle(&[HOUSING]).given(department(HOUSING), decline("x"));
    let clock = ClockRef::for_department(ClockKind::Dispute, HOUSING);
    assert_eq!(spec.then_events(coordinator(), extension(clock, ExtensionSpan::WorkingDays(1))).len(), 1);
}

#[test]
fn an_extension_is_refused_to_others_for_stopped_clocks_and_for_odd_spans() {
    let r = Spec::whistle(&[HOUSING, URBAN])
        .then_rejected(department(URBAN), extension(ack_clock(HOUSING), ExtensionSpan::Hours(1)));
    assert_rejection(&r, "forbidden", "only the 住建局 that owes clock ack:住建局");
    let r = Spec::feedback(false)
        .then_rejected(township(), extension(ClockRef::case_wide(ClockKind::FeedbackReply), ExtensionSpan::Hours(1)));
    assert_rejection(&r, "forbidden", "only the office");
    let r = Spec::whistle(&[HOUSING])
        .given(department(HOUSING), ack())
        .then_rejected(department(HOUSING), extension(ack_clock(HOUSING), ExtensionSpan::Hours(1)));
    assert_rejection(&r, "conflict", "clock ack:住建局 is not running");
    let r = Spec::whistle(&[HOUSING])
        .then_rejected(department(HOUSING), extension(ack_clock(HOUSING), ExtensionSpan::WorkingDays(0)));
    assert_rejection(&r, "invalid_field", "1 to 30 working days");
    let r = Spec::whistle(&[HOUSING])
        .then_rejected(department(HOUSING), extension(ack_clock(HOUSING), ExtensionSpan::Hours(721)));
    assert_rejection(&r, "invalid_field", "1 to 720 hours");
    let r = Spec::whistle(&[HOUSING])
        .given(department(HOUSING), extension(ack_clock(HOUSING), ExtensionSpan::Hours(2)))
        .then_rejected(department(HOUSING), extension(ack_clock(HOUSING), ExtensionSpan::Hours(2)));
    assert_rejection(&r, "conflict", "already waiting for a supervisor");
}

#[test]
fn a_supervisor_approves_or_refuses_an_extension_once() {
    let pending = || {
        Spec::whistle(&[HOUSING]).given(department(HOUSING), extension(ack_clock(HOUSING), ExtensionSpan::Hours(12)))
    };
    let mut spec = pending();
    assert_eq!(
        spec.then_events(supervisor(), CommandBody::ApproveExtension { number: 1 }),
        vec![EventBody::ExtensionApproved { number: 1 }]
    );
    let mut spec = pending();
    assert_eq!(
        spec.then_events(supervisor(), CommandBody::RefuseExtension { number: 1, reason: Some("理由不充分".into()) }),
        vec![EventBody::ExtensionRefused { number: 1, reason: Some("理由不充分".into()) }]
    );
    let spec = pending().given(supervisor(), CommandBody::ApproveExtension { number: 1 });
    assert_eq!(whistle_of(&spec.state).clocks[&ack_clock(HOUSING)].extensions, vec![ExtensionSpan::Hours(12)]);

    let r = pending().then_rejected(department(HOUSING), CommandBody::ApproveExtension { number: 1 });
    assert_rejection(&r, "forbidden", "only a supervisor may");
    let r = pending().then_rejected(supervisor(), CommandBody::ApproveExtension { number: 2 });
    assert_rejection(&r, "not_found", "no extension request 2");
    let r = pending()
        .given(supervisor(), CommandBody::ApproveExtension { number: 1 })
        .then_rejected(supervisor(), CommandBody::RefuseExtension { number: 1, reason: None });
    assert_rejection(&r, "conflict", "already decided");
    let r = pending()
        .given(department(HOUSING), ack())
        .then_rejected(supervisor(), CommandBody::ApproveExtension { number: 1 });
    assert_rejection(&r, "conflict", "has stopped; there is nothing to extend");
}

// ----------------------------------------------------------------------------- SLA alerts

#[test]
fn the_watchdog_records_a_breach_once_the_deadline_has_passed() {
    let raised = Spec::whistle(&[HOUSING]);
    let due_at = raised.now - Duration::minutes(1) + Duration::hours(24);
    let mut early = Spec::whistle(&[HOUSING]);
    let r = early.then_rejected(system(), CommandBody::RecordSlaBreach { clock: ack_clock(HOUSING), due_at });
    assert_rejection(&r, "conflict", "is not due until");

    let mut late = Spec::whistle(&[HOUSING]).after(Duration::hours(25));
    let events = late.then_events(system(), CommandBody::RecordSlaBreach { clock: ack_clock(HOUSING), due_at });
    assert_eq!(events, vec![EventBody::SlaBreached { clock: ack_clock(HOUSING), due_at }]);
}

#[test]
fn a_breach_already_recorded_is_not_recorded_again() {
    let due_at = at("2026-03-03T09:00:00+08:00");
    let mut spec = Spec::whistle(&[HOUSING])
        .after(Duration::hours(25))
        .given(system(), CommandBody::RecordSlaBreach { clock: ack_clock(HOUSING), due_at });
    assert_eq!(spec.then_events(system(), CommandBody::RecordSlaBreach { clock: ack_clock(HOUSING), due_at }), vec![]);
    let warn_at = at("2026-03-03T03:00:00+08:00");
    assert_eq!(
        spec.then_events(system(), CommandBody::RecordSlaWarning { clock: ack_clock(HOUSING), due_at, warn_at }),
        vec![],
        "a warning after the breach says nothing new"
    );
    let moved = due_at + Duration::hours(12);
    let mut spec = spec.after(Duration::hours(13));
    assert_eq!(
        spec.then_events(system(), CommandBody::RecordSlaBreach { clock: ack_clock(HOUSING), due_at: moved }).len(),
        1,
        "a new deadline (after an extension) can breach again"
    );
}

#[test]
fn sla_alerts_come_only_from_the_system_for_running_clocks() {
    let due_at = at("2026-03-03T09:00:00+08:00");
    let r = Spec::whistle(&[HOUSING])
        .after(Duration::hours(25))
        .then_rejected(supervisor(), CommandBody::RecordSlaBreach { clock: ack_clock(HOUSING), due_at });
    assert_rejection(&r, "forbidden", "only a system may");
    let r = Spec::whistle(&[HOUSING])
        .given(department(HOUSING), ack())
        .after(Duration::hours(25))
        .then_rejected(system(), CommandBody::RecordSlaBreach { clock: ack_clock(HOUSING), due_at });
    assert_rejection(&r, "conflict", "is not running");
    let r = Spec::whistle(&[HOUSING])
        .after(Duration::hours(50))
        .then_rejected(system(), CommandBody::RecordSlaEscalation { clock: ack_clock(HOUSING), due_at, level: 1 });
    assert_rejection(&r, "invalid_field", "level 2 or above");
}

#[test]
fn warnings_and_escalations_are_recorded() {
    let due_at = at("2026-03-03T09:00:00+08:00");
    let warn_at = at("2026-03-03T03:00:00+08:00");
    let mut spec = Spec::whistle(&[HOUSING]).after(Duration::hours(19));
    assert_eq!(
        spec.then_events(system(), CommandBody::RecordSlaWarning { clock: ack_clock(HOUSING), due_at, warn_at }),
        vec![EventBody::SlaWarned { clock: ack_clock(HOUSING), due_at, warn_at }]
    );
    let mut spec = Spec::whistle(&[HOUSING]).after(Duration::hours(49));
    assert_eq!(
        spec.then_events(system(), CommandBody::RecordSlaEscalation { clock: ack_clock(HOUSING), due_at, level: 2 }),
        vec![EventBody::SlaEscalated { clock: ack_clock(HOUSING), due_at, level: 2 }]
    );
}

#[test]
fn a_supervisor_acknowledges_an_alert_once() {
    let due_at = at("2026-03-03T09:00:00+08:00");
    let spec = Spec::whistle(&[HOUSING])
        .after(Duration::hours(25))
        .given(system(), CommandBody::RecordSlaBreach { clock: ack_clock(HOUSING), due_at });
    let alert_id = spec.events.last().unwrap().event_id;
    let mut s = spec;
    assert_eq!(
        s.then_events(supervisor(), CommandBody::AcknowledgeAlert { alert_id }),
        vec![EventBody::AlertAcknowledged { alert_id }]
    );
    let r = s.then_rejected(department(HOUSING), CommandBody::AcknowledgeAlert { alert_id });
    assert_rejection(&r, "forbidden", "only a supervisor may");
    let r = s.then_rejected(supervisor(), CommandBody::AcknowledgeAlert { alert_id: Uuid::nil() });
    assert_rejection(&r, "not_found", "no alert");
    let mut s = s.given(supervisor(), CommandBody::AcknowledgeAlert { alert_id });
    let r = s.then_rejected(supervisor(), CommandBody::AcknowledgeAlert { alert_id });
    assert_rejection(&r, "conflict", "already acknowledged by 市委督查室");
}

// ----------------------------------------------------------------------------- determinism

#[test]
fn deciding_the_same_command_twice_gives_the_same_events() {
    let spec = Spec::whistle(&[HOUSING]);
    let cmd = whistle::domain::Command::new(Uuid::from_u128(77), spec.case_id, department(HOUSING), ack());
    let a = whistle::domain::decide(&spec.state, &cmd, spec.now).unwrap();
    let b = whistle::domain::decide(&spec.state, &cmd, spec.now).unwrap();
    assert_eq!(a, b);
    let other = whistle::domain::Command::new(Uuid::from_u128(78), spec.case_id, department(HOUSING), ack());
    let c = whistle::domain::decide(&spec.state, &other, spec.now).unwrap();
    assert_ne!(a[0].event_id, c[0].event_id, "another command gives other ids");
    let _ = Role::Admin;
}

// ----------------------------------------------------------------------------- calendar publication

fn schedule_2027() -> whistle::domain::YearSchedule {
    whistle::domain::YearSchedule::from_toml(
        "year = 2027\nnotice = \"国务院办公厅关于2027年部分节假日安排的通知\"\n\
         holidays = [{ name = \"元旦\", from = \"2027-01-01\", to = \"2027-01-03\" }]\nworkdays = []",
    )
    .unwrap()
}

fn calendar_spec() -> Spec {
    let mut spec = Spec::new();
    spec.case_id = whistle::domain::event::CALENDAR_CASE_ID;
    spec
}

#[test]
fn an_admin_publishes_a_year_on_the_calendar_case() {
    let admin = Actor::new(Role::Admin, "市政府办");
    let mut spec = calendar_spec();
    let events = spec.then_events(admin.clone(), CommandBody::PublishCalendar { schedule: schedule_2027() });
    assert!(matches!(&events[0], EventBody::CalendarPublished { year: 2027, .. }));
    let spec = spec.given(admin.clone(), CommandBody::PublishCalendar { schedule: schedule_2027() });
    match &spec.state {
        State::Calendar(c) => assert!(c.published.contains_key(&2027)),
        other => panic!("{other:?}"),
    }
    // A correction is published the same way.
    let mut spec = spec;
    assert_eq!(spec.then_events(admin, CommandBody::PublishCalendar { schedule: schedule_2027() }).len(), 1);
}

#[test]
fn publishing_a_calendar_is_refused_to_others_elsewhere_and_when_malformed() {
    let r = calendar_spec().then_rejected(supervisor(), CommandBody::PublishCalendar { schedule: schedule_2027() });
    assert_rejection(&r, "forbidden", "only an admin may");
    let r = Spec::new()
        .then_rejected(Actor::new(Role::Admin, "a"), CommandBody::PublishCalendar { schedule: schedule_2027() });
    assert_rejection(&r, "invalid_field", "calendars are published on case");
    let mut bad = schedule_2027();
    bad.workdays.push(chrono::NaiveDate::from_ymd_opt(2027, 1, 6).unwrap());
    let r = calendar_spec().then_rejected(Actor::new(Role::Admin, "a"), CommandBody::PublishCalendar { schedule: bad });
    assert_rejection(&r, "invalid_field", "not a weekend day");
    let r = calendar_spec()
        .given(Actor::new(Role::Admin, "a"), CommandBody::PublishCalendar { schedule: schedule_2027() })
        .then_rejected(department(HOUSING), ack());
    assert_rejection(&r, "not_found", "is the calendar");
}

#[test]
fn watchdog_command_ids_are_the_same_everywhere_and_differ_per_stage_and_deadline() {
    use whistle::domain::decide::sla_command_id;
    use whistle::domain::event::AlertStage;
    let case = Uuid::from_u128(9);
    let due = at("2026-03-03T09:00:00+08:00");
    let a = sla_command_id(case, &ack_clock(HOUSING), AlertStage::Breach, due);
    assert_eq!(a, sla_command_id(case, &ack_clock(HOUSING), AlertStage::Breach, due));
    assert_ne!(a, sla_command_id(case, &ack_clock(HOUSING), AlertStage::Warning, due));
    assert_ne!(a, sla_command_id(case, &ack_clock(URBAN), AlertStage::Breach, due));
    assert_ne!(a, sla_command_id(case, &ack_clock(HOUSING), AlertStage::Breach, due + Duration::hours(1)));
}
