//! Working-day calendar, SLA policy and armed clocks.

#[path = "support/domain.rs"]
mod support;

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use support::*;
use whistle::domain::calendar::{beijing, Calendar, YearSchedule};
use whistle::domain::command::CommandBody;
use whistle::domain::event::{ClockKind, ClockRef, ExtensionSpan};
use whistle::domain::policy::{SlaPolicy, Target};
use whistle::domain::{armed_clocks, ArmedClock};

fn due(from: &str, n: u32) -> (String, bool) {
    let d = Calendar::official().working_days_after(at(from), n).unwrap();
    (d.to_beijing_rfc3339(), d.provisional)
}

#[test]
fn design_example_friday_plus_three_counts_the_sunday_make_up_day() {
    assert_eq!(due("2026-09-18T10:00:00+08:00", 3), ("2026-09-23T00:00:00+08:00".into(), false));
}

#[test]
fn the_date_of_the_start_is_not_counted_whatever_the_time() {
    // Monday 2026-03-02 at 00:00 and at 23:59:59 both end on Tuesday night.
    assert_eq!(due("2026-03-02T00:00:00+08:00", 1).0, "2026-03-04T00:00:00+08:00");
    assert_eq!(due("2026-03-02T23:59:59+08:00", 1).0, "2026-03-04T00:00:00+08:00");
    // 16:00 UTC is already the next Beijing day.
    assert_eq!(due("2026-03-02T16:00:00Z", 1).0, "2026-03-05T00:00:00+08:00");
    assert_eq!(due("2026-03-02T15:59:59Z", 1).0, "2026-03-04T00:00:00+08:00");
}

#[test]
fn holiday_blocks_are_skipped() {
    // Spring Festival 2026: 02-15..02-23 off, 02-14 (Sat) and 02-28 (Sat) working.
    assert_eq!(due("2026-02-13T09:00:00+08:00", 1).0, "2026-02-15T00:00:00+08:00", "Sat 02-14 is a make-up day");
    assert_eq!(due("2026-02-14T09:00:00+08:00", 1).0, "2026-02-25T00:00:00+08:00", "next working day is Tue 02-24");
    assert_eq!(due("2026-02-14T09:00:00+08:00", 4).0, "2026-02-28T00:00:00+08:00");
    assert_eq!(due("2026-02-14T09:00:00+08:00", 5).0, "2026-03-01T00:00:00+08:00", "Sat 02-28 is a make-up day");
    // National Day 2025: 10-01..10-08 off, 09-28 (Sun) and 10-11 (Sat) working.
    assert_eq!(due("2025-09-26T18:00:00+08:00", 1).0, "2025-09-29T00:00:00+08:00");
    assert_eq!(due("2025-09-30T18:00:00+08:00", 1).0, "2025-10-10T00:00:00+08:00");
    assert_eq!(due("2025-09-30T18:00:00+08:00", 2).0, "2025-10-11T00:00:00+08:00");
    assert_eq!(due("2025-09-30T18:00:00+08:00", 3).0, "2025-10-12T00:00:00+08:00", "Sat 10-11 is a make-up day");
    // Mid-Autumn 2026 (09-25..27) then National Day (10-01..07), 10-10 (Sat) working.
    assert_eq!(due("2026-09-24T12:00:00+08:00", 3).0, "2026-10-01T00:00:00+08:00");
    assert_eq!(due("2026-09-30T12:00:00+08:00", 1).0, "2026-10-09T00:00:00+08:00");
}

#[test]
fn year_boundaries() {
    // 2024-12-31 is before any loaded year, but only days after it count: 2025-01-01 is a holiday.
    assert_eq!(due("2024-12-31T10:00:00+08:00", 1), ("2025-01-03T00:00:00+08:00".into(), false));
    // 2025-12-31 -> 2026-01-01..03 off, Sun 01-04 working.
    assert_eq!(due("2025-12-31T10:00:00+08:00", 1), ("2026-01-05T00:00:00+08:00".into(), false));
    // Into 2027, which has no published schedule yet: weekday rule, provisional.
    assert_eq!(due("2026-12-30T10:00:00+08:00", 3), ("2027-01-05T00:00:00+08:00".into(), true));
    assert_eq!(due("2026-12-30T10:00:00+08:00", 1), ("2027-01-01T00:00:00+08:00".into(), false), "only 12-31 counted");
}

