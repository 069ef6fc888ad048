//! 三率 by the written rules (docs/statistics.md): each rule pinned by a given/when/then test
//! through the real projector and views, and a property test that checks every row against an
//! independent recomputation from the cases' event histories.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use uuid::Uuid;
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::event::*;
use whistle::domain::state::RunningClock;
use whistle::domain::{armed_clocks, decide, evolve, Calendar, SlaPolicy, State};
use whistle::log::embedded::EmbeddedLog;
use whistle::log::{Commit, EventLog};
use whistle::projector::stats::{StatsCell, StatsDimension};
use whistle::projector::views::Views;

#[path = "support/domain.rs"]
mod support;
use support::*;

#[path = "support/lifecycle.rs"]
mod lifecycle;

// ------------------------------------------------------------------------------- harness

/// Projects cases (each a list of events) through a real log and real views.
struct Ledger {
    _dir: tempfile::TempDir,
    views: Views,
}

impl Ledger {
    async fn of(cases: &[&[Event]]) -> Ledger {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path().join("log")).unwrap();
        for events in cases {
            let mut last = 0;
            for event in *events {
                let commit = Commit { command_id: Uuid::now_v7(), case_id: event.case_id, events: vec![event.clone()] };
                last = log.append(&commit, last).await.unwrap().position;
            }
        }
        let views = Views::open(dir.path().join("views")).unwrap();
        let mut projector =
            whistle::projector::Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
        projector.catch_up(&log, true, |_, _| {}).await.unwrap();
        Ledger { _dir: dir, views }
    }

    fn stats(&self, dimension: StatsDimension) -> BTreeMap<String, StatsCell> {
        self.views.stats(dimension, "2000-01-01", "2100-12-31").unwrap()
    }

    fn between(&self, dimension: StatsDimension, from: &str, to: &str, unit: &str) -> StatsCell {
        self.views.stats(dimension, from, to).unwrap().remove(unit).unwrap_or_default()
    }

    fn row(&self, dimension: StatsDimension, unit: &str) -> StatsCell {
        self.stats(dimension).remove(unit).unwrap_or_default()
    }
}

/// A whistle (or feedback) spec with its own case id.
fn case(n: u128) -> Spec {
    let mut spec = Spec::new();
    spec.case_id = Uuid::from_u128(n);
    spec
}

/// What the watchdog does: records the breach of every clock whose deadline has passed.
fn watchdog(mut spec: Spec) -> Spec {
    let armed = armed_clocks(&spec.state, &SlaPolicy::default(), &Calendar::official()).unwrap();
    for clock in armed {
        let breached = spec
            .state
            .clocks()
            .and_then(|c| c.get(&clock.clock))
            .is_some_and(|r| r.has_alerted(AlertStage::Breach, clock.due_at));
        if clock.due_at <= spec.now && !breached {
            spec = spec.given(system(), CommandBody::RecordSlaBreach { clock: clock.clock, due_at: clock.due_at });
        }
    }
    spec
}

fn confirm(satisfaction: Satisfaction, ratings: &[(&str, Satisfaction)]) -> CommandBody {
    CommandBody::ConfirmWhistle { satisfaction, ratings: ratings.iter().map(|(d, s)| ((*d).to_owned(), *s)).collect() }
}

fn handled() -> CommandBody {
    CommandBody::ReportHandled { summary: "已处理".into() }
}

#[track_caller]
fn assert_rate(cell: &StatsCell, which: usize, numerator: i64, denominator: i64) {
    let (n, d) = match which {
        0 => (cell.on_time, cell.response_base),
        1 => (cell.resolved, cell.resolution_base),
        _ => (cell.satisfied + cell.basically_satisfied, cell.rated),
    };
    assert_eq!((n, d), (numerator, denominator), "{cell:?}");
    let rate = cell.rates()[which];
    if denominator == 0 {
        assert_eq!(rate, None);
    } else {
        assert_eq!(rate, Some(numerator as f64 / denominator as f64));
    }
}

// ------------------------------------------------------------------- the defects, pinned

/// Township 响应率 was 2.0: departments' reports-in over whistles.
#[tokio::test]
async fn township_response_rate_counts_summonses_and_never_exceeds_one() {
    let w = case(1)
        .given(township(), raise(&[HOUSING, URBAN]))
        .given(department(HOUSING), CommandBody::AcknowledgeSummons)
        .given(department(URBAN), CommandBody::AcknowledgeSummons);
    let ledger = Ledger::of(&[&w.events]).await;
    let row = ledger.row(StatsDimension::Township, TOWNSHIP);
    assert_rate(&row, 0, 2, 2);
    assert_rate(&row, 1, 0, 1);
}

