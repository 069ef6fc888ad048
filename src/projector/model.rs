//! What the views hold, and the pure functions that derive index entries, list memberships
//! and statistics from a case. Everything here is a function of the case's state and the
//! policy and calendar, so a rebuild derives exactly the same bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::stats::{contributions, SettledClock, StatsCell, StatsDimension};
use crate::domain::calendar::beijing;
use crate::domain::clocks::{armed_clocks, deadline, next_alert_level, ArmedClock};
use crate::domain::event::{Actor, AlertStage, ClockKind, ClockRef, Event, Urgency};
use crate::domain::state::{FeedbackStatus, RunningClock, State, WhistleStatus};
use crate::domain::{Calendar, SlaPolicy};

/// A case as the views keep it: its state, where it stands in the log, its armed clocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseView {
    pub case_id: Uuid,
    pub state: State,
    /// Position of the last record applied to this case: the expected value for its next append.
    pub last_position: u64,
    pub armed: Vec<ArmedClock>,
    /// Clocks that have stopped, with their deadlines then: what the statistics judge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settled: Vec<SettledClock>,
    /// Cases marked as duplicates of this one, with the township that raised each (a whistle's
    /// duplicate): those townships follow this case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<LinkedDuplicate>,
}

/// A case linked to this one as its duplicate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkedDuplicate {
    pub case_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl CaseView {
    pub fn new(case_id: Uuid) -> Self {
        CaseView {
            case_id,
            state: State::Empty,
            last_position: 0,
            armed: Vec::new(),
            settled: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    /// Units that follow this case because a case of theirs is linked to it as a duplicate.
    pub fn followers(&self) -> impl Iterator<Item = &str> {
        self.duplicates.iter().filter_map(|d| d.unit.as_deref())
    }

    /// Recomputes the armed clocks; whether they changed. A deadline that cannot be computed (a
    /// year beyond the calendar's range) leaves the clock unarmed rather than stopping projection.
    pub fn rearm(&mut self, policy: &SlaPolicy, calendar: &Calendar) -> bool {
        let armed = armed_clocks(&self.state, policy, calendar).unwrap_or_default();
        let changed = armed != self.armed;
        self.armed = armed;
        changed
    }

    pub fn kind(&self) -> Option<&'static str> {
        match &self.state {
            State::Whistle(_) => Some("whistle"),
            State::Feedback(_) => Some("feedback"),
            State::Empty | State::Calendar(_) | State::Report(_) => None,
        }
    }

    pub fn status(&self) -> Option<&'static str> {
        match &self.state {
            State::Whistle(c) => Some(match c.kind.status {
                WhistleStatus::Open => "open",
                WhistleStatus::Resolved => "resolved",
                WhistleStatus::Confirmed => "confirmed",
                WhistleStatus::Withdrawn => "withdrawn",
                WhistleStatus::Duplicate => "duplicate",
            }),
            State::Feedback(c) => Some(match c.kind.status {
                FeedbackStatus::Open => "open",
                FeedbackStatus::Resolved => "resolved",
                FeedbackStatus::Rated => "rated",
                FeedbackStatus::Duplicate => "duplicate",
            }),
            State::Empty | State::Calendar(_) | State::Report(_) => None,
        }
    }

    pub fn opened_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::Whistle(c) => Some(c.opened_at),
            State::Feedback(c) => Some(c.opened_at),
            State::Empty | State::Calendar(_) | State::Report(_) => None,
        }
    }

    /// The title shown in lists and alerts.
    pub fn title(&self) -> String {
        match &self.state {
            State::Whistle(c) => c.kind.title.clone(),
            State::Feedback(c) => format!("意见直通车：{}", c.kind.topic.label_zh()),
            State::Empty | State::Calendar(_) | State::Report(_) => String::new(),
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
            State::Empty | State::Calendar(_) | State::Report(_) => None,
        }
    }

    /// Every unit with a part in the case: the township and each summoned department.
    pub fn units(&self) -> Vec<String> {
        match &self.state {
            State::Whistle(c) => std::iter::once(c.kind.township.clone())
                .chain(c.kind.departments.keys().cloned())
                .chain(self.followers().map(str::to_owned))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            State::Feedback(c) => c.kind.submitter.iter().map(|a| a.unit.clone()).collect(),
            State::Empty | State::Calendar(_) | State::Report(_) => Vec::new(),
        }
    }

    /// The unit a duplicate link makes follow the original: the whistle's township. Feedback
    /// submitters follow no one's feedback: the original may be another township's, or
    /// anonymous, and its text must not reach them.
    pub fn raising_unit(&self) -> Option<String> {
        match &self.state {
            State::Whistle(c) => Some(c.kind.township.clone()),
            State::Feedback(_) | State::Empty | State::Calendar(_) | State::Report(_) => None,
        }
    }

    /// Records the clocks `event` stopped, given the clocks running before it, with the
    /// deadline each had then.
    pub fn settle(
        &mut self,
        running_before: &[(ClockRef, RunningClock)],
        event: &Event,
        policy: &SlaPolicy,
        calendar: &Calendar,
    ) {
        // A duplicate link suspends clocks rather than stopping them: unlinked, they run on
        // from their first start, so nothing is settled.
        if matches!(event.body, crate::domain::EventBody::MarkedDuplicate { .. }) {
            return;
        }
        let after = self.state.clocks();
        for (clock, running) in running_before {
            let still = after.and_then(|c| c.get(clock)).is_some_and(|r| r.started_at == running.started_at);
            if !still {
                self.settled.push(SettledClock {
                    clock: clock.clone(),
                    started_at: running.started_at,
                    due_at: deadline(clock, running, policy, calendar),
                    stopped_at: event.at,
                    by: event.type_name().to_owned(),
                });
            }
        }
    }

    /// The unit that asked for extension `number`.
    pub fn extension_requester(&self, number: u32) -> Option<String> {
        let extensions = match &self.state {
            State::Whistle(c) => &c.extensions,
            State::Feedback(c) => &c.extensions,
            _ => return None,
        };
        extensions.iter().find(|e| e.number == number).map(|e| e.requested_by.unit.clone())
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
                let (stage, fire_at, level) = next_alert_level(armed, running)?;
                let fire_at = ceil_to_millis(fire_at);
                Some(IndexEntry {
                    case_id: self.case_id,
                    clock: armed.clock.clone(),
                    stage,
                    due_at: armed.due_at,
                    fire_at,
                    level,
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
    /// The supervisor level the alert is for: 1 for a warning or a breach, the ladder's rung
    /// for an escalation.
    pub level: u8,
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