#[test]
fn a_newly_loaded_year_makes_deadlines_exact() {
    let mut calendar = Calendar::official();
    let schedule = YearSchedule::from_toml(
        r#"
        year = 2027
        notice = "test notice"
        holidays = [{ name = "元旦", from = "2027-01-01", to = "2027-01-03" }]
        workdays = []
        "#,
    )
    .unwrap();
    calendar.load(&schedule);
    let d = calendar.working_days_after(at("2026-12-30T10:00:00+08:00"), 3).unwrap();
    assert_eq!(d.to_beijing_rfc3339(), "2027-01-06T00:00:00+08:00");
    assert!(!d.provisional);
}

#[test]
fn malformed_schedules_are_refused() {
    let bad = [
        ("year = 2027\nnotice = \"n\"\nholidays = []\nworkdays = [\"2027-01-06\"]", "not a weekend day"),
        ("year = 2027\nnotice = \"n\"\nholidays = []\nworkdays = [\"2028-01-01\"]", "not within 2027"),
        ("year = 2027\nnotice = \"\"\nholidays = []\nworkdays = []", "notice"),
        (
            "year = 2027\nnotice = \"n\"\nholidays = [{ name = \"x\", from = \"2027-02-03\", to = \"2027-02-01\" }]\nworkdays = []",
            "ends before it starts",
        ),
        (
            "year = 2027\nnotice = \"n\"\nholidays = [{ name = \"x\", from = \"2027-01-02\", to = \"2027-01-03\" }]\nworkdays = [\"2027-01-02\"]",
            "both a holiday and a make-up working day",
        ),
        ("year = 2027\nnotice = \"n\"\nholidays = []\nworkdays = []\nextra = 1", "unknown field"),
    ];
    for (text, words) in bad {
        let err = YearSchedule::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(words), "{err:?} should say {words:?}");
    }
}

#[test]
fn zero_working_days_is_an_error() {
    assert!(Calendar::official().working_days_after(at("2026-01-05T10:00:00+08:00"), 0).is_err());
}

// ----------------------------------------------------------------------------- independent oracle

/// The official schedules, typed in again from DESIGN.md rather than read from the data files.
const HOLIDAYS: &[(&str, &str)] = &[
    ("2025-01-01", "2025-01-01"),
    ("2025-01-28", "2025-02-04"),
    ("2025-04-04", "2025-04-06"),
    ("2025-05-01", "2025-05-05"),
    ("2025-05-31", "2025-06-02"),
    ("2025-10-01", "2025-10-08"),
    ("2026-01-01", "2026-01-03"),
    ("2026-02-15", "2026-02-23"),
    ("2026-04-04", "2026-04-06"),
    ("2026-05-01", "2026-05-05"),
    ("2026-06-19", "2026-06-21"),
    ("2026-09-25", "2026-09-27"),
    ("2026-10-01", "2026-10-07"),
];
const MAKE_UP: &[&str] = &[
    "2025-01-26",
    "2025-02-08",
    "2025-04-27",
    "2025-09-28",
    "2025-10-11",
    "2026-01-04",
    "2026-02-14",
    "2026-02-28",
    "2026-05-09",
    "2026-09-20",
    "2026-10-10",
];

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Every working day from 2025 to 2027, the weekday rule in 2027, in order.
fn working_days() -> Vec<NaiveDate> {
    let mut off = BTreeSet::new();
    for (from, to) in HOLIDAYS {
        let mut x = d(from);
        while x <= d(to) {
            off.insert(x);
            x = x.succ_opt().unwrap();
        }
    }
    let on: BTreeSet<NaiveDate> = MAKE_UP.iter().map(|s| d(s)).collect();
    let mut out = Vec::new();
    let mut x = d("2025-01-01");
    while x <= d("2027-12-31") {
        let weekend = matches!(x.weekday(), Weekday::Sat | Weekday::Sun);
        if on.contains(&x) || (!weekend && !off.contains(&x)) {
            out.push(x);
        }
        x = x.succ_opt().unwrap();
    }
    out
}

