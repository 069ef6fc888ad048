//! What the views hold, and the pure functions that derive index entries, list memberships
//! and statistics from a case. Everything here is a function of the case's state and the
//! policy and calendar, so a rebuild derives exactly the same bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::calendar::beijing;
use crate::domain::clocks::{armed_clocks, next_alert, ArmedClock};
use crate::domain::event::{Actor, AlertStage, ClockKind, ClockRef, Satisfaction, Urgency};
use crate::domain::state::{FeedbackStatus, PartStatus, State, WhistleStatus};
use crate::domain::{Calendar, SlaPolicy};

/// A case as the views keep it: its state, where it stands in the log, its armed clocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseView {
    pub case_id: Uuid,
    pub state: State,
    /// Position of the last record applied to this case: the expected value for its next append.
    pub last_position: u64,
    pub armed: Vec<ArmedClock>,
}

impl CaseView {
    pub fn new(case_id: Uuid) -> Self {
        CaseView { case_id, state: State::Empty, last_position: 0, armed: Vec::new() }
    }

    /// Recomputes the armed clocks. A deadline that cannot be computed (a year beyond the
    /// calendar's range) leaves the clock unarmed rather than stopping projection.
    pub fn rearm(&mut self, policy: &SlaPolicy, calendar: &Calendar) {
        self.armed = armed_clocks(&self.state, policy, calendar).unwrap_or_default();
    }

    pub fn kind(&self) -> Option<&'static str> {
        match &self.state {
            State::Whistle(_) => Some("whistle"),
            State::Feedback(_) => Some("feedback"),
            State::Empty | State::Calendar(_) => None,
        }
    }

    pub fn status(&self) -> Option<&'static str> {
        match &self.state {
            State::Whistle(c) => Some(match c.kind.status {
                WhistleStatus::Open => "open",
                WhistleStatus::Resolved => "resolved",
                WhistleStatus::Confirmed => "confirmed",
                WhistleStatus::Withdrawn => "withdrawn",
            }),
            State::Feedback(c) => Some(match c.kind.status {
                FeedbackStatus::Open => "open",
                FeedbackStatus::Resolved => "resolved",
                FeedbackStatus::Rated => "rated",
            }),
            State::Empty | State::Calendar(_) => None,
        }
    }

    pub fn opened_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::Whistle(c) => Some(c.opened_at),
            State::Feedback(c) => Some(c.opened_at),
            State::Empty | State::Calendar(_) => None,
        }
    }

    /// The title shown in lists and alerts.
    pub fn title(&self) -> String {
        match &self.state {
            State::Whistle(c) => c.kind.title.clone(),
            State::Feedback(c) => format!("意见直通车：{}", c.kind.topic.label_zh()),
            State::Empty | State::Calendar(_) => String::new(),
        }
    }

    pub fn urgent(&self) -> bool {
        self.state.is_urgent()
    }

    /// The township a whistle belongs to, or the named feedback submitter's unit.
    pub fn township(&self) -> Option<&str> {
        match &self.state {
            State::Whistle(c) => Some(c.kind.township.as_str()),
            State::Feedback(c) => c.kind.submitter.as_ref().map(|a| a.unit.as_str()),
            State::Empty | State::Calendar(_) => None,
        }
    }

    /// Every unit with a part in the case: the township and each summoned department.
    pub fn units(&self) -> Vec<String> {
        match &self.state {
            State::Whistle(c) => {
                std::iter::once(c.kind.township.clone()).chain(c.kind.departments.keys().cloned()).collect()
            }
            State::Feedback(c) => c.kind.submitter.iter().map(|a| a.unit.clone()).collect(),
            State::Empty | State::Calendar(_) => Vec::new(),
        }
    }

    /// Running clocks whose current deadline has been recorded as breached.
    pub fn overdue(&self) -> Vec<&ArmedClock> {
        let Some(clocks) = self.state.clocks() else { return Vec::new() };
        self.armed
            .iter()
            .filter(|a| clocks.get(&a.clock).is_some_and(|r| r.has_alerted(AlertStage::Breach, a.due_at)))
            .collect()
    }

    /// The next alert each armed clock owes: what the watchdog's index holds for this case.
    pub fn pending_alerts(&self) -> Vec<IndexEntry> {
        let Some(clocks) = self.state.clocks() else { return Vec::new() };
        self.armed
            .iter()
            .filter_map(|armed| {
                let running = clocks.get(&armed.clock)?;
                let (stage, fire_at) = next_alert(armed, running)?;
                let fire_at = ceil_to_millis(fire_at);
                Some(IndexEntry {
                    case_id: self.case_id,
                    clock: armed.clock.clone(),
                    stage,
                    due_at: armed.due_at,
                    fire_at,
                })
            })
            .collect()
    }
}

