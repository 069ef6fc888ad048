//! 三率 (响应率, 解决率, 满意率): what each case contributes to the statistics of each unit, by
//! the written rules of docs/statistics.md. Pure: a function of the case view (its state, its
//! armed clocks and the clocks it has settled), so a rebuild derives the same cells.
//!
//! Every rate is a numerator over a denominator that a cell carries as plain counts, so a cell
//! summed over days and units still gives exact rates, and every row can be checked by hand.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{day_of, CaseView};
use crate::domain::event::{AlertStage, ClockKind, ClockRef, FeedbackTopic, Satisfaction};
use crate::domain::state::{Case, FeedbackStatus, PartStatus, State, Whistle, WhistleStatus};

/// A clock that stopped: when it started, what its deadline was then (approved extensions
/// included; `None` when the policy arms no such clock or the calendar cannot place it), when
/// and by which event it stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledClock {
    pub clock: ClockRef,
    pub started_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub stopped_at: DateTime<Utc>,
    /// The type of the event that stopped it (`department_acknowledged`, `whistle_withdrawn`…).
    pub by: String,
}

impl SettledClock {
    fn in_time(&self) -> bool {
        self.due_at.is_none_or(|due| self.stopped_at <= due)
    }
}

/// Counters for one unit and one Beijing day, from the cases opened that day. Each rate's
/// numerator and denominator are here as counts:
/// 响应率 = `on_time / response_base`, 解决率 = `resolved / resolution_base`,
/// 满意率 = `(satisfied + basically_satisfied) / rated`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsCell {
    /// Summonses (departments, townships), whistles (townships), feedback items (office,
    /// topics) or disputes (coordinator) in the period, counted or not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cases: i64,
    /// Of those, not counted by rule (withdrawn while open before the deadline, released).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub excluded: i64,
    /// 响应率's denominator.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub response_base: i64,
    /// Answered (reported in, replied, settled) by the deadline: 响应率's numerator.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub on_time: i64,
    /// Answered after the deadline, or the deadline passed unanswered (a breach recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub late: i64,
    /// Not answered yet, and the deadline not recorded as passed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending: i64,
    /// 解决率's denominator.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resolution_base: i64,
    /// 解决率's numerator.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resolved: i64,
    /// Resolved, but after the resolve deadline (office: not in 解决率).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resolved_late: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rated: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub satisfied: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub basically_satisfied: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unsatisfied: i64,
    /// Summonses declined (departments), whatever the coordinator decided.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub declined: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reopened: i64,
    /// Breaches of the unit's own clocks (超时).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub breaches: i64,
    /// Answers given, and their total time in seconds (for the average time to answer).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answered: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answer_seconds: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl StatsCell {
    /// Adds `other` times `sign` (1 or -1).
    pub fn add(&mut self, other: &StatsCell, sign: i64) {
        let pairs: [(&mut i64, i64); 18] = [
            (&mut self.cases, other.cases),
            (&mut self.excluded, other.excluded),
            (&mut self.response_base, other.response_base),
            (&mut self.on_time, other.on_time),
            (&mut self.late, other.late),
            (&mut self.pending, other.pending),
            (&mut self.resolution_base, other.resolution_base),
            (&mut self.resolved, other.resolved),
            (&mut self.resolved_late, other.resolved_late),
            (&mut self.rated, other.rated),
            (&mut self.satisfied, other.satisfied),
            (&mut self.basically_satisfied, other.basically_satisfied),
            (&mut self.unsatisfied, other.unsatisfied),
            (&mut self.declined, other.declined),
            (&mut self.reopened, other.reopened),
            (&mut self.breaches, other.breaches),
            (&mut self.answered, other.answered),
            (&mut self.answer_seconds, other.answer_seconds),
        ];
        for (mine, theirs) in pairs {
            *mine += sign * theirs;
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == StatsCell::default()
    }

    /// 响应率, 解决率, 满意率: each in [0, 1], `None` when nothing is counted.
    pub fn rates(&self) -> [Option<f64>; 3] {
        [
            rate(self.on_time, self.response_base),
            rate(self.resolved, self.resolution_base),
            rate(self.satisfied + self.basically_satisfied, self.rated),
        ]
    }

    /// Average minutes from the start of the clock to the answer, to a tenth.
    pub fn average_answer_minutes(&self) -> Option<f64> {
        (self.answered > 0).then(|| (self.answer_seconds as f64 / self.answered as f64 / 6.0).round() / 10.0)
    }

    fn rate_with(&mut self, satisfaction: Option<Satisfaction>) {
        if let Some(s) = satisfaction {
            self.rated += 1;
            match s {
                Satisfaction::Satisfied => self.satisfied += 1,
                Satisfaction::BasicallySatisfied => self.basically_satisfied += 1,
                Satisfaction::Unsatisfied => self.unsatisfied += 1,
            }
        }
    }

    fn answer(&mut self, answer: Answer) {
        match answer {
            Answer::OnTime { seconds } => {
                self.on_time += 1;
                self.answered += 1;
                self.answer_seconds += seconds;
            }
            Answer::Late { seconds } => {
                self.late += 1;
                if let Some(s) = seconds {
                    self.answered += 1;
                    self.answer_seconds += s;
                }
            }
            Answer::Pending => self.pending += 1,
        }
    }
}