#[test]
fn every_start_date_of_2025_and_2026_matches_the_official_schedules() {
    let calendar = Calendar::official();
    let days = working_days();
    let last_known = d("2026-12-31");
    let mut start = d("2025-01-01");
    let mut checked = 0;
    while start <= last_known {
        for n in [1u32, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 30] {
            let first_after = days.partition_point(|w| *w <= start);
            let nth = days[first_after + n as usize - 1];
            let expected_due =
                beijing().from_local_datetime(&(nth + Duration::days(1)).and_hms_opt(0, 0, 0).unwrap()).unwrap();
            let expected_provisional = nth > last_known;
            for (h, m, s) in [(0, 0, 0), (9, 30, 0), (23, 59, 59)] {
                let t =
                    beijing().from_local_datetime(&start.and_hms_opt(h, m, s).unwrap()).unwrap().with_timezone(&Utc);
                let got = calendar.working_days_after(t, n).unwrap();
                assert_eq!(got.due_at, expected_due.with_timezone(&Utc), "from {t} + {n}");
                assert_eq!(got.provisional, expected_provisional, "provisional from {t} + {n}");
                checked += 1;
            }
        }
        start = start.succ_opt().unwrap();
    }
    assert_eq!(checked, 730 * 12 * 3);
}

// ----------------------------------------------------------------------------- policy

#[test]
fn the_default_policy_is_the_design_table() {
    let p = SlaPolicy::default();
    assert_eq!(p.clock(ClockKind::Ack).target, Target::Natural(std::time::Duration::from_secs(86_400)));
    assert_eq!(p.clock(ClockKind::Dispute).target, Target::WorkingDays(3));
    assert_eq!(p.clock(ClockKind::FeedbackReply).target, Target::WorkingDays(3));
    assert_eq!(p.clock(ClockKind::FeedbackResolve).target, Target::WorkingDays(7));
    assert!(!p.clock(ClockKind::WhistleResolve).enabled);
    assert_eq!(p.clock(ClockKind::Ack).warn_at_percent, Some(75));
}

#[test]
fn a_policy_file_sets_short_clocks_for_demos() {
    let p = SlaPolicy::from_toml(
        r#"
        warn_at_percent = 50
        escalate_after = "30s"
        [clocks.ack]
        target = "90s"
        [clocks.whistle_resolve]
        enabled = true
        working_days = 5
        never_escalate = true
        "#,
    )
    .unwrap();
    let ack = p.clock(ClockKind::Ack);
    assert_eq!(ack.target, Target::Natural(std::time::Duration::from_secs(90)));
    assert_eq!(ack.warn_at_percent, Some(50));
    assert_eq!(ack.escalate_after, Some(std::time::Duration::from_secs(30)));
    let resolve = p.clock(ClockKind::WhistleResolve);
    assert!(resolve.enabled);
    assert_eq!(resolve.target, Target::WorkingDays(5));
    assert_eq!(resolve.escalate_after, None);
    assert_eq!(p.clock(ClockKind::FeedbackResolve).target, Target::WorkingDays(7), "unnamed clocks keep defaults");
}

#[test]
fn bad_policy_files_say_what_is_wrong() {
    let cases = [
        ("[clocks.ack]\ntarget = \"soon\"", "not a duration"),
        ("[clocks.ack]\ntarget = \"24h\"\nworking_days = 1", "either target or working_days"),
        ("[clocks.acknowledge]\ntarget = \"24h\"", "unknown clock \"acknowledge\""),
        ("[clocks.dispute]\nworking_days = 0", "at least 1"),
        ("warn_at_percent = 120", "0 (never warn) to 99"),
        ("[clocks.ack]\ntarget = \"0s\"", "longer than zero"),
        ("[clocks.ack]\ntarget = \"400d\"", "longer than a year"),
        ("[clocks.ack]\ntarge = \"24h\"", "unknown field"),
    ];
    for (text, words) in cases {
        let err = SlaPolicy::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(words), "{err:?} should say {words:?}");
    }
}