/// The first whole millisecond at or after `at`: index keys count milliseconds, and an alert
/// must never fire before its time.
fn ceil_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    let sub_millis = at.timestamp_subsec_nanos() % 1_000_000;
    if sub_millis == 0 {
        at
    } else {
        at + chrono::Duration::nanoseconds(i64::from(1_000_000 - sub_millis))
    }
}

/// One entry of the deadline index: the next alert one clock owes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub case_id: Uuid,
    pub clock: ClockRef,
    pub stage: AlertStage,
    pub due_at: DateTime<Utc>,
    pub fire_at: DateTime<Utc>,
}

/// The unit that owes a clock, as named in alert subjects.
pub fn responsible_unit(clock: &ClockRef) -> String {
    match (clock.kind, &clock.department) {
        (ClockKind::Dispute, _) => "coordinator".into(),
        (ClockKind::FeedbackReply | ClockKind::FeedbackResolve, _) => "office".into(),
        (_, Some(d)) => d.clone(),
        (_, None) => "unknown".into(),
    }
}

/// An SLA alert as supervisors see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub alert_id: Uuid,
    pub case_id: Uuid,
    pub case_kind: String,
    pub title: String,
    pub township: Option<String>,
    pub stage: AlertStage,
    /// Supervisor level told: 1 for warnings and breaches, 2 or more for escalations.
    pub level: u8,
    pub clock: ClockRef,
    /// The unit that owes the clock.
    pub unit: String,
    pub due_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub urgent: bool,
    pub position: u64,
    pub acknowledged_by: Option<Actor>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// A record the projector could not use, kept with the reason and its bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub position: u64,
    pub subject: String,
    pub reason: String,
    /// The raw payload, lossily as text (it may not be UTF-8), at most 64 KiB.
    pub payload: String,
    pub payload_bytes: usize,
}

/// Counters for one unit (or topic) and one day, from the cases opened that day (Beijing).
/// Rates: 响应率 = on-time acknowledgements / cases; 解决率 = resolved / cases;
/// 满意率 = (satisfied + basically satisfied) / rated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsCell {
    /// Summonses (departments), whistles (townships) or feedback items (topics).
    pub cases: i64,
    /// Reported in (departments), or first replied (feedback).
    pub acknowledged: i64,
    pub acknowledged_on_time: i64,
    /// Seconds from summons (or submission) to acknowledgement → how many; for medians.
    pub ack_seconds: BTreeMap<i64, i64>,
    pub declined: i64,
    pub resolved: i64,
    pub rated: i64,
    pub satisfied: i64,
    pub basically_satisfied: i64,
    pub unsatisfied: i64,
    pub reopened: i64,
    pub breaches: i64,
}

impl StatsCell {
    /// Adds `other` times `sign` (1 or -1).
    pub fn add(&mut self, other: &StatsCell, sign: i64) {
        self.cases += sign * other.cases;
        self.acknowledged += sign * other.acknowledged;
        self.acknowledged_on_time += sign * other.acknowledged_on_time;
        self.declined += sign * other.declined;
        self.resolved += sign * other.resolved;
        self.rated += sign * other.rated;
        self.satisfied += sign * other.satisfied;
        self.basically_satisfied += sign * other.basically_satisfied;
        self.unsatisfied += sign * other.unsatisfied;
        self.reopened += sign * other.reopened;
        self.breaches += sign * other.breaches;
        for (seconds, count) in &other.ack_seconds {
            let entry = self.ack_seconds.entry(*seconds).or_insert(0);
            *entry += sign * count;
            if *entry == 0 {
                self.ack_seconds.remove(seconds);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == StatsCell::default()
    }

    fn rate(&mut self, satisfaction: Option<Satisfaction>) {
        if let Some(s) = satisfaction {
            self.rated += 1;
            match s {
                Satisfaction::Satisfied => self.satisfied += 1,
                Satisfaction::BasicallySatisfied => self.basically_satisfied += 1,
                Satisfaction::Unsatisfied => self.unsatisfied += 1,
            }
        }
    }
}

/// The dimension statistics are kept by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsDimension {
    Department,
    Township,
    Topic,
}

impl StatsDimension {
    pub fn as_str(self) -> &'static str {
        match self {
            StatsDimension::Department => "department",
            StatsDimension::Township => "township",
            StatsDimension::Topic => "topic",
        }
    }
}