/// A withdrawn whistle counted against its departments (城管局 fell to 50 %).
#[tokio::test]
async fn a_whistle_withdrawn_before_the_deadline_does_not_count_against_departments_not_yet_reported_in() {
    let early = case(1)
        .given(township(), raise(&[HOUSING, URBAN]))
        .given(department(HOUSING), CommandBody::AcknowledgeSummons)
        .after(Duration::hours(2))
        .given(township(), CommandBody::WithdrawWhistle { reason: None });
    let on_time = case(2).given(township(), raise(&[URBAN])).given(department(URBAN), CommandBody::AcknowledgeSummons);
    // Withdrawn after the deadline had passed unanswered: that summons counts, as late.
    let late = watchdog(case(3).given(township(), raise(&[TRANSPORT])).after(Duration::hours(25)))
        .given(township(), CommandBody::WithdrawWhistle { reason: None });
    let ledger = Ledger::of(&[&early.events, &on_time.events, &late.events]).await;
    let urban = ledger.row(StatsDimension::Department, URBAN);
    assert_rate(&urban, 0, 1, 1);
    assert_eq!((urban.cases, urban.excluded), (2, 1));
    // Reported in before the withdrawal: judged as usual.
    assert_rate(&ledger.row(StatsDimension::Department, HOUSING), 0, 1, 1);
    let transport = ledger.row(StatsDimension::Department, TRANSPORT);
    assert_rate(&transport, 0, 0, 1);
    assert_eq!(transport.late, 1);
    // Withdrawn whistles are not in the township's 解决率.
    assert_rate(&ledger.row(StatsDimension::Township, TOWNSHIP), 1, 0, 1);
}

/// The same river reported three times (twice by 东坝镇, once by 西湖街道): once the two later
/// whistles are linked to the first, the department is judged once.
#[tokio::test]
async fn a_problem_reported_three_times_counts_once_as_its_original() {
    let original = case(1)
        .given(township(), raise(&[HOUSING]))
        .after(Duration::hours(2))
        .given(department(HOUSING), CommandBody::AcknowledgeSummons);
    let link = CommandBody::MarkDuplicate { original: Uuid::from_u128(1) };
    let again = case(2).given(township(), raise(&[HOUSING])).given(township(), link.clone());
    // Linked after its deadline had passed and been recorded: not counted either.
    let elsewhere = watchdog(case(3).given(other_township(), raise(&[HOUSING])).after(Duration::hours(30)))
        .given(department(HOUSING), link);
    let ledger = Ledger::of(&[&original.events, &again.events, &elsewhere.events]).await;
    let housing = ledger.row(StatsDimension::Department, HOUSING);
    assert_rate(&housing, 0, 1, 1);
    assert_eq!((housing.cases, housing.excluded, housing.breaches), (3, 2, 0));
    let own = ledger.row(StatsDimension::Township, TOWNSHIP);
    assert_eq!((own.cases, own.excluded, own.resolution_base), (2, 1, 1));
    let other = ledger.row(StatsDimension::Township, OTHER_TOWNSHIP);
    assert_eq!((other.cases, other.excluded, other.response_base), (1, 1, 0));
}

/// Unlinked, a duplicate counts again as if never linked: its clock ran from its first start.
#[tokio::test]
async fn an_unlinked_duplicate_counts_again_from_its_first_deadline() {
    let original = case(1).given(township(), raise(&[HOUSING]));
    let linked = case(2)
        .given(township(), raise(&[HOUSING]))
        .given(township(), CommandBody::MarkDuplicate { original: Uuid::from_u128(1) })
        .after(Duration::days(3))
        .given(township(), CommandBody::UnlinkDuplicate);
    // Restored with its first start, the deadline is long past: the watchdog records it at once.
    let linked = watchdog(linked).given(department(HOUSING), CommandBody::AcknowledgeSummons);
    let ledger = Ledger::of(&[&original.events, &linked.events]).await;
    let housing = ledger.row(StatsDimension::Department, HOUSING);
    assert_eq!((housing.cases, housing.excluded, housing.response_base), (2, 0, 2));
    assert_eq!((housing.late, housing.pending, housing.breaches), (1, 1, 1));
}

/// 转办: accepted, the first department carries no mark and the new one has its own 24 hours;
/// refused, the first department's clock never stopped.
#[tokio::test]
async fn an_accepted_hand_over_leaves_no_mark_and_a_refused_one_stops_nothing() {
    let propose = CommandBody::ProposeHandOver { to: ECOLOGY.into(), reason: "水质问题".into() };
    let decide = |accept| CommandBody::DecideHandOver { number: 1, accept, reason: None, township_decides: false };
    let accepted = case(1)
        .given(township(), raise(&[URBAN]))
        .given(department(URBAN), propose.clone())
        .after(Duration::hours(10))
        .given(coordinator(), decide(true))
        .after(Duration::hours(20))
        .given(department(ECOLOGY), CommandBody::AcknowledgeSummons);
    let refused = case(2)
        .given(township(), raise(&[URBAN]))
        .given(department(URBAN), propose)
        .after(Duration::hours(10))
        .given(coordinator(), decide(false))
        .after(Duration::hours(20));
    let refused = watchdog(refused).given(department(URBAN), CommandBody::AcknowledgeSummons);
    let ledger = Ledger::of(&[&accepted.events, &refused.events]).await;
    // 30 hours after the raise, but 20 after its own summons: on time.
    assert_rate(&ledger.row(StatsDimension::Department, ECOLOGY), 0, 1, 1);
    let urban = ledger.row(StatsDimension::Department, URBAN);
    assert_eq!((urban.cases, urban.excluded, urban.response_base, urban.late), (2, 1, 1, 1));
}