/// A rate in [0, 1], or `None` when the denominator is zero.
pub fn rate(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator > 0).then(|| (numerator as f64 / denominator as f64).clamp(0.0, 1.0))
}

/// The dimension statistics are kept by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsDimension {
    Department,
    Township,
    /// Feedback by topic, by the office's rules.
    Topic,
    /// The burden-reduction office (one row).
    Office,
    /// The coordinator (one row): responsibility disputes.
    Coordinator,
    /// Each district (区/县): its townships' rows summed when asked (never projected: the
    /// organisation says which township is in which district).
    District,
}

impl StatsDimension {
    /// The projected dimensions.
    pub const ALL: [StatsDimension; 5] = [
        StatsDimension::Department,
        StatsDimension::Township,
        StatsDimension::Topic,
        StatsDimension::Office,
        StatsDimension::Coordinator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatsDimension::Department => "department",
            StatsDimension::Township => "township",
            StatsDimension::Topic => "topic",
            StatsDimension::Office => "office",
            StatsDimension::Coordinator => "coordinator",
            StatsDimension::District => "district",
        }
    }

    /// A projected dimension ([`StatsDimension::ALL`]) or `district`.
    pub fn parse(text: &str) -> Option<Self> {
        StatsDimension::ALL.into_iter().chain([StatsDimension::District]).find(|d| d.as_str() == text)
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            StatsDimension::Department => "部门",
            StatsDimension::Township => "乡镇（街道）",
            StatsDimension::Topic => "意见类别",
            StatsDimension::Office => "减负办",
            StatsDimension::Coordinator => "编办",
            StatsDimension::District => "区县",
        }
    }
}

/// The unit key of the office's and the coordinator's rows (the organisation names them).
pub const ROLE_ROW: &str = "";

/// The key of a topic's row: its Chinese label.
pub fn topic_key(topic: FeedbackTopic) -> String {
    topic.label_zh().to_owned()
}

/// How one clock's answer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    OnTime {
        seconds: i64,
    },
    /// After the deadline (with the time taken), or the deadline passed unanswered (`None`).
    Late {
        seconds: Option<i64>,
    },
    Pending,
}

/// One department's summons in a whistle, judged by its final outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Summons {
    /// Not counted: why (in Chinese, as exports show it).
    Excluded(&'static str),
    Counted {
        answer: Answer,
        handled: bool,
    },
}

/// The last settlement of `clock`, if it has stopped at least once.
pub fn last_settled<'a>(view: &'a CaseView, clock: &ClockRef) -> Option<&'a SettledClock> {
    view.settled.iter().rev().find(|s| &s.clock == clock)
}

/// Whether the running `clock`'s current deadline has been recorded as breached.
fn breached_while_running(view: &CaseView, clock: &ClockRef) -> bool {
    view.overdue().iter().any(|a| &a.clock == clock)
}