// ----------------------------------------------------------------------------- armed clocks

fn armed(spec: &Spec, policy: &SlaPolicy) -> Vec<ArmedClock> {
    armed_clocks(&spec.state, policy, &Calendar::official()).unwrap()
}

fn one(clocks: &[ArmedClock], clock: &ClockRef) -> ArmedClock {
    clocks.iter().find(|c| &c.clock == clock).cloned().unwrap_or_else(|| panic!("{clock} not armed in {clocks:?}"))
}

#[test]
fn an_ack_clock_is_due_24_natural_hours_after_summons_and_warns_at_75_percent() {
    let spec = Spec::starting(at("2026-02-13T17:00:00+08:00")).given(township(), raise(&[HOUSING]));
    let c = one(&armed(&spec, &SlaPolicy::default()), &ClockRef::for_department(ClockKind::Ack, HOUSING));
    assert_eq!(c.due_at, at("2026-02-14T17:00:00+08:00"), "natural hours ignore holidays");
    assert_eq!(c.warn_at, Some(at("2026-02-14T11:00:00+08:00")));
    assert_eq!(c.escalate_at, Some(at("2026-02-15T17:00:00+08:00")));
    assert!(!c.provisional);
}

#[test]
fn feedback_clocks_count_working_days() {
    let spec = Spec::starting(at("2026-09-18T10:00:00+08:00")).given(township(), submit(false));
    let clocks = armed(&spec, &SlaPolicy::default());
    assert_eq!(one(&clocks, &ClockRef::case_wide(ClockKind::FeedbackReply)).due_at, at("2026-09-23T00:00:00+08:00"));
    // Sun 20 (make-up), Mon 21, Tue 22, Wed 23, Thu 24, (25-27 Mid-Autumn), Mon 28, Tue 29.
    assert_eq!(one(&clocks, &ClockRef::case_wide(ClockKind::FeedbackResolve)).due_at, at("2026-09-30T00:00:00+08:00"));
}

#[test]
fn a_dispute_clock_counts_three_working_days() {
    let spec = Spec::starting(at("2026-04-03T16:00:00+08:00"))
        .given(township(), raise(&[HOUSING]))
        .given(department(HOUSING), CommandBody::DeclineSummons { reason: "x".into() });
    let c = one(&armed(&spec, &SlaPolicy::default()), &ClockRef::for_department(ClockKind::Dispute, HOUSING));
    // Fri 04-03; 04-04..06 Qingming; Tue 07, Wed 08, Thu 09.
    assert_eq!(c.due_at, at("2026-04-10T00:00:00+08:00"));
}

#[test]
fn disabled_clocks_are_not_armed_and_enabled_ones_are() {
    let spec = Spec::whistle(&[HOUSING]).given(department(HOUSING), CommandBody::AcknowledgeSummons);
    assert!(armed(&spec, &SlaPolicy::default()).is_empty(), "whistle_resolve is off by default");
    let on = SlaPolicy::from_toml("[clocks.whistle_resolve]\nenabled = true\nworking_days = 2").unwrap();
    let clocks = armed(&spec, &on);
    assert_eq!(clocks.len(), 1);
    assert_eq!(clocks[0].clock, ClockRef::for_department(ClockKind::WhistleResolve, HOUSING));
}