/// A breach of the dispute clock was charged to the department that declined.
#[tokio::test]
async fn a_dispute_breach_is_the_coordinators_not_the_declining_departments() {
    let w = case(1)
        .given(township(), raise(&[HOUSING]))
        .after(Duration::hours(1))
        .given(department(HOUSING), CommandBody::DeclineSummons { reason: "不属于本部门职责".into() })
        .after(Duration::days(10));
    let w = watchdog(w);
    let ledger = Ledger::of(&[&w.events]).await;
    let housing = ledger.row(StatsDimension::Department, HOUSING);
    assert_eq!(housing.breaches, 0, "{housing:?}");
    assert_eq!(housing.declined, 1);
    // Its decline awaits the coordinator: not judged yet.
    assert_eq!((housing.pending, housing.response_base), (1, 1));
    let coordinator = ledger.row(StatsDimension::Coordinator, "");
    assert_eq!(coordinator.breaches, 1, "{coordinator:?}");
    assert_rate(&coordinator, 0, 0, 1);
    assert_eq!(coordinator.late, 1);
}

/// One satisfaction rating per whistle was copied to every department.
#[tokio::test]
async fn each_department_is_rated_for_its_own_part_and_the_whole_rating_fills_in() {
    let w = case(1)
        .given(township(), raise(&[HOUSING, URBAN, ECOLOGY]))
        .given(department(HOUSING), CommandBody::AcknowledgeSummons)
        .given(department(URBAN), CommandBody::AcknowledgeSummons)
        .given(department(ECOLOGY), CommandBody::DeclineSummons { reason: "非本部门".into() })
        .given(coordinator(), CommandBody::AssignDepartments { departments: vec![HOUSING.into()] })
        .given(department(HOUSING), handled())
        .given(department(URBAN), handled())
        .given(township(), confirm(Satisfaction::Satisfied, &[(URBAN, Satisfaction::Unsatisfied)]));
    let ledger = Ledger::of(&[&w.events]).await;
    assert_rate(&ledger.row(StatsDimension::Department, HOUSING), 2, 1, 1);
    let urban = ledger.row(StatsDimension::Department, URBAN);
    assert_rate(&urban, 2, 0, 1);
    assert_eq!(urban.unsatisfied, 1);
    // Released after its decline: not counted, not rated.
    let ecology = ledger.row(StatsDimension::Department, ECOLOGY);
    assert_eq!((ecology.cases, ecology.excluded, ecology.response_base, ecology.rated), (1, 1, 0, 0));
    // The township's ratings: one per department part it rated.
    let township_row = ledger.row(StatsDimension::Township, TOWNSHIP);
    assert_rate(&township_row, 2, 1, 2);
    assert_rate(&township_row, 1, 1, 1);
}

/// A rating for a department without a handled part is refused.
#[test]
fn rating_a_department_that_did_not_handle_its_part_is_refused() {
    let mut w = case(1)
        .given(township(), raise(&[HOUSING, URBAN]))
        .given(department(HOUSING), CommandBody::AcknowledgeSummons)
        .given(department(URBAN), CommandBody::DeclineSummons { reason: "非本部门".into() })
        .given(coordinator(), CommandBody::AssignDepartments { departments: vec![HOUSING.into()] })
        .given(department(HOUSING), handled());
    let rejection =
        w.then_rejected(township(), confirm(Satisfaction::Satisfied, &[(URBAN, Satisfaction::Unsatisfied)]));
    assert_rejection(&rejection, "invalid_field", "城管局");
}

/// Topic rows are keyed by their Chinese names (the CSV showed `apps_chat_groups`).
#[tokio::test]
async fn feedback_topics_are_named_in_chinese() {
    let f = case(1).given_with_code(
        township(),
        CommandBody::SubmitFeedback {
            topic: FeedbackTopic::AppsChatGroups,
            body: "工作群太多".into(),
            anonymous: true,
        },
        Some(FOLLOW_UP_CODE),
    );
    let ledger = Ledger::of(&[&f.events]).await;
    let topics = ledger.stats(StatsDimension::Topic);
    assert_eq!(topics.keys().collect::<Vec<_>>(), vec!["指尖负担"]);
}

// ------------------------------------------------------------------------ the other rules

#[tokio::test]
async fn a_case_counts_in_the_period_of_the_beijing_day_it_was_opened() {
    let mut w = Spec::starting(at("2026-03-31T23:00:00+08:00"));
    w.case_id = Uuid::from_u128(1);
    let w = w
        .given(township(), raise(&[HOUSING]))
        .after(Duration::hours(11))
        .given(department(HOUSING), CommandBody::AcknowledgeSummons);
    let ledger = Ledger::of(&[&w.events]).await;
    assert_rate(&ledger.between(StatsDimension::Department, "2026-03-01", "2026-03-31", HOUSING), 0, 1, 1);
    assert!(ledger.between(StatsDimension::Department, "2026-04-01", "2026-04-30", HOUSING).is_empty());
    // 23:00 Beijing is 15:00 UTC: the Beijing day decides, not the UTC one.
    assert!(ledger.between(StatsDimension::Department, "2026-03-30", "2026-03-30", HOUSING).is_empty());
}

