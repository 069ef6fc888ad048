//! A traffic generator: realistic case lifecycles decided by the real domain and appended to a
//! real log. Used by the crash tests, the benchmarks and the demo. Deterministic per seed.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::domain::command::{Command, CommandBody};
use crate::domain::event::{Actor, FeedbackTopic, Role, Satisfaction, Urgency};
use crate::domain::state::{FeedbackStatus, PartStatus, State, WhistleStatus};
use crate::domain::{decide, evolve};
use crate::log::{Commit, EventLog, LogError};

pub const TOWNSHIPS: [&str; 4] = ["东坝镇", "西湖街道", "南山乡", "北关街道"];
pub const DEPARTMENTS: [&str; 8] =
    ["住建局", "城管局", "生态环境局", "交通局", "水务局", "民政局", "市场监管局", "农业农村局"];
const FOLLOW_UP_CODE: &str = "sim-follow-up-code-0000";

/// A small, fast, seedable generator (xorshift64*); not for anything secret.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn uuid(&mut self, at: DateTime<Utc>) -> Uuid {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        random[8..].copy_from_slice(&self.next_u64().to_be_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis().max(0) as u64, &random).into_uuid()
    }
}

struct SimCase {
    state: State,
    last_position: u64,
}

/// One lane of traffic: its own cases, its own time, its own random stream.
pub struct Lane {
    rng: Rng,
    now: DateTime<Utc>,
    cases: HashMap<Uuid, SimCase>,
    open: Vec<Uuid>,
}

impl Lane {
    pub fn new(seed: u64, start: DateTime<Utc>) -> Self {
        Lane { rng: Rng::new(seed), now: start, cases: HashMap::new(), open: Vec::new() }
    }

    /// Decides and appends one command; returns the number of events stored (0 when the
    /// chosen step was refused, which the generator then simply skips).
    pub async fn step(&mut self, log: &dyn EventLog) -> Result<usize, LogError> {
        self.now += Duration::minutes(self.rng.below(90) as i64);
        let (case_id, actor, body, code) = self.next_command();
        let case = self.cases.entry(case_id).or_insert(SimCase { state: State::Empty, last_position: 0 });
        let command_id = self.rng.uuid(self.now);
        let cmd = Command { command_id, case_id, actor, follow_up_code: code, body };
        let Ok(events) = decide(&case.state, &cmd, self.now) else { return Ok(0) };
        if events.is_empty() {
            return Ok(0);
        }
        let commit = Commit { command_id, case_id, events };
        let appended = log.append(&commit, case.last_position).await?;
        case.last_position = appended.position;
        for e in &commit.events {
            case.state = evolve(std::mem::take(&mut case.state), e);
        }
        if !self.open.contains(&case_id) {
            self.open.push(case_id);
        }
        if closed(&case.state) {
            self.open.retain(|c| *c != case_id);
        }
        Ok(commit.events.len())
    }

    fn next_command(&mut self) -> (Uuid, Actor, CommandBody, Option<String>) {
        let new_case = self.open.len() < 3 || self.rng.chance(22);
        if new_case {
            let case_id = self.rng.uuid(self.now);
            let township = Actor::new(Role::Township, TOWNSHIPS[self.rng.below(4) as usize]);
            if self.rng.chance(25) {
                let topic = FeedbackTopic::ALL[self.rng.below(6) as usize];
                let anonymous = self.rng.chance(30);
                let body = CommandBody::SubmitFeedback { topic, body: lorem(&mut self.rng, 120), anonymous };
                return (case_id, township, body, Some(FOLLOW_UP_CODE.into()));
            }
            let count = 1 + self.rng.below(3) as usize;
            let first = self.rng.below(8) as usize;
            let departments = (0..count).map(|i| DEPARTMENTS[(first + i * 3) % 8].to_owned()).collect();
            let body = CommandBody::RaiseWhistle {
                title: format!("{}问题协调", ["河道", "道路", "违建", "垃圾", "排水"][self.rng.below(5) as usize]),
                description: lorem(&mut self.rng, 160),
                departments,
                category: None,
                location: Some(format!("{}村", self.rng.below(40))),
                urgency: if self.rng.chance(10) { Urgency::Urgent } else { Urgency::Normal },
            };
            return (case_id, township, body, None);
        }
        let case_id = self.open[self.rng.below(self.open.len() as u64) as usize];
        let state = &self.cases[&case_id].state;
        let (actor, body, code) = next_step(&mut self.rng, state);
        (case_id, actor, body, code)
    }
}