#[test]
fn approved_extensions_move_the_deadline() {
    let ack = ClockRef::for_department(ClockKind::Ack, HOUSING);
    let spec = Spec::starting(at("2026-03-02T09:00:00+08:00"))
        .given(township(), raise(&[HOUSING]))
        .given(
            department(HOUSING),
            CommandBody::RequestExtension { clock: ack.clone(), span: ExtensionSpan::Hours(12), reason: "r".into() },
        )
        .given(supervisor(), CommandBody::ApproveExtension { number: 1 });
    let c = one(&armed(&spec, &SlaPolicy::default()), &ack);
    assert_eq!(c.due_at, at("2026-03-03T21:00:00+08:00"));
    assert_eq!(c.warn_at, Some(at("2026-03-03T12:00:00+08:00")), "75 % of the extended span");

    let reply = ClockRef::case_wide(ClockKind::FeedbackReply);
    let spec = Spec::starting(at("2026-09-18T10:00:00+08:00"))
        .given(township(), submit(false))
        .given(
            office(),
            CommandBody::RequestExtension {
                clock: reply.clone(),
                span: ExtensionSpan::WorkingDays(2),
                reason: "r".into(),
            },
        )
        .given(supervisor(), CommandBody::ApproveExtension { number: 1 });
    // Due end of Tue 09-22; two more working days: Wed 23, Thu 24.
    assert_eq!(one(&armed(&spec, &SlaPolicy::default()), &reply).due_at, at("2026-09-25T00:00:00+08:00"));

    let refused = Spec::starting(at("2026-09-18T10:00:00+08:00"))
        .given(township(), submit(false))
        .given(
            office(),
            CommandBody::RequestExtension {
                clock: reply.clone(),
                span: ExtensionSpan::WorkingDays(2),
                reason: "r".into(),
            },
        )
        .given(supervisor(), CommandBody::RefuseExtension { number: 1, reason: None });
    assert_eq!(one(&armed(&refused, &SlaPolicy::default()), &reply).due_at, at("2026-09-23T00:00:00+08:00"));
}

#[test]
fn reopened_feedback_gets_a_fresh_resolve_deadline() {
    let resolve = ClockRef::case_wide(ClockKind::FeedbackResolve);
    let spec = Spec::starting(at("2026-03-02T09:00:00+08:00"))
        .given(township(), submit(false))
        .given(office(), CommandBody::ResolveFeedback { summary: "s".into() })
        .after(Duration::days(7))
        .given(township(), CommandBody::ReopenFeedback { reason: "r".into() });
    let c = one(&armed(&spec, &SlaPolicy::default()), &resolve);
    assert_eq!(c.started_at, at("2026-03-09T09:02:00+08:00"));
    assert_eq!(c.due_at, at("2026-03-19T00:00:00+08:00"));
}

#[test]
fn deadlines_in_an_unpublished_year_are_provisional() {
    let spec = Spec::starting(at("2026-12-28T10:00:00+08:00")).given(township(), submit(false));
    let clocks = armed(&spec, &SlaPolicy::default());
    assert!(!one(&clocks, &ClockRef::case_wide(ClockKind::FeedbackReply)).provisional);
    let resolve = one(&clocks, &ClockRef::case_wide(ClockKind::FeedbackResolve));
    assert!(resolve.provisional);
    assert_eq!(resolve.due_at, at("2027-01-07T00:00:00+08:00"));
}

#[test]
fn closed_cases_arm_nothing() {
    let spec = Spec::whistle(&[HOUSING]).given(township(), CommandBody::WithdrawWhistle { reason: None });
    assert!(armed(&spec, &SlaPolicy::default()).is_empty());
    let _: DateTime<Utc> = spec.now;
}