#[tokio::test]
async fn an_overruled_decline_counts_with_the_deadline_of_the_new_summons() {
    // Declined within the hour; the coordinator names it again two days later; it reports in
    // ten hours after that: on time for the new summons, though days after the first.
    let w = case(1)
        .given(township(), raise(&[HOUSING]))
        .given(department(HOUSING), CommandBody::DeclineSummons { reason: "不属于本部门".into() })
        .after(Duration::days(2))
        .given(coordinator(), CommandBody::AssignDepartments { departments: vec![HOUSING.into()] })
        .after(Duration::hours(10))
        .given(department(HOUSING), CommandBody::AcknowledgeSummons);
    let ledger = Ledger::of(&[&w.events]).await;
    let housing = ledger.row(StatsDimension::Department, HOUSING);
    assert_rate(&housing, 0, 1, 1);
    assert_eq!((housing.declined, housing.excluded), (1, 0));
    // The coordinator settled the dispute within 3 working days.
    assert_rate(&ledger.row(StatsDimension::Coordinator, ""), 0, 1, 1);
}

#[tokio::test]
async fn an_approved_extension_moves_the_deadline_a_refused_one_does_not() {
    let extend = |n: u128, approve: bool| {
        let clock = ClockRef::for_department(ClockKind::Ack, HOUSING);
        let spec = case(n).given(township(), raise(&[HOUSING])).given(
            department(HOUSING),
            CommandBody::RequestExtension { clock, span: ExtensionSpan::Hours(24), reason: "需现场勘查".into() },
        );
        let decision = if approve {
            CommandBody::ApproveExtension { number: 1 }
        } else {
            CommandBody::RefuseExtension { number: 1, reason: None }
        };
        watchdog(spec.given(supervisor(), decision).after(Duration::hours(30)))
            .given(department(HOUSING), CommandBody::AcknowledgeSummons)
    };
    let approved = extend(1, true);
    let refused = extend(2, false);
    let ledger = Ledger::of(&[&approved.events, &refused.events]).await;
    let housing = ledger.row(StatsDimension::Department, HOUSING);
    assert_rate(&housing, 0, 1, 2);
    assert_eq!(housing.late, 1);
    assert_eq!(housing.breaches, 1);
}

#[tokio::test]
async fn a_summons_still_within_its_deadline_is_pending_and_counted() {
    let w = case(1).given(township(), raise(&[HOUSING])).after(Duration::hours(3));
    let ledger = Ledger::of(&[&w.events]).await;
    let housing = ledger.row(StatsDimension::Department, HOUSING);
    assert_eq!((housing.pending, housing.late, housing.on_time), (1, 0, 0));
    assert_rate(&housing, 0, 0, 1);
}

#[tokio::test]
async fn a_report_in_after_the_deadline_is_late_even_before_the_breach_is_recorded() {
    let w = case(1)
        .given(township(), raise(&[HOUSING]))
        .after(Duration::hours(24) + Duration::seconds(1))
        .given(department(HOUSING), CommandBody::AcknowledgeSummons);
    let ledger = Ledger::of(&[&w.events]).await;
    let housing = ledger.row(StatsDimension::Department, HOUSING);
    assert_eq!((housing.on_time, housing.late, housing.breaches), (0, 1, 0));
}

#[tokio::test]
async fn the_office_answers_by_its_working_day_deadlines_and_anonymous_ratings_count() {
    // Submitted Monday 2 March 2026 09:00; reply due 3 working days later, resolve due 7.
    let on_time = case(1)
        .given_with_code(township(), submit(true), Some(FOLLOW_UP_CODE))
        .after(Duration::days(1))
        .given(office(), CommandBody::ReplyFeedback { body: "已收到".into() })
        .after(Duration::days(2))
        .given(office(), CommandBody::ResolveFeedback { summary: "已取消该要求".into() })
        .given_with_code(
            Actor::anonymous(),
            CommandBody::RateFeedback { satisfaction: Satisfaction::BasicallySatisfied },
            Some(FOLLOW_UP_CODE),
        );
    let late = watchdog(case(2).given(township(), submit(false)).after(Duration::days(12)))
        .given(office(), CommandBody::ResolveFeedback { summary: "已整改".into() });
    let ledger = Ledger::of(&[&on_time.events, &late.events]).await;
    let office_row = ledger.row(StatsDimension::Office, "");
    assert_rate(&office_row, 0, 1, 2);
    assert_rate(&office_row, 1, 1, 2);
    assert_eq!(office_row.resolved_late, 1);
    assert_rate(&office_row, 2, 1, 1);
    assert_eq!(office_row.breaches, 2, "reply and resolve clocks both ran out: {office_row:?}");
}

// --------------------------------------------------------------------- the property test

/// A recomputation of the rules straight from event histories, sharing nothing with the
/// projector but the deadline arithmetic (tested on its own in domain_calendar).
mod oracle {
    use super::*;

