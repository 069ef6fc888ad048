//! Properties over random command sequences: the state evolved step by step equals a replay of
//! the stored events (also after a JSON round trip), and the case invariants hold throughout.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use uuid::Uuid;
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::event::*;
use whistle::domain::state::{PartStatus, WhistleStatus};
use whistle::domain::{armed_clocks, decide, evolve, Calendar, SlaPolicy, State};

const DEPARTMENTS: [&str; 4] = ["住建局", "城管局", "生态环境局", "交通局"];
const CODE: &str = "k7Qm-2xPz-9RtW-4vLc";

fn actor(i: u8) -> Actor {
    match i % 9 {
        0 => Actor::new(Role::Township, "东坝镇"),
        1 => Actor::new(Role::Township, "西湖街道"),
        2..=5 => Actor::new(Role::Department, DEPARTMENTS[usize::from(i % 9 - 2)]),
        6 => Actor::new(Role::Coordinator, "市委编办"),
        7 => Actor::new(Role::Office, "市减负办"),
        _ => Actor::new(Role::Supervisor, "市委督查室"),
    }
}

/// Mostly the actor who may do `op`, sometimes anyone, so refusals are exercised too.
fn actor_for(op: u8, who: u8) -> Actor {
    if who >= 220 {
        return actor(who);
    }
    match op % 24 {
        0 | 1 | 7 | 11 | 12 | 13 | 16 | 17 => actor(0),
        2..=5 | 8 | 9 | 10 | 18 => actor(2 + who % 3),
        6 => actor(6),
        14 | 15 => actor(7),
        _ => actor(8),
    }
}

fn departments(mask: u8) -> Vec<String> {
    (0..4).filter(|i| mask & (1 << i) != 0).map(|i| DEPARTMENTS[i].to_owned()).collect()
}

fn satisfaction(p: u8) -> Satisfaction {
    [Satisfaction::Satisfied, Satisfaction::BasicallySatisfied, Satisfaction::Unsatisfied][usize::from(p % 3)]
}

/// Interprets one random step as a command. SLA steps aim at a running clock's real deadline.
fn command(state: &State, op: u8, who: u8, p: u8) -> (Actor, CommandBody, Option<String>) {
    let armed = armed_clocks(state, &SlaPolicy::default(), &Calendar::official()).unwrap_or_default();
    let clock = armed.get(usize::from(p) % armed.len().max(1)).cloned();
    let text = if p.is_multiple_of(11) { " ".to_owned() } else { format!("说明{p}") };
    let body = match op % 24 {
        0 => CommandBody::RaiseWhistle {
            title: text.clone(),
            description: "描述".into(),
            departments: departments(1 + p % 3),
            category: None,
            location: p.is_multiple_of(2).then(|| "村口".to_owned()),
            urgency: if p.is_multiple_of(3) { Urgency::Urgent } else { Urgency::Normal },
        },
        1 => CommandBody::SubmitFeedback {
            topic: FeedbackTopic::ALL[usize::from(p) % 6],
            body: text.clone(),
            anonymous: p.is_multiple_of(2),
        },
        2..=4 => CommandBody::AcknowledgeSummons,
        5 => CommandBody::DeclineSummons { reason: text.clone() },
        6 => CommandBody::AssignDepartments { departments: departments(p) },
        7 => CommandBody::AddDepartments { departments: departments(p) },
        8 => CommandBody::NoteProgress { note: text.clone() },
        9 | 10 => CommandBody::ReportHandled { summary: text.clone() },
        11 => CommandBody::ConfirmWhistle { satisfaction: satisfaction(p) },
        12 => CommandBody::ReopenWhistle { reason: text.clone() },
        13 if p.is_multiple_of(8) => CommandBody::WithdrawWhistle { reason: None },
        13 => CommandBody::NoteProgress { note: text.clone() },
        14 => CommandBody::ReplyFeedback { body: text.clone() },
        15 => CommandBody::ResolveFeedback { summary: text.clone() },
        16 => CommandBody::RateFeedback { satisfaction: satisfaction(p) },
        17 => CommandBody::ReopenFeedback { reason: text.clone() },
        18 if p.is_multiple_of(3) => match &clock {
            Some(c) => CommandBody::RequestExtension {
                clock: c.clock.clone(),
                span: if p.is_multiple_of(2) {
                    ExtensionSpan::Hours(u32::from(p % 50))
                } else {
                    ExtensionSpan::WorkingDays(u32::from(p % 4))
                },
                reason: text.clone(),
            },
            None => CommandBody::AcknowledgeSummons,
        },
        18 => CommandBody::ReportHandled { summary: text.clone() },
        19 => CommandBody::ApproveExtension { number: u32::from(p % 3) + 1 },
        20 => CommandBody::RefuseExtension { number: u32::from(p % 3) + 1, reason: None },
        21 | 22 => {
            let Some(c) = clock else {
                return (actor_for(2, who), CommandBody::AcknowledgeSummons, None);
            };
            let system = Actor::system();
            return match (p % 3, c.warn_at) {
                (0, Some(warn_at)) => {
                    (system, CommandBody::RecordSlaWarning { clock: c.clock, due_at: c.due_at, warn_at }, None)
                }
                (1, _) => {
                    (system, CommandBody::RecordSlaEscalation { clock: c.clock, due_at: c.due_at, level: 2 }, None)
                }
                _ => (system, CommandBody::RecordSlaBreach { clock: c.clock, due_at: c.due_at }, None),
            };
        }
        _ => {
            let alert_id = state.alerts().first().map(|a| a.alert_id);
            CommandBody::AcknowledgeAlert { alert_id: alert_id.unwrap_or_else(Uuid::nil) }
        }
    };
    // The anonymous submitter acts with the code; sometimes a stranger tries without it.
    let anonymous = matches!(state, State::Feedback(c) if c.kind.anonymous);
    if anonymous
        && matches!(body, CommandBody::RateFeedback { .. } | CommandBody::ReopenFeedback { .. })
        && who.is_multiple_of(2)
    {
        return (Actor::anonymous(), body, Some(CODE.to_owned()));
    }
    (actor_for(op, who), body, Some(CODE.to_owned()))
}