/// A case's contribution to statistics: (dimension, unit, Beijing date) → counters.
pub fn contributions(view: &CaseView) -> Vec<((StatsDimension, String, String), StatsCell)> {
    match &view.state {
        State::Whistle(case) => {
            let date = day_of(case.opened_at);
            let breaches_of = |d: Option<&str>| {
                case.alerts
                    .iter()
                    .filter(|a| {
                        a.stage == AlertStage::Breach && d.is_none_or(|d| a.clock.department.as_deref() == Some(d))
                    })
                    .count() as i64
            };
            let mut township = StatsCell {
                cases: 1,
                reopened: i64::from(case.reopen_count),
                breaches: breaches_of(None),
                ..StatsCell::default()
            };
            if matches!(case.kind.status, WhistleStatus::Resolved | WhistleStatus::Confirmed) {
                township.resolved = 1;
            }
            township.rate(case.kind.satisfaction);
            let mut out = Vec::new();
            for (department, part) in &case.kind.departments {
                let mut cell = StatsCell { cases: 1, breaches: breaches_of(Some(department)), ..StatsCell::default() };
                if let Some(acked) = part.acknowledged_at {
                    let ack = ClockRef::for_department(ClockKind::Ack, department.clone());
                    let late = case
                        .alerts
                        .iter()
                        .any(|a| a.stage == AlertStage::Breach && a.clock == ack && a.due_at > part.summoned_at);
                    cell.acknowledged = 1;
                    cell.acknowledged_on_time = i64::from(!late);
                    cell.ack_seconds.insert((acked - part.summoned_at).num_seconds(), 1);
                }
                cell.declined = i64::from(part.decline_reason.is_some());
                if part.status == PartStatus::Handled {
                    cell.resolved = 1;
                    cell.rate(case.kind.satisfaction);
                    cell.reopened = i64::from(case.reopen_count);
                }
                township.acknowledged += cell.acknowledged;
                township.acknowledged_on_time += cell.acknowledged_on_time;
                township.add(&StatsCell { ack_seconds: cell.ack_seconds.clone(), ..StatsCell::default() }, 1);
                out.push(((StatsDimension::Department, department.clone(), date.clone()), cell));
            }
            out.push(((StatsDimension::Township, case.kind.township.clone(), date), township));
            out
        }
        State::Feedback(case) => {
            let date = day_of(case.opened_at);
            let reply = ClockRef::case_wide(ClockKind::FeedbackReply);
            let mut cell = StatsCell {
                cases: 1,
                reopened: i64::from(case.reopen_count),
                breaches: case.alerts.iter().filter(|a| a.stage == AlertStage::Breach).count() as i64,
                ..StatsCell::default()
            };
            if let Some(replied) = case.kind.first_replied_at {
                let late = case.alerts.iter().any(|a| a.stage == AlertStage::Breach && a.clock == reply);
                cell.acknowledged = 1;
                cell.acknowledged_on_time = i64::from(!late);
                cell.ack_seconds.insert((replied - case.opened_at).num_seconds(), 1);
            }
            if matches!(case.kind.status, FeedbackStatus::Resolved | FeedbackStatus::Rated) {
                cell.resolved = 1;
            }
            cell.rate(case.kind.satisfaction);
            let topic = serde_json::to_value(case.kind.topic)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            vec![((StatsDimension::Topic, topic, date), cell)]
        }
        State::Empty | State::Calendar(_) => Vec::new(),
    }
}

/// The Beijing date of an instant, as YYYY-MM-DD.
pub fn day_of(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing()).format("%Y-%m-%d").to_string()
}

/// Alert views for the SLA alerts a case has raised.
/// The alert view of an SLA alert event, from the case as of that event (None when the case
/// holds no such alert).
pub fn alert_view_of(view: &CaseView, event: &crate::domain::Event, position: u64) -> Option<AlertView> {
    let level = match &event.body {
        crate::domain::event::EventBody::SlaEscalated { level, .. } => *level,
        _ => 1,
    };
    let alert = view.state.alerts().iter().find(|a| a.alert_id == event.event_id)?;
    Some(alert_view(view, alert, level, position))
}

fn alert_view(view: &CaseView, alert: &crate::domain::state::Alert, level: u8, position: u64) -> AlertView {
    AlertView {
        alert_id: alert.alert_id,
        case_id: view.case_id,
        case_kind: view.kind().unwrap_or("").into(),
        title: view.title(),
        township: view.township().map(str::to_owned),
        stage: alert.stage,
        level,
        clock: alert.clock.clone(),
        unit: responsible_unit(&alert.clock),
        due_at: alert.due_at,
        raised_at: alert.raised_at,
        urgent: matches!(&view.state, State::Whistle(c) if c.kind.urgency == Urgency::Urgent),
        position,
        acknowledged_by: alert.acknowledged_by.clone(),
        acknowledged_at: None,
    }
}