    #[derive(Default)]
    struct Summons {
        start: Option<DateTime<Utc>>,
        extensions: Vec<ExtensionSpan>,
        /// (when, "ack" | "decline" | "withdrawn") once the report-in clock stopped.
        stop: Option<(DateTime<Utc>, &'static str)>,
        status: &'static str,
        declines: i64,
        breached_due: Vec<DateTime<Utc>>,
        rating: Option<Satisfaction>,
    }

    struct Dispute {
        start: DateTime<Utc>,
        extensions: Vec<ExtensionSpan>,
        stop: Option<(DateTime<Utc>, &'static str)>,
        breached_due: Vec<DateTime<Utc>>,
    }

    fn due(
        kind: ClockKind,
        department: Option<&str>,
        start: DateTime<Utc>,
        extensions: &[ExtensionSpan],
    ) -> Option<DateTime<Utc>> {
        let clock = match department {
            Some(d) => ClockRef::for_department(kind, d),
            None => ClockRef::case_wide(kind),
        };
        let running = RunningClock {
            started_at: start,
            extensions: extensions.to_vec(),
            alerted: Vec::new(),
            escalated: Vec::new(),
        };
        whistle::domain::clocks::deadline(&clock, &running, &SlaPolicy::default(), &Calendar::official())
    }

    fn answer(
        cell: &mut StatsCell,
        start: DateTime<Utc>,
        due: Option<DateTime<Utc>>,
        stop: Option<(DateTime<Utc>, &str)>,
        answering: &[&str],
        breached: bool,
    ) {
        let in_time = |at: DateTime<Utc>| due.is_none_or(|d| at <= d);
        match stop {
            Some((at, by)) if answering.contains(&by) => {
                cell.answered += 1;
                cell.answer_seconds += (at - start).num_seconds();
                if in_time(at) {
                    cell.on_time += 1
                } else {
                    cell.late += 1
                }
            }
            Some((at, _)) if !in_time(at) => cell.late += 1,
            Some(_) => cell.pending += 1,
            None if breached => cell.late += 1,
            None => cell.pending += 1,
        }
    }

    fn rate_with(cell: &mut StatsCell, s: Option<Satisfaction>) {
        if let Some(s) = s {
            cell.rated += 1;
            match s {
                Satisfaction::Satisfied => cell.satisfied += 1,
                Satisfaction::BasicallySatisfied => cell.basically_satisfied += 1,
                Satisfaction::Unsatisfied => cell.unsatisfied += 1,
            }
        }
    }

    pub type Rows = BTreeMap<(StatsDimension, String), StatsCell>;

    fn add(rows: &mut Rows, dimension: StatsDimension, unit: &str, cell: &StatsCell) {
        rows.entry((dimension, unit.to_owned())).or_default().add(cell, 1);
    }

    pub fn recompute(cases: &[Vec<Event>]) -> Rows {
        let mut rows = Rows::new();
        for events in cases {
            match events.first().map(|e| &e.body) {
                Some(EventBody::WhistleRaised { .. }) => whistle(events, &mut rows),
                Some(EventBody::FeedbackSubmitted { .. }) => feedback(events, &mut rows),
                _ => {}
            }
        }
        rows
    }

