//! Armed clocks: from a case's running clocks, the policy and the calendar, each clock's
//! deadline, warning time and escalation time. Pure; the projector indexes the result and the
//! watchdog acts on it.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, CalendarError, Deadline};
use super::event::{AlertStage, ClockRef, ExtensionSpan};
use super::policy::{SlaPolicy, Target};
use super::state::{RunningClock, State};

/// One armed clock of one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedClock {
    pub clock: ClockRef,
    pub started_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// When to warn; `None` when the policy never warns for this clock.
    pub warn_at: Option<DateTime<Utc>>,
    /// When to escalate to level 2 if still running; `None` when the policy never escalates.
    pub escalate_at: Option<DateTime<Utc>>,
    /// When to escalate to levels 3, 4… up to the policy's top level, if still running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate_later: Vec<DateTime<Utc>>,
    /// True when the deadline rests on a year with no published calendar.
    pub provisional: bool,
}

/// The armed clocks of a case: its running clocks whose kind the policy enables.
pub fn armed_clocks(state: &State, policy: &SlaPolicy, calendar: &Calendar) -> Result<Vec<ArmedClock>, CalendarError> {
    let Some(clocks) = state.clocks() else {
        return Ok(Vec::new());
    };
    clocks
        .iter()
        .filter(|(clock, _)| policy.clock(clock.kind).enabled)
        .map(|(clock, running)| arm(clock, running, policy, calendar))
        .collect()
}

/// The deadline of one running clock, approved extensions included; `None` when the policy
/// arms no such clock or the calendar cannot place it.
pub fn deadline(
    clock: &ClockRef,
    running: &RunningClock,
    policy: &SlaPolicy,
    calendar: &Calendar,
) -> Option<DateTime<Utc>> {
    if !policy.clock(clock.kind).enabled {
        return None;
    }
    arm(clock, running, policy, calendar).ok().map(|a| a.due_at)
}

fn arm(
    clock: &ClockRef,
    running: &RunningClock,
    policy: &SlaPolicy,
    calendar: &Calendar,
) -> Result<ArmedClock, CalendarError> {
    let rule = policy.clock(clock.kind);
    let mut deadline = match rule.target {
        Target::Natural(d) => Deadline { due_at: add_natural(running.started_at, d)?, provisional: false },
        Target::WorkingDays(n) => calendar.working_days_after(running.started_at, n)?,
    };
    for span in &running.extensions {
        deadline = extend(deadline, *span, calendar)?;
    }
    let span = deadline.due_at - running.started_at;
    let warn_at = rule.warn_at_percent.map(|p| running.started_at + span * i32::from(p) / 100);
    let escalate_at = rule.escalate_after.map(|d| add_natural(deadline.due_at, d)).transpose()?;
    let escalate_later = escalate_at.map(|at| policy.later_escalations(clock.kind, at)).unwrap_or_default();
    Ok(ArmedClock {
        clock: clock.clone(),
        started_at: running.started_at,
        due_at: deadline.due_at,
        warn_at,
        escalate_at,
        escalate_later,
        provisional: deadline.provisional,
    })
}

/// The next alert a clock owes and when: a warning (unless the breach is already recorded),
/// then the breach at the deadline, then the escalations. `None` once all are recorded.
pub fn next_alert(armed: &ArmedClock, running: &RunningClock) -> Option<(AlertStage, DateTime<Utc>)> {
    next_alert_level(armed, running).map(|(stage, at, _)| (stage, at))
}

/// [`next_alert`] with the supervisor level it is for: 1 for the warning and the breach, then
/// each rung of the escalation ladder in turn (2, 3… up to the policy's top level), each once.
pub fn next_alert_level(armed: &ArmedClock, running: &RunningClock) -> Option<(AlertStage, DateTime<Utc>, u8)> {
    let due = armed.due_at;
    let breached = running.has_alerted(AlertStage::Breach, due);
    if let Some(warn_at) = armed.warn_at {
        if !breached && !running.has_alerted(AlertStage::Warning, due) {
            return Some((AlertStage::Warning, warn_at, 1));
        }
    }
    if !breached {
        return Some((AlertStage::Breach, due, 1));
    }
    let ladder = armed.escalate_at.into_iter().chain(armed.escalate_later.iter().copied());
    (2u8..)
        .zip(ladder)
        .find(|(level, _)| !running.has_escalated(due, *level))
        .map(|(level, at)| (AlertStage::Escalation, at, level))
}

/// Moves a deadline by an approved extension. Working days count from the deadline's own
/// date, so "two more working days" on a deadline of 24:00 Tuesday ends at 24:00 Thursday.
pub fn extend(deadline: Deadline, span: ExtensionSpan, calendar: &Calendar) -> Result<Deadline, CalendarError> {
    match span {
        ExtensionSpan::Hours(h) => Ok(Deadline {
            due_at: add_natural(deadline.due_at, std::time::Duration::from_secs(u64::from(h) * 3600))?,
            provisional: deadline.provisional,
        }),
        ExtensionSpan::WorkingDays(n) => {
            // The last instant before the deadline lies on the last day the deadline counted.
            let last_counted = deadline.due_at - ChronoDuration::nanoseconds(1);
            let moved = calendar.working_days_after(last_counted, n)?;
            Ok(Deadline { due_at: moved.due_at, provisional: deadline.provisional || moved.provisional })
        }
    }
}

fn add_natural(at: DateTime<Utc>, d: std::time::Duration) -> Result<DateTime<Utc>, CalendarError> {
    let d = ChronoDuration::from_std(d).map_err(|_| CalendarError::OutOfRange)?;
    at.checked_add_signed(d).ok_or(CalendarError::OutOfRange)
}