#[test]
fn next_alert_walks_warning_breach_escalation_for_the_current_deadline() {
    use whistle::domain::clocks::next_alert;
    use whistle::domain::event::AlertStage;
    let ack = ClockRef::for_department(ClockKind::Ack, HOUSING);
    let spec = Spec::starting(at("2026-03-02T09:00:00+08:00")).given(township(), raise(&[HOUSING]));
    let running = |s: &Spec| match &s.state {
        whistle::domain::State::Whistle(c) => c.clocks[&ack].clone(),
        _ => unreachable!(),
    };
    let c = one(&armed(&spec, &SlaPolicy::default()), &ack);
    assert_eq!(next_alert(&c, &running(&spec)), Some((AlertStage::Warning, at("2026-03-03T03:00:00+08:00"))));
    let due = c.due_at;
    let spec = spec.after(Duration::hours(19)).given(
        system(),
        CommandBody::RecordSlaWarning { clock: ack.clone(), due_at: due, warn_at: c.warn_at.unwrap() },
    );
    assert_eq!(next_alert(&c, &running(&spec)), Some((AlertStage::Breach, due)));
    let spec = spec
        .after(Duration::hours(6))
        .given(system(), CommandBody::RecordSlaBreach { clock: ack.clone(), due_at: due });
    assert_eq!(next_alert(&c, &running(&spec)), Some((AlertStage::Escalation, due + Duration::hours(24))));
    let spec = spec
        .after(Duration::hours(24))
        .given(system(), CommandBody::RecordSlaEscalation { clock: ack.clone(), due_at: due, level: 2 });
    assert_eq!(next_alert(&c, &running(&spec)), None);
    // An extension gives a new deadline, and the cycle starts again for it.
    let spec = spec
        .given(
            department(HOUSING),
            CommandBody::RequestExtension { clock: ack.clone(), span: ExtensionSpan::Hours(72), reason: "r".into() },
        )
        .given(supervisor(), CommandBody::ApproveExtension { number: 1 });
    let moved = one(&armed(&spec, &SlaPolicy::default()), &ack);
    assert_eq!(moved.due_at, due + Duration::hours(72));
    assert_eq!(next_alert(&moved, &running(&spec)).map(|(s, _)| s), Some(AlertStage::Warning));
}

#[test]
fn the_ladder_climbs_one_rung_at_a_time_to_the_top_level_with_its_own_steps() {
    use whistle::domain::clocks::next_alert_level;
    use whistle::domain::event::AlertStage;
    let ack = ClockRef::for_department(ClockKind::Ack, HOUSING);
    let policy = SlaPolicy::from_toml("escalate_after = \"24h\"\nescalate_then = [\"48h\"]").unwrap().with_top_level(4);
    let spec = Spec::starting(at("2026-03-02T09:00:00+08:00")).given(township(), raise(&[HOUSING]));
    let running = |s: &Spec| match &s.state {
        whistle::domain::State::Whistle(c) => c.clocks[&ack].clone(),
        _ => unreachable!(),
    };
    let c = one(&armed(&spec, &policy), &ack);
    let due = c.due_at;
    assert_eq!(c.escalate_later, vec![due + Duration::hours(72), due + Duration::hours(120)], "48 h, and it repeats");
    let mut spec = spec
        .after(Duration::hours(25))
        .given(system(), CommandBody::RecordSlaBreach { clock: ack.clone(), due_at: due });
    for (level, after) in [(2u8, 24i64), (3, 72), (4, 120)] {
        assert_eq!(
            next_alert_level(&c, &running(&spec)),
            Some((AlertStage::Escalation, due + Duration::hours(after), level))
        );
        // Not before the rung below it is recorded.
        if level > 2 {
            let skipped = CommandBody::RecordSlaEscalation { clock: ack.clone(), due_at: due, level: level + 1 };
            let rejection = spec.then_rejected(system(), skipped);
            assert!(rejection.to_string().contains(&format!("level {level} yet")), "{rejection}");
        }
        spec = spec
            .after(Duration::hours(48))
            .given(system(), CommandBody::RecordSlaEscalation { clock: ack.clone(), due_at: due, level });
        // A repeat of a recorded rung records nothing.
        let repeat = CommandBody::RecordSlaEscalation { clock: ack.clone(), due_at: due, level };
        assert!(spec.when(system(), repeat).unwrap().is_empty());
    }
    assert_eq!(next_alert_level(&c, &running(&spec)), None, "the top is level 4");
    // The default ladder stops at level 2, as organisations without a third level expect.
    let c = one(&armed(&spec, &SlaPolicy::default()), &ack);
    assert!(c.escalate_later.is_empty());
    assert!(SlaPolicy::from_toml("escalate_then = [\"0s\"]").is_err());
}