/// How a clock answered when `answering` is the event type that answers it.
pub fn answer_of(view: &CaseView, clock: &ClockRef, answering: &[&str]) -> Answer {
    let running = view.state.clocks().is_some_and(|c| c.contains_key(clock));
    if running {
        return if breached_while_running(view, clock) { Answer::Late { seconds: None } } else { Answer::Pending };
    }
    match last_settled(view, clock) {
        Some(s) if answering.contains(&s.by.as_str()) => {
            let seconds = (s.stopped_at - s.started_at).num_seconds();
            if s.in_time() {
                Answer::OnTime { seconds }
            } else {
                Answer::Late { seconds: Some(seconds) }
            }
        }
        // Stopped otherwise (withdrawn): late if its deadline had passed, else still pending.
        Some(s) if !s.in_time() => Answer::Late { seconds: None },
        _ => Answer::Pending,
    }
}

/// A department's summons in a whistle (see docs/statistics.md, "Departments").
pub fn summons(view: &CaseView, case: &Case<Whistle>, department: &str) -> Summons {
    let Some(part) = case.kind.departments.get(department) else { return Summons::Excluded("未被召集") };
    if part.status == PartStatus::Released {
        return Summons::Excluded("已退回，编办认定非其职责");
    }
    let ack = ClockRef::for_department(ClockKind::Ack, department);
    if case.kind.status == WhistleStatus::Withdrawn {
        if part.status == PartStatus::Declined {
            return Summons::Excluded("撤回时退回争议尚待编办协调");
        }
        let withdrawn_open = part.status == PartStatus::Summoned
            && last_settled(view, &ack).is_none_or(|s| s.by == "whistle_withdrawn" && s.in_time());
        if withdrawn_open {
            return Summons::Excluded("撤回时尚未报到且未超时");
        }
    }
    let answer = if part.status == PartStatus::Declined {
        // The coordinator has not decided yet: the summons is not judged yet.
        Answer::Pending
    } else {
        answer_of(view, &ack, &["department_acknowledged"])
    };
    Summons::Counted { answer, handled: part.status == PartStatus::Handled }
}

/// The rating that applies to a department's part: its own, or the whole whistle's when it
/// handled its part.
pub fn part_rating(case: &Case<Whistle>, department: &str) -> Option<Satisfaction> {
    let part = case.kind.departments.get(department)?;
    if case.kind.status != WhistleStatus::Confirmed || part.status != PartStatus::Handled {
        return None;
    }
    part.rating.or(case.kind.satisfaction)
}

fn breaches_of(case_alerts: &[crate::domain::state::Alert], keep: impl Fn(&ClockRef) -> bool) -> i64 {
    case_alerts.iter().filter(|a| a.stage == AlertStage::Breach && keep(&a.clock)).count() as i64
}

/// A case's contribution to the statistics: (dimension, unit, Beijing date) → counters.
pub fn contributions(view: &CaseView) -> Vec<((StatsDimension, String, String), StatsCell)> {
    match &view.state {
        State::Whistle(case) => whistle_contributions(view, case),
        State::Feedback(case) if case.kind.status == FeedbackStatus::Duplicate => {
            // Linked to another item about the same practice, which is counted instead.
            let date = day_of(case.opened_at);
            let cell = StatsCell { cases: 1, excluded: 1, ..StatsCell::default() };
            vec![
                ((StatsDimension::Office, ROLE_ROW.to_owned(), date.clone()), cell.clone()),
                ((StatsDimension::Topic, topic_key(case.kind.topic), date), cell),
            ]
        }
        State::Feedback(case) => {
            let date = day_of(case.opened_at);
            let reply = ClockRef::case_wide(ClockKind::FeedbackReply);
            let resolve = ClockRef::case_wide(ClockKind::FeedbackResolve);
            let mut cell = StatsCell {
                cases: 1,
                response_base: 1,
                resolution_base: 1,
                reopened: i64::from(case.reopen_count),
                breaches: breaches_of(&case.alerts, |_| true),
                ..StatsCell::default()
            };
            // Resolving also answers the submitter.
            cell.answer(answer_of(view, &reply, &["feedback_replied", "feedback_resolved"]));
            if matches!(case.kind.status, FeedbackStatus::Resolved | FeedbackStatus::Rated) {
                match last_settled(view, &resolve) {
                    Some(s) if !s.in_time() => cell.resolved_late = 1,
                    _ => cell.resolved = 1,
                }
            }
            cell.rate_with(case.kind.satisfaction);
            vec![
                ((StatsDimension::Office, ROLE_ROW.to_owned(), date.clone()), cell.clone()),
                ((StatsDimension::Topic, topic_key(case.kind.topic), date), cell),
            ]
        }
        State::Empty | State::Calendar(_) | State::Report(_) => Vec::new(),
    }
}