    fn whistle(events: &[Event], rows: &mut Rows) {
        let mut township = String::new();
        let mut parts: BTreeMap<String, Summons> = BTreeMap::new();
        let mut disputes: BTreeMap<String, Vec<Dispute>> = BTreeMap::new();
        let mut requested: BTreeMap<u32, (ClockRef, ExtensionSpan)> = BTreeMap::new();
        let mut breaches: Vec<ClockRef> = Vec::new();
        let (mut withdrawn, mut confirmed, mut reopened) = (false, false, 0);
        let mut whole: Option<Satisfaction> = None;
        // Duplicates: linked at the end counts nowhere; unlinked, as if never linked.
        let mut linked = false;
        let mut proposals: BTreeMap<u32, (String, String)> = BTreeMap::new();
        let summon = |parts: &mut BTreeMap<String, Summons>, d: &str, at| {
            let part = parts.entry(d.to_owned()).or_default();
            *part = Summons { start: Some(at), status: "summoned", declines: part.declines, ..Summons::default() };
        };
        for e in events {
            match &e.body {
                EventBody::WhistleRaised { township: t, departments, .. } => {
                    township = t.clone();
                    for d in departments {
                        summon(&mut parts, d, e.at);
                    }
                }
                EventBody::DepartmentsAdded { departments } => {
                    for d in departments {
                        summon(&mut parts, d, e.at);
                    }
                }
                EventBody::DepartmentAcknowledged { department } => {
                    let p = parts.get_mut(department).unwrap();
                    p.status = "acknowledged";
                    p.stop = Some((e.at, "ack"));
                }
                EventBody::DepartmentDeclined { department, .. } => {
                    let p = parts.get_mut(department).unwrap();
                    p.status = "declined";
                    p.declines += 1;
                    p.stop = Some((e.at, "decline"));
                    disputes.entry(department.clone()).or_default().push(Dispute {
                        start: e.at,
                        extensions: Vec::new(),
                        stop: None,
                        breached_due: Vec::new(),
                    });
                }
                EventBody::DepartmentsAssigned { departments, settles } => {
                    for s in settles {
                        if let Some(d) = disputes.get_mut(s).and_then(|v| v.last_mut()).filter(|d| d.stop.is_none()) {
                            d.stop = Some((e.at, "assigned"));
                        }
                        parts.get_mut(s).unwrap().status = "released";
                    }
                    for d in departments {
                        if parts.get(d).is_none_or(|p| p.status == "released") {
                            summon(&mut parts, d, e.at);
                        }
                    }
                }
                EventBody::DepartmentHandled { department, .. } => {
                    parts.get_mut(department).unwrap().status = "handled"
                }
                EventBody::MarkedDuplicate { .. } => linked = true,
                EventBody::DuplicateUnlinked {} => linked = false,
                EventBody::HandOverProposed { number, from, to, .. } => {
                    proposals.insert(*number, (from.clone(), to.clone()));
                }
                EventBody::HandOverAccepted { .. } | EventBody::DepartmentReassigned { .. } => {
                    let (from, to) = match &e.body {
                        EventBody::HandOverAccepted { number } => proposals[number].clone(),
                        EventBody::DepartmentReassigned { from, to, .. } => (from.clone(), to.clone()),
                        _ => unreachable!(),
                    };
                    // Reassigning a department that declined settles its dispute.
                    if let Some(d) = disputes.get_mut(&from).and_then(|v| v.last_mut()).filter(|d| d.stop.is_none()) {
                        d.stop = Some((e.at, "assigned"));
                    }
                    parts.get_mut(&from).unwrap().status = "released";
                    summon(&mut parts, &to, e.at);
                }
                EventBody::WhistleReopened { .. } => {
                    reopened += 1;
                    for p in parts.values_mut().filter(|p| p.status == "handled") {
                        p.status = "acknowledged";
                    }
                }
                EventBody::WhistleWithdrawn { .. } => {
                    withdrawn = true;
                    for p in parts.values_mut().filter(|p| p.status == "summoned" && p.stop.is_none()) {
                        p.stop = Some((e.at, "withdrawn"));
                    }
                    for d in disputes.values_mut().flat_map(|v| v.iter_mut()).filter(|d| d.stop.is_none()) {
                        d.stop = Some((e.at, "withdrawn"));
                    }
                }
                EventBody::WhistleConfirmed { satisfaction, ratings } => {
                    confirmed = true;
                    whole = Some(*satisfaction);
                    for (d, s) in ratings {
                        parts.get_mut(d).unwrap().rating = Some(*s);
                    }
                }
                EventBody::ExtensionRequested { number, clock, span, .. } => {
                    requested.insert(*number, (clock.clone(), *span));
                }
                EventBody::ExtensionApproved { number } => {
                    let Some((clock, span)) = requested.get(number).cloned() else { continue };
                    let d = clock.department.clone().unwrap_or_default();
                    match clock.kind {
                        ClockKind::Ack => {
                            if let Some(p) = parts.get_mut(&d).filter(|p| p.status == "summoned" && p.stop.is_none()) {
                                p.extensions.push(span);
                            }
                        }
                        ClockKind::Dispute => {
                            if let Some(x) =
                                disputes.get_mut(&d).and_then(|v| v.last_mut()).filter(|x| x.stop.is_none())
                            {
                                x.extensions.push(span);
                            }
                        }
                        _ => {}
                    }
                }
                EventBody::SlaBreached { clock, due_at } => {
                    breaches.push(clock.clone());
                    let d = clock.department.clone().unwrap_or_default();
                    match clock.kind {
                        ClockKind::Ack => {
                            if let Some(p) = parts.get_mut(&d).filter(|p| p.status == "summoned" && p.stop.is_none()) {
                                p.breached_due.push(*due_at);
                            }
                        }
                        ClockKind::Dispute => {
                            if let Some(x) =
                                disputes.get_mut(&d).and_then(|v| v.last_mut()).filter(|x| x.stop.is_none())
                            {
                                x.breached_due.push(*due_at);
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if linked {
            let none = StatsCell { cases: 1, excluded: 1, ..StatsCell::default() };
            for d in parts.keys() {
                add(rows, StatsDimension::Department, d, &none);
            }
            let t = StatsCell { cases: 1, excluded: parts.len() as i64, ..StatsCell::default() };
            add(rows, StatsDimension::Township, &township, &t);
            return;
        }
        let mut t = StatsCell {
            cases: 1,
            resolution_base: i64::from(!withdrawn),
            resolved: i64::from(confirmed),
            reopened,
            ..StatsCell::default()
        };
        for (d, p) in &parts {
            let start = p.start.unwrap();
            let due_at = due(ClockKind::Ack, Some(d), start, &p.extensions);
            let own = breaches
                .iter()
                .filter(|c| {
                    c.department.as_deref() == Some(d.as_str())
                        && matches!(c.kind, ClockKind::Ack | ClockKind::WhistleResolve)
                })
                .count() as i64;
            let mut cell = StatsCell { cases: 1, declined: p.declines, breaches: own, ..StatsCell::default() };
            let withdrawn_open = withdrawn
                && (p.status == "declined"
                    || (p.status == "summoned" && p.stop.is_none_or(|(at, _)| due_at.is_none_or(|due| at <= due))));
            if p.status == "released" || withdrawn_open {
                cell.excluded = 1;
            } else {
                cell.response_base = 1;
                cell.resolution_base = 1;
                if p.status == "declined" {
                    cell.pending = 1;
                } else {
                    let breached = due_at.is_some_and(|due| p.breached_due.contains(&due));
                    let stop = p.stop.filter(|(_, by)| *by != "decline");
                    answer(&mut cell, start, due_at, stop, &["ack"], breached);
                }
                if p.status == "handled" {
                    cell.resolved = 1;
                    cell.reopened = reopened;
                    if confirmed {
                        rate_with(&mut cell, p.rating.or(whole));
                    }
                }
            }
            let mut into_township = cell.clone();
            into_township.cases = 0;
            into_township.resolution_base = 0;
            into_township.resolved = 0;
            into_township.reopened = 0;
            t.add(&into_township, 1);
            add(rows, StatsDimension::Department, d, &cell);
        }
        add(rows, StatsDimension::Township, &township, &t);
        let all: Vec<&Dispute> = disputes.values().flatten().collect();
        if !all.is_empty() {
            let mut c = StatsCell {
                breaches: breaches.iter().filter(|c| c.kind == ClockKind::Dispute).count() as i64,
                ..StatsCell::default()
            };
            for (d, list) in &disputes {
                for x in list {
                    c.cases += 1;
                    let due_at = due(ClockKind::Dispute, Some(d), x.start, &x.extensions);
                    if matches!(x.stop, Some((at, "withdrawn")) if due_at.is_none_or(|due| at <= due)) {
                        c.excluded += 1;
                        continue;
                    }
                    c.response_base += 1;
                    let breached = due_at.is_some_and(|due| x.breached_due.contains(&due));
                    answer(&mut c, x.start, due_at, x.stop, &["assigned"], breached);
                }
            }
            add(rows, StatsDimension::Coordinator, "", &c);
        }
    }

    fn feedback(events: &[Event], rows: &mut Rows) {
        let opened = events[0].at;
        let EventBody::FeedbackSubmitted { topic, .. } = &events[0].body else { return };
        let mut reply_stop: Option<(DateTime<Utc>, &str)> = None;
        let mut reply_ext: Vec<ExtensionSpan> = Vec::new();
        let mut reply_breached: Vec<DateTime<Utc>> = Vec::new();
        let mut resolve_start = opened;
        let mut resolve_ext: Vec<ExtensionSpan> = Vec::new();
        let mut resolve_stop: Option<DateTime<Utc>> = None;
        let mut requested: BTreeMap<u32, (ClockRef, ExtensionSpan)> = BTreeMap::new();
        let (mut resolved, mut reopened, mut breaches) = (false, 0, 0);
        let mut rating = None;
        let mut linked = false;
        for e in events {
            match &e.body {
                EventBody::MarkedDuplicate { .. } => linked = true,
                EventBody::DuplicateUnlinked {} => linked = false,
                EventBody::FeedbackReplied { .. } | EventBody::FeedbackResolved { .. } => {
                    if reply_stop.is_none() {
                        reply_stop = Some((e.at, "answered"));
                    }
                    if matches!(e.body, EventBody::FeedbackResolved { .. }) {
                        resolved = true;
                        resolve_stop = Some(e.at);
                    }
                }
                EventBody::FeedbackRated { satisfaction } => rating = Some(*satisfaction),
                EventBody::FeedbackReopened { .. } => {
                    reopened += 1;
                    resolved = false;
                    resolve_start = e.at;
                    resolve_ext.clear();
                    resolve_stop = None;
                }
                EventBody::ExtensionRequested { number, clock, span, .. } => {
                    requested.insert(*number, (clock.clone(), *span));
                }
                EventBody::ExtensionApproved { number } => match requested.get(number) {
                    Some((c, span)) if c.kind == ClockKind::FeedbackReply && reply_stop.is_none() => {
                        reply_ext.push(*span)
                    }
                    Some((c, span)) if c.kind == ClockKind::FeedbackResolve && resolve_stop.is_none() => {
                        resolve_ext.push(*span)
                    }
                    _ => {}
                },
                EventBody::SlaBreached { clock, due_at } => {
                    breaches += 1;
                    if clock.kind == ClockKind::FeedbackReply && reply_stop.is_none() {
                        reply_breached.push(*due_at);
                    }
                }
                _ => {}
            }
        }
        if linked {
            let none = StatsCell { cases: 1, excluded: 1, ..StatsCell::default() };
            add(rows, StatsDimension::Office, "", &none);
            add(rows, StatsDimension::Topic, topic.label_zh(), &none);
            return;
        }
        let mut cell =
            StatsCell { cases: 1, response_base: 1, resolution_base: 1, reopened, breaches, ..StatsCell::default() };
        let reply_due = due(ClockKind::FeedbackReply, None, opened, &reply_ext);
        let breached = reply_due.is_some_and(|d| reply_breached.contains(&d));
        answer(&mut cell, opened, reply_due, reply_stop, &["answered"], breached);
        if resolved {
            let resolve_due = due(ClockKind::FeedbackResolve, None, resolve_start, &resolve_ext);
            if resolve_stop.is_some_and(|at| resolve_due.is_some_and(|d| at > d)) {
                cell.resolved_late = 1;
            } else {
                cell.resolved = 1;
            }
        }
        rate_with(&mut cell, rating);
        add(rows, StatsDimension::Office, "", &cell);
        add(rows, StatsDimension::Topic, topic.label_zh(), &cell);
    }
}

/// Plays random steps on a case, with the watchdog recording breaches as time passes.
fn lifecycle(n: u128, steps: &[(u8, u8, u8, u16)]) -> Vec<Event> {
    let case_id = Uuid::from_u128(n);
    let mut now = DateTime::parse_from_rfc3339("2026-09-28T16:30:00+08:00").unwrap().with_timezone(&Utc);
    let mut state = State::Empty;
    let mut events: Vec<Event> = Vec::new();
    let policy = SlaPolicy::default();
    let calendar = Calendar::official();
    for (i, (op, who, p, minutes)) in steps.iter().enumerate() {
        now += Duration::minutes(i64::from(*minutes));
        let mut commands = Vec::new();
        // The watchdog first: every deadline that has passed gets its breach.
        for clock in armed_clocks(&state, &policy, &calendar).unwrap_or_default() {
            let breached = state
                .clocks()
                .and_then(|c| c.get(&clock.clock))
                .is_some_and(|r| r.has_alerted(AlertStage::Breach, clock.due_at));
            if clock.due_at <= now && !breached {
                commands.push((
                    Actor::system(),
                    CommandBody::RecordSlaBreach { clock: clock.clock, due_at: clock.due_at },
                    None,
                ));
            }
        }
        // Only the random SLA steps that record breaches are left out: the watchdog does that.
        let (actor, body, code) = lifecycle::command(&state, *op, *who, *p);
        if !matches!(
            body,
            CommandBody::RecordSlaBreach { .. }
                | CommandBody::RecordSlaWarning { .. }
                | CommandBody::RecordSlaEscalation { .. }
        ) {
            commands.push((actor, body, code));
        }
        for (k, (actor, body, code)) in commands.into_iter().enumerate() {
            let cmd = Command {
                command_id: Uuid::from_u128((n << 32) + (i as u128) * 16 + k as u128),
                case_id,
                actor,
                follow_up_code: code,
                body,
            };
            if let Ok(new) = decide(&state, &cmd, now) {
                for e in new {
                    state = evolve(state, &e);
                    events.push(e);
                }
            }
        }
    }
    events
}

fn steps() -> impl Strategy<Value = Vec<(u8, u8, u8, u16)>> {
    proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), 0u16..2400), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_row_equals_a_recomputation_from_the_event_histories(
        openings in proptest::collection::vec(0u8..2, 1..6),
        plays in proptest::collection::vec(steps(), 6),
    ) {
        let cases: Vec<Vec<Event>> = openings
            .iter()
            .zip(&plays)
            .enumerate()
            .map(|(n, (first, steps))| {
                let opening = (*first, 0u8, 5u8, 0u16);
                lifecycle(n as u128 + 1, &std::iter::once(opening).chain(steps.iter().copied()).collect::<Vec<_>>())
            })
            .collect();
        let expected = oracle::recompute(&cases);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let refs: Vec<&[Event]> = cases.iter().map(Vec::as_slice).collect();
        let ledger = runtime.block_on(Ledger::of(&refs));
        for dimension in StatsDimension::ALL {
            let actual = ledger.stats(dimension);
            let wanted: BTreeMap<String, StatsCell> = expected
                .iter()
                .filter(|((d, _), _)| *d == dimension)
                .map(|((_, unit), cell)| (unit.clone(), cell.clone()))
                .filter(|(_, cell)| !cell.is_empty())
                .collect();
            prop_assert_eq!(&actual, &wanted, "{:?}", dimension);
            for cell in actual.values() {
                for rate in cell.rates().into_iter().flatten() {
                    prop_assert!((0.0..=1.0).contains(&rate), "{:?}", cell);
                }
                prop_assert!(cell.on_time + cell.late + cell.pending == cell.response_base, "{:?}", cell);
            }
            // The 通报's order: by 响应率, 解决率, 满意率 (exactly, as fractions), nothing counted last.
            let ranked = whistle::reports::rank(actual.into_iter().collect(), &BTreeMap::new());
            for pair in ranked.windows(2) {
                let key = |c: &StatsCell| {
                    let r = c.rates();
                    (r[0].map_or(-1.0, |x| x), r[1].map_or(-1.0, |x| x), r[2].map_or(-1.0, |x| x))
                };
                let (a, b) = (key(&pair[0].cell), key(&pair[1].cell));
                prop_assert!(a >= b, "{:?} ranked before {:?}", pair[0].unit, pair[1].unit);
                prop_assert!(pair[0].rank <= pair[1].rank);
                prop_assert!(pair[0].rank == pair[1].rank || a > b || pair[0].cell.breaches <= pair[1].cell.breaches);
            }
            prop_assert!(ranked.first().is_none_or(|r| r.rank == 1));
        }
    }
}