fn closed(state: &State) -> bool {
    match state {
        State::Whistle(c) => matches!(c.kind.status, WhistleStatus::Confirmed | WhistleStatus::Withdrawn),
        State::Feedback(c) => c.kind.status == FeedbackStatus::Rated,
        _ => true,
    }
}

/// The next plausible step of an open case.
fn next_step(rng: &mut Rng, state: &State) -> (Actor, CommandBody, Option<String>) {
    let satisfaction = || [Satisfaction::Satisfied, Satisfaction::BasicallySatisfied, Satisfaction::Unsatisfied];
    match state {
        State::Whistle(c) => {
            let township = Actor::new(Role::Township, c.kind.township.clone());
            if c.kind.status == WhistleStatus::Resolved {
                if rng.chance(10) {
                    return (township, CommandBody::ReopenWhistle { reason: "问题反弹".into() }, None);
                }
                let s = satisfaction()[rng.below(3) as usize];
                return (township, CommandBody::ConfirmWhistle { satisfaction: s, ratings: Default::default() }, None);
            }
            if c.kind.open_disputes().next().is_some() {
                let d = DEPARTMENTS[rng.below(8) as usize];
                let body = CommandBody::AssignDepartments { departments: vec![d.to_owned()] };
                return (Actor::new(Role::Coordinator, "市委编办"), body, None);
            }
            let parts: Vec<(&String, PartStatus)> = c.kind.departments.iter().map(|(d, p)| (d, p.status)).collect();
            let (department, status) = parts[rng.below(parts.len() as u64) as usize];
            let actor = Actor::new(Role::Department, department.clone());
            let body = match status {
                PartStatus::Summoned if rng.chance(8) => {
                    CommandBody::DeclineSummons { reason: "不属于本部门职责".into() }
                }
                PartStatus::Summoned => CommandBody::AcknowledgeSummons,
                PartStatus::Acknowledged if rng.chance(30) => CommandBody::NoteProgress { note: lorem(rng, 60) },
                _ => CommandBody::ReportHandled { summary: lorem(rng, 80) },
            };
            (actor, body, None)
        }
        State::Feedback(c) => {
            let office = Actor::new(Role::Office, "市减负办");
            match c.kind.status {
                FeedbackStatus::Open if c.kind.replies == 0 => {
                    (office, CommandBody::ReplyFeedback { body: lorem(rng, 80) }, None)
                }
                FeedbackStatus::Open => (office, CommandBody::ResolveFeedback { summary: lorem(rng, 80) }, None),
                _ => {
                    let submitter = c.kind.submitter.clone().unwrap_or_else(Actor::anonymous);
                    let s = satisfaction()[rng.below(3) as usize];
                    (submitter, CommandBody::RateFeedback { satisfaction: s }, Some(FOLLOW_UP_CODE.into()))
                }
            }
        }
        _ => (Actor::system(), CommandBody::AcknowledgeSummons, None),
    }
}

/// Filler text of about `chars` characters.
fn lorem(rng: &mut Rng, chars: usize) -> String {
    const WORDS: [&str; 12] =
        ["基层", "减负", "协调", "现场", "整改", "材料", "部门", "群众", "台账", "督查", "落实", "反馈"];
    let mut out = String::with_capacity(chars * 3);
    while out.chars().count() < chars {
        out.push_str(WORDS[rng.below(12) as usize]);
        out.push(if rng.chance(15) { '，' } else { ' ' });
    }
    out
}

/// Appends at least `events` events from `lanes` concurrent lanes; returns events stored.
pub async fn fill(
    log: &dyn EventLog,
    seed: u64,
    lanes: usize,
    events: usize,
    start: DateTime<Utc>,
) -> Result<usize, LogError> {
    let per_lane = events.div_ceil(lanes.max(1));
    let runs = (0..lanes.max(1)).map(|i| async move {
        let mut lane = Lane::new(seed.wrapping_add(i as u64 * 7919), start);
        let mut stored = 0;
        while stored < per_lane {
            stored += lane.step(log).await?;
        }
        Ok::<usize, LogError>(stored)
    });
    let results = futures::future::join_all(runs).await;
    results.into_iter().sum()
}
