//! Properties over random command sequences: the state evolved step by step equals a replay of
//! the stored events (also after a JSON round trip), and the case invariants hold throughout.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use uuid::Uuid;
use whistle::domain::command::Command;
use whistle::domain::event::*;
use whistle::domain::state::{PartStatus, WhistleStatus};
use whistle::domain::{armed_clocks, decide, evolve, Calendar, SlaPolicy, State};

#[path = "support/lifecycle.rs"]
mod lifecycle;
use lifecycle::{command, CODE};

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
            WhistleStatus::Duplicate => {
                assert!(case.clocks.is_empty() && case.duplicate_of.is_some(), "{case:?}");
                assert!(case
                    .kind
                    .departments
                    .values()
                    .all(|p| matches!(p.status, PartStatus::Released | PartStatus::Handled)));
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
