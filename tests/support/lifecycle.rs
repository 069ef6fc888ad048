//! Random lifecycles for property tests: one random step (op, who, p) interpreted as a
//! command against a case's state — mostly by the party who may do it, sometimes by anyone,
//! so refusals are exercised too. SLA steps aim at a running clock's real deadline.
#![allow(dead_code)]

use std::collections::BTreeMap;

use uuid::Uuid;
use whistle::domain::command::CommandBody;
use whistle::domain::event::*;
use whistle::domain::state::PartStatus;
use whistle::domain::{armed_clocks, Calendar, SlaPolicy, State};

pub const DEPARTMENTS: [&str; 4] = ["住建局", "城管局", "生态环境局", "交通局"];
pub const CODE: &str = "k7Qm-2xPz-9RtW-4vLc";
/// How many kinds of step there are.
const OPS: u8 = 30;
/// The case every duplicate in these lifecycles is linked to.
pub const ORIGINAL: Uuid = Uuid::from_u128(0xD0);

pub fn actor(i: u8) -> Actor {
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
pub fn actor_for(op: u8, who: u8) -> Actor {
    if who >= 220 {
        return actor(who);
    }
    match op % OPS {
        0 | 1 | 7 | 11 | 12 | 13 | 16 | 17 => actor(0),
        2..=5 | 8 | 9 | 10 | 18 | 27 => actor(2 + who % 3),
        6 | 29 => actor(6),
        14 | 15 => actor(7),
        24 => actor([0, 7, 2 + who % 3][usize::from(who % 3)]),
        25 => actor([6, 7, 0][usize::from(who % 3)]),
        26 => actor(who),
        28 => actor([6, 0][usize::from(who % 2)]),
        _ => actor(8),
    }
}

pub fn departments(mask: u8) -> Vec<String> {
    (0..4).filter(|i| mask & (1 << i) != 0).map(|i| DEPARTMENTS[i].to_owned()).collect()
}

pub fn satisfaction(p: u8) -> Satisfaction {
    [Satisfaction::Satisfied, Satisfaction::BasicallySatisfied, Satisfaction::Unsatisfied][usize::from(p % 3)]
}

/// Interprets one random step as a command. SLA steps aim at a running clock's real deadline.
pub fn command(state: &State, op: u8, who: u8, p: u8) -> (Actor, CommandBody, Option<String>) {
    let armed = armed_clocks(state, &SlaPolicy::default(), &Calendar::official()).unwrap_or_default();
    let clock = armed.get(usize::from(p) % armed.len().max(1)).cloned();
    let text = if p.is_multiple_of(11) { " ".to_owned() } else { format!("说明{p}") };
    let body = match op % OPS {
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
        11 => CommandBody::ConfirmWhistle { satisfaction: satisfaction(p), ratings: ratings(state, p) },
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
        23 => {
            let alert_id = state.alerts().first().map(|a| a.alert_id);
            CommandBody::AcknowledgeAlert { alert_id: alert_id.unwrap_or_else(Uuid::nil) }
        }
        24 => CommandBody::MarkDuplicate { original: ORIGINAL },
        25 => CommandBody::UnlinkDuplicate,
        26 => CommandBody::AddComment { body: text.clone(), mentions: Vec::new() },
        27 => CommandBody::ProposeHandOver { to: DEPARTMENTS[usize::from(p % 4)].to_owned(), reason: text.clone() },
        28 => CommandBody::DecideHandOver {
            number: u32::from(p % 3) + 1,
            accept: p.is_multiple_of(2),
            reason: None,
            township_decides: p.is_multiple_of(4),
        },
        _ => CommandBody::ReassignDepartment {
            from: DEPARTMENTS[usize::from(p % 4)].to_owned(),
            to: DEPARTMENTS[usize::from((p / 4) % 4)].to_owned(),
            reason: text.clone(),
        },
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

/// Ratings of some handled departments' parts (none when `p` is odd).
pub fn ratings(state: &State, p: u8) -> BTreeMap<String, Satisfaction> {
    let State::Whistle(case) = state else { return BTreeMap::new() };
    if p % 2 == 1 {
        return BTreeMap::new();
    }
    case.kind
        .departments
        .iter()
        .filter(|(_, part)| part.status == PartStatus::Handled)
        .enumerate()
        .filter(|(i, _)| (p >> (i % 7)) & 2 != 0)
        .map(|(i, (d, _))| (d.clone(), satisfaction(p.wrapping_add(i as u8))))
        .collect()
}