fn whistle_contributions(view: &CaseView, case: &Case<Whistle>) -> Vec<((StatsDimension, String, String), StatsCell)> {
    let date = day_of(case.opened_at);
    if case.kind.status == WhistleStatus::Duplicate {
        // The original carries the problem and is counted once; the duplicate counts nowhere.
        let cell = StatsCell { cases: 1, excluded: 1, ..StatsCell::default() };
        let mut out: Vec<_> = case
            .kind
            .departments
            .keys()
            .map(|d| ((StatsDimension::Department, d.clone(), date.clone()), cell.clone()))
            .collect();
        // A township's `excluded` counts summonses.
        let township = StatsCell { cases: 1, excluded: case.kind.departments.len() as i64, ..StatsCell::default() };
        out.push(((StatsDimension::Township, case.kind.township.clone(), date), township));
        return out;
    }
    let withdrawn = case.kind.status == WhistleStatus::Withdrawn;
    let mut township = StatsCell {
        cases: 1,
        resolution_base: i64::from(!withdrawn),
        resolved: i64::from(case.kind.status == WhistleStatus::Confirmed),
        reopened: i64::from(case.reopen_count),
        ..StatsCell::default()
    };
    let mut out = Vec::new();
    for department in case.kind.departments.keys() {
        let own = |c: &ClockRef| {
            c.department.as_deref() == Some(department.as_str())
                && matches!(c.kind, ClockKind::Ack | ClockKind::WhistleResolve)
        };
        let declined = view
            .settled
            .iter()
            .filter(|s| {
                s.by == "department_declined" && s.clock == ClockRef::for_department(ClockKind::Ack, department)
            })
            .count() as i64;
        let mut cell =
            StatsCell { cases: 1, declined, breaches: breaches_of(&case.alerts, own), ..StatsCell::default() };
        match summons(view, case, department) {
            Summons::Excluded(_) => cell.excluded = 1,
            Summons::Counted { answer, handled } => {
                cell.response_base = 1;
                cell.resolution_base = 1;
                cell.answer(answer);
                cell.resolved = i64::from(handled);
                cell.rate_with(part_rating(case, department));
                if handled {
                    cell.reopened = i64::from(case.reopen_count);
                }
            }
        }
        // The township sums its summonses, except what it counts per whistle.
        township.add(
            &StatsCell { cases: 0, resolution_base: 0, resolved: 0, resolved_late: 0, reopened: 0, ..cell.clone() },
            1,
        );
        out.push(((StatsDimension::Department, department.clone(), date.clone()), cell));
    }
    out.push(((StatsDimension::Township, case.kind.township.clone(), date.clone()), township));
    // One dispute per decline: each dispute clock that ran.
    let disputes: Vec<&SettledClock> = view.settled.iter().filter(|s| s.clock.kind == ClockKind::Dispute).collect();
    let running: Vec<&ClockRef> = case.clocks.keys().filter(|c| c.kind == ClockKind::Dispute).collect();
    if !disputes.is_empty() || !running.is_empty() {
        let mut cell =
            StatsCell { breaches: breaches_of(&case.alerts, |c| c.kind == ClockKind::Dispute), ..StatsCell::default() };
        for s in disputes {
            cell.cases += 1;
            if s.by == "whistle_withdrawn" && s.in_time() {
                cell.excluded += 1;
                continue;
            }
            cell.response_base += 1;
            let seconds = (s.stopped_at - s.started_at).num_seconds();
            // The coordinator answers a dispute by naming departments or reassigning the part.
            let settled_by_coordinator = matches!(s.by.as_str(), "departments_assigned" | "department_reassigned");
            cell.answer(match (settled_by_coordinator, s.in_time()) {
                (true, true) => Answer::OnTime { seconds },
                (true, false) => Answer::Late { seconds: Some(seconds) },
                (false, _) => Answer::Late { seconds: None },
            });
        }
        for clock in running {
            cell.cases += 1;
            cell.response_base += 1;
            cell.answer(if breached_while_running(view, clock) {
                Answer::Late { seconds: None }
            } else {
                Answer::Pending
            });
        }
        out.push(((StatsDimension::Coordinator, ROLE_ROW.to_owned(), date), cell));
    }
    out
}