fn check_invariants(state: &State) {
    let armed = armed_clocks(state, &SlaPolicy::default(), &Calendar::official()).expect("deadlines compute");
    for c in &armed {
        assert!(c.due_at > c.started_at, "{c:?}");
        if let Some(w) = c.warn_at {
            assert!(w >= c.started_at && w <= c.due_at, "{c:?}");
        }
    }
    if let State::Whistle(case) = state {
        match case.kind.status {
            WhistleStatus::Resolved => assert!(case.kind.all_handled()),
            WhistleStatus::Confirmed | WhistleStatus::Withdrawn => {
                assert!(case.clocks.is_empty(), "{case:?}")
            }
            WhistleStatus::Open => {}
        }
        for (d, part) in &case.kind.departments {
            let ack = case.clocks.contains_key(&ClockRef::for_department(ClockKind::Ack, d.clone()));
            let open = case.kind.status == WhistleStatus::Open;
            assert_eq!(
                ack,
                open && part.status == PartStatus::Summoned,
                "ack clock of {d} runs iff summoned: {case:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn step_by_step_equals_replay(
        first in 0u8..2,
        steps in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), 0u16..3000), 1..60),
    ) {
        let case_id = Uuid::from_u128(42);
        let mut now = DateTime::parse_from_rfc3339("2026-09-17T08:30:00+08:00").unwrap().with_timezone(&Utc);
        let mut state = State::Empty;
        let mut log: Vec<Event> = Vec::new();
        let mut accepted = 0;
        let opening = (first, 0u8, 5u8, 0u16);
        for (i, (op, who, p, minutes)) in std::iter::once(opening).chain(steps).enumerate() {
            now += Duration::minutes(i64::from(minutes));
            let (actor, body, code) = command(&state, op, who, p);
            let cmd = Command { command_id: Uuid::from_u128(i as u128 + 1), case_id, actor, follow_up_code: code, body };
            if let Ok(events) = decide(&state, &cmd, now) {
                accepted += 1;
                for e in events {
                    prop_assert_eq!(e.at, now);
                    prop_assert_eq!(e.case_id, case_id);
                    state = evolve(state, &e);
                    log.push(e);
                }
                check_invariants(&state);
            }
        }
        prop_assert!(accepted >= 1);
        prop_assert_eq!(state.version(), log.len() as u64);
        prop_assert_eq!(&State::replay(&log), &state);
        let json: Vec<String> = log.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        let decoded: Vec<Event> = json.iter().map(|j| serde_json::from_str(j).unwrap()).collect();
        prop_assert_eq!(&State::replay(&decoded), &state);
        if let State::Feedback(c) = &state {
            if c.kind.anonymous {
                prop_assert!(json.iter().all(|j| !j.contains("东坝镇") && !j.contains(CODE)));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// Views store case states as JSON; every reachable state must survive that.
    #[test]
    fn states_round_trip_through_json(
        steps in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), 0u16..3000), 1..40),
    ) {
        let case_id = Uuid::from_u128(43);
        let mut now = DateTime::parse_from_rfc3339("2026-09-17T08:30:00+08:00").unwrap().with_timezone(&Utc);
        let mut state = State::Empty;
        for (i, (op, who, p, minutes)) in std::iter::once((0u8, 0u8, 5u8, 0u16)).chain(steps).enumerate() {
            now += Duration::minutes(i64::from(minutes));
            let (actor, body, code) = command(&state, op, who, p);
            let cmd = Command { command_id: Uuid::from_u128(i as u128 + 1), case_id, actor, follow_up_code: code, body };
            if let Ok(events) = decide(&state, &cmd, now) {
                for e in events {
                    state = evolve(state, &e);
                }
            }
            let json = serde_json::to_string(&state).expect("state serialises");
            let back: State = serde_json::from_str(&json).expect("state deserialises");
            prop_assert_eq!(&back, &state);
        }
    }
}
