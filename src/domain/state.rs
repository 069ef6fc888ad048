//! Case state and `evolve`: folding events into state. Total and deterministic: every event
//! that `decide` can produce applies cleanly; events that make no sense for the state are
//! ignored rather than panicking, so a replay never stops on an odd history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::{
    Actor, AlertStage, ClockKind, ClockRef, Event, EventBody, ExtensionSpan, FeedbackTopic, Satisfaction, Urgency,
};

/// The state of one case, rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum State {
    /// No event yet: the case does not exist.
    #[default]
    Empty,
    Whistle(Case<Whistle>),
    Feedback(Case<Feedback>),
    /// The calendar case: which years have been published, by which notice.
    Calendar(CalendarCase),
    /// A published 通报: one case per period.
    Report(ReportCase),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportCase {
    pub version: u64,
    pub kind: String,
    pub period: String,
    pub published_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CalendarCase {
    pub version: u64,
    /// Year → the notice of its latest publication.
    #[serde(deserialize_with = "years")]
    pub published: BTreeMap<i32, String>,
}

/// Years as map keys. JSON writes them as text, and inside a tagged [`State`] serde reads the
/// map through its own buffer, which does not turn text keys back into numbers: read them as
/// text, then as years.
fn years<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<i32, String>, D::Error> {
    use serde::de::Error;
    let by_text = BTreeMap::<String, String>::deserialize(deserializer)?;
    let parsed = by_text.into_iter().map(|(year, notice)| match year.parse() {
        Ok(year) => Ok((year, notice)),
        Err(_) => Err(D::Error::custom(format!("{year:?} is not a year"))),
    });
    parsed.collect()
}

/// What both kinds of case share: clocks, extensions, alerts, history counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case<K> {
    pub case_id: Uuid,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Number of events applied.
    pub version: u64,
    /// Running clocks, by clock. A clock is here from its start until it stops.
    #[serde(with = "clock_map")]
    pub clocks: BTreeMap<ClockRef, RunningClock>,
    pub extensions: Vec<Extension>,
    pub alerts: Vec<Alert>,
    pub reopen_count: u32,
    /// The case this one was marked a duplicate of, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<Uuid>,
    /// The clocks the duplicate link stopped, as they were: restored when it is unlinked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "clock_map")]
    pub suspended_clocks: BTreeMap<ClockRef, RunningClock>,
    /// The thread: who wrote each comment and when (the text is in the history).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<Comment>,
    /// Evidence files, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(flatten)]
    pub kind: K,
}

/// One evidence file of a case: what it is and who attached it (the bytes are in the file store).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub number: u32,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    pub sha256: String,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// One comment of a case's thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub number: u32,
    pub by: Actor,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retracted: bool,
}

/// A proposal to hand a department's part to another department (转办).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandOver {
    pub number: u32,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub proposed_at: DateTime<Utc>,
    pub status: ExtensionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<Actor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningClock {
    pub started_at: DateTime<Utc>,
    /// Approved extensions, in order of approval.
    pub extensions: Vec<ExtensionSpan>,
    /// Alert stages already recorded, with the deadline each was for.
    pub alerted: Vec<(AlertStage, DateTime<Utc>)>,
    /// Escalation levels already recorded, with the deadline each was for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalated: Vec<(DateTime<Utc>, u8)>,
}

impl RunningClock {
    fn started(at: DateTime<Utc>) -> Self {
        RunningClock { started_at: at, extensions: Vec::new(), alerted: Vec::new(), escalated: Vec::new() }
    }

    pub fn has_alerted(&self, stage: AlertStage, due_at: DateTime<Utc>) -> bool {
        self.alerted.iter().any(|&(s, d)| s == stage && d == due_at)
    }

    /// Whether the escalation to `level` for the deadline `due_at` is recorded.
    pub fn has_escalated(&self, due_at: DateTime<Utc>, level: u8) -> bool {
        self.escalated.iter().any(|&(d, l)| d == due_at && l == level)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionStatus {
    Pending,
    Approved,
    Refused,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    pub number: u32,
    pub clock: ClockRef,
    pub span: ExtensionSpan,
    pub reason: String,
    pub requested_by: Actor,
    pub status: ExtensionStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The id of the SLA event that raised it.
    pub alert_id: Uuid,
    pub stage: AlertStage,
    pub clock: ClockRef,
    pub due_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_by: Option<Actor>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhistleStatus {
    /// Departments are being summoned or are working.
    Open,
    /// Every responsible department reported handled; awaiting the township.
    Resolved,
    /// The township confirmed and rated it.
    Confirmed,
    Withdrawn,
    /// Marked a duplicate of another whistle, which carries the problem.
    Duplicate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartStatus {
    /// Summoned, not yet reported in.
    Summoned,
    /// Reported in (报到) and working.
    Acknowledged,
    /// Declined; a coordinator decides whether it is responsible after all.
    Declined,
    /// A coordinator settled its decline without naming it: not responsible.
    Released,
    Handled,
}

/// One department's part in a whistle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub status: PartStatus,
    pub summoned_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub handled_at: Option<DateTime<Utc>>,
    pub decline_reason: Option<String>,
    pub notes: u32,
    /// The township's rating of this department's part, when it rated it on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Satisfaction>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Whistle {
    pub township: String,
    pub title: String,
    pub description: String,
    pub category: Option<String>,
    pub location: Option<String>,
    pub urgency: Urgency,
    pub status: WhistleStatus,
    pub departments: BTreeMap<String, Part>,
    pub satisfaction: Option<Satisfaction>,
    /// Hand-over proposals, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hand_overs: Vec<HandOver>,
    /// The status and parts a duplicate link replaced, restored when it is unlinked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<SuspendedWhistle>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuspendedWhistle {
    pub status: WhistleStatus,
    pub departments: BTreeMap<String, Part>,
}

impl Whistle {
    /// Departments whose declines await a coordinator.
    pub fn open_disputes(&self) -> impl Iterator<Item = &str> {
        self.departments.iter().filter(|(_, p)| p.status == PartStatus::Declined).map(|(d, _)| d.as_str())
    }

    /// True when every department still responsible has handled its part, at least one has,
    /// and no dispute is waiting for a coordinator.
    pub fn all_handled(&self) -> bool {
        let mut any_handled = false;
        for part in self.departments.values() {
            match part.status {
                PartStatus::Handled => any_handled = true,
                PartStatus::Released => {}
                _ => return false,
            }
        }
        any_handled
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackStatus {
    Open,
    Resolved,
    Rated,
    /// Linked to another feedback item about the same practice.
    Duplicate,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub topic: FeedbackTopic,
    pub body: String,
    pub anonymous: bool,
    /// The named submitter; `None` when anonymous.
    pub submitter: Option<Actor>,
    pub follow_up_code_sha256: Option<String>,
    pub status: FeedbackStatus,
    pub replies: u32,
    pub first_replied_at: Option<DateTime<Utc>>,
    pub satisfaction: Option<Satisfaction>,
    /// The status a duplicate link replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_status: Option<FeedbackStatus>,
}

impl State {
    pub fn exists(&self) -> bool {
        !matches!(self, State::Empty)
    }

    pub fn version(&self) -> u64 {
        match self {
            State::Empty => 0,
            State::Whistle(c) => c.version,
            State::Feedback(c) => c.version,
            State::Calendar(c) => c.version,
            State::Report(c) => c.version,
        }
    }

    /// The running clocks of the case, whatever its kind.
    pub fn clocks(&self) -> Option<&BTreeMap<ClockRef, RunningClock>> {
        match self {
            State::Whistle(c) => Some(&c.clocks),
            State::Feedback(c) => Some(&c.clocks),
            State::Empty | State::Calendar(_) | State::Report(_) => None,
        }
    }

    /// The alerts raised on the case, whatever its kind.
    pub fn alerts(&self) -> &[Alert] {
        match self {
            State::Whistle(c) => &c.alerts,
            State::Feedback(c) => &c.alerts,
            State::Empty | State::Calendar(_) | State::Report(_) => &[],
        }
    }

    /// The evidence files attached to the case, whatever its kind.
    pub fn attachments(&self) -> &[Attachment] {
        match self {
            State::Whistle(c) => &c.attachments,
            State::Feedback(c) => &c.attachments,
            State::Empty | State::Calendar(_) | State::Report(_) => &[],
        }
    }

    /// The case this one is linked to as a duplicate, while it is.
    pub fn duplicate_of(&self) -> Option<Uuid> {
        match self {
            State::Whistle(c) => c.duplicate_of,
            State::Feedback(c) => c.duplicate_of,
            State::Empty | State::Calendar(_) | State::Report(_) => None,
        }
    }

    pub fn is_urgent(&self) -> bool {
        matches!(self, State::Whistle(c) if c.kind.urgency == Urgency::Urgent)
    }

    /// Replays events from nothing.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
        events.into_iter().fold(State::Empty, evolve)
    }
}

/// Applies one event to a state.
pub fn evolve(state: State, event: &Event) -> State {
    match state {
        State::Empty => birth(event),
        State::Whistle(mut case) => {
            if apply_common(&mut case, event) {
                apply_whistle(&mut case, event);
            }
            touch(&mut case, event);
            State::Whistle(case)
        }
        State::Feedback(mut case) => {
            if apply_common(&mut case, event) {
                apply_feedback(&mut case, event);
            }
            touch(&mut case, event);
            State::Feedback(case)
        }
        State::Calendar(mut case) => {
            if let EventBody::CalendarPublished { year, notice, .. } = &event.body {
                case.published.insert(*year, notice.clone());
            }
            case.version += 1;
            State::Calendar(case)
        }
        State::Report(mut case) => {
            case.version += 1;
            State::Report(case)
        }
    }
}

fn touch<K>(case: &mut Case<K>, event: &Event) {
    case.version += 1;
    case.updated_at = event.at;
}

fn new_case<K>(event: &Event, kind: K) -> Case<K> {
    Case {
        case_id: event.case_id,
        opened_at: event.at,
        updated_at: event.at,
        version: 1,
        clocks: BTreeMap::new(),
        extensions: Vec::new(),
        alerts: Vec::new(),
        reopen_count: 0,
        duplicate_of: None,
        suspended_clocks: BTreeMap::new(),
        comments: Vec::new(),
        attachments: Vec::new(),
        kind,
    }
}

fn birth(event: &Event) -> State {
    let at = event.at;
    match &event.body {
        EventBody::WhistleRaised { township, title, description, departments, category, location, urgency } => {
            let mut case = new_case(
                event,
                Whistle {
                    township: township.clone(),
                    title: title.clone(),
                    description: description.clone(),
                    category: category.clone(),
                    location: location.clone(),
                    urgency: *urgency,
                    status: WhistleStatus::Open,
                    departments: BTreeMap::new(),
                    satisfaction: None,
                    hand_overs: Vec::new(),
                    suspended: None,
                },
            );
            summon(&mut case, departments, at);
            State::Whistle(case)
        }
        EventBody::FeedbackSubmitted { topic, body, anonymous, follow_up_code_sha256 } => {
            let mut case = new_case(
                event,
                Feedback {
                    topic: *topic,
                    body: body.clone(),
                    anonymous: *anonymous,
                    submitter: (!anonymous).then(|| event.actor.clone()),
                    follow_up_code_sha256: follow_up_code_sha256.clone(),
                    status: FeedbackStatus::Open,
                    replies: 0,
                    first_replied_at: None,
                    satisfaction: None,
                    suspended_status: None,
                },
            );
            start(&mut case, ClockRef::case_wide(ClockKind::FeedbackReply), at);
            start(&mut case, ClockRef::case_wide(ClockKind::FeedbackResolve), at);
            State::Feedback(case)
        }
        EventBody::CalendarPublished { year, notice, .. } => {
            State::Calendar(CalendarCase { version: 1, published: BTreeMap::from([(*year, notice.clone())]) })
        }
        EventBody::ReportPublished { kind, period, .. } => State::Report(ReportCase {
            version: 1,
            kind: kind.clone(),
            period: period.clone(),
            published_at: Some(event.at),
        }),
        // Anything else cannot open a case; the history is odd, and the case stays empty.
        _ => State::Empty,
    }
}

fn start<K>(case: &mut Case<K>, clock: ClockRef, at: DateTime<Utc>) {
    case.clocks.insert(clock, RunningClock::started(at));
}

fn stop<K>(case: &mut Case<K>, clock: &ClockRef) {
    case.clocks.remove(clock);
}

fn summon(case: &mut Case<Whistle>, departments: &[String], at: DateTime<Utc>) {
    for department in departments {
        let part = Part {
            status: PartStatus::Summoned,
            summoned_at: at,
            acknowledged_at: None,
            handled_at: None,
            decline_reason: None,
            notes: 0,
            rating: None,
        };
        case.kind.departments.insert(department.clone(), part);
        start(case, ClockRef::for_department(ClockKind::Ack, department.clone()), at);
    }
}

/// Applies the events both kinds share. Returns false when the event was one of them.
fn apply_common<K>(case: &mut Case<K>, event: &Event) -> bool {
    match &event.body {
        EventBody::ExtensionRequested { number, clock, span, reason } => {
            case.extensions.push(Extension {
                number: *number,
                clock: clock.clone(),
                span: *span,
                reason: reason.clone(),
                requested_by: event.actor.clone(),
                status: ExtensionStatus::Pending,
            });
        }
        EventBody::ExtensionApproved { number } => {
            if let Some(ext) = case.extensions.iter_mut().find(|e| e.number == *number) {
                ext.status = ExtensionStatus::Approved;
                // A clock a duplicate link stopped keeps the extension for when it restarts.
                if let Some(clock) = case.clocks.get_mut(&ext.clock) {
                    clock.extensions.push(ext.span);
                } else if let Some(clock) = case.suspended_clocks.get_mut(&ext.clock) {
                    clock.extensions.push(ext.span);
                }
            }
        }
        EventBody::ExtensionRefused { number, .. } => {
            if let Some(ext) = case.extensions.iter_mut().find(|e| e.number == *number) {
                ext.status = ExtensionStatus::Refused;
            }
        }
        EventBody::SlaWarned { clock, due_at, .. } => record_alert(case, event, AlertStage::Warning, clock, *due_at),
        EventBody::SlaBreached { clock, due_at } => record_alert(case, event, AlertStage::Breach, clock, *due_at),
        EventBody::SlaEscalated { clock, due_at, level } => {
            if let Some(running) = case.clocks.get_mut(clock) {
                running.escalated.push((*due_at, *level));
            }
            record_alert(case, event, AlertStage::Escalation, clock, *due_at)
        }
        EventBody::AlertAcknowledged { alert_id } => {
            if let Some(alert) = case.alerts.iter_mut().find(|a| a.alert_id == *alert_id) {
                alert.acknowledged_by = Some(event.actor.clone());
            }
        }
        EventBody::CommentAdded { number, .. } => {
            case.comments.push(Comment { number: *number, by: event.actor.clone(), at: event.at, retracted: false });
        }
        EventBody::AttachmentAdded { number, name, size, content_type, sha256 } => {
            case.attachments.push(Attachment {
                number: *number,
                name: name.clone(),
                size: *size,
                content_type: content_type.clone(),
                sha256: sha256.clone(),
                by: event.actor.clone(),
                at: event.at,
            });
        }
        EventBody::CommentRetracted { number } => {
            if let Some(comment) = case.comments.iter_mut().find(|c| c.number == *number) {
                comment.retracted = true;
            }
        }
        _ => return true,
    }
    false
}

fn record_alert<K>(case: &mut Case<K>, event: &Event, stage: AlertStage, clock: &ClockRef, due_at: DateTime<Utc>) {
    if let Some(running) = case.clocks.get_mut(clock) {
        running.alerted.push((stage, due_at));
    }
    case.alerts.push(Alert {
        alert_id: event.event_id,
        stage,
        clock: clock.clone(),
        due_at,
        raised_at: event.at,
        acknowledged_by: None,
    });
}

fn apply_whistle(case: &mut Case<Whistle>, event: &Event) {
    let at = event.at;
    match &event.body {
        EventBody::DepartmentAcknowledged { department } => {
            stop(case, &ClockRef::for_department(ClockKind::Ack, department.clone()));
            if let Some(part) = case.kind.departments.get_mut(department) {
                part.status = PartStatus::Acknowledged;
                part.acknowledged_at = Some(at);
            }
            start(case, ClockRef::for_department(ClockKind::WhistleResolve, department.clone()), at);
        }
        EventBody::DepartmentDeclined { department, reason } => {
            stop(case, &ClockRef::for_department(ClockKind::Ack, department.clone()));
            if let Some(part) = case.kind.departments.get_mut(department) {
                part.status = PartStatus::Declined;
                part.decline_reason = Some(reason.clone());
            }
            start(case, ClockRef::for_department(ClockKind::Dispute, department.clone()), at);
        }
        EventBody::DepartmentsAssigned { departments, settles } => {
            for declined in settles {
                stop(case, &ClockRef::for_department(ClockKind::Dispute, declined.clone()));
                if let Some(part) = case.kind.departments.get_mut(declined) {
                    // Released unless it is named again below.
                    part.status = PartStatus::Released;
                }
            }
            let fresh: Vec<String> = departments
                .iter()
                .filter(|d| case.kind.departments.get(*d).is_none_or(|p| p.status == PartStatus::Released))
                .cloned()
                .collect();
            summon(case, &fresh, at);
        }
        EventBody::DepartmentsAdded { departments } => summon(case, departments, at),
        EventBody::ProgressNoted { department, .. } => {
            if let Some(part) = case.kind.departments.get_mut(department) {
                part.notes += 1;
            }
        }
        EventBody::DepartmentHandled { department, .. } => {
            stop(case, &ClockRef::for_department(ClockKind::WhistleResolve, department.clone()));
            if let Some(part) = case.kind.departments.get_mut(department) {
                part.status = PartStatus::Handled;
                part.handled_at = Some(at);
            }
        }
        EventBody::WhistleResolved {} => case.kind.status = WhistleStatus::Resolved,
        EventBody::WhistleConfirmed { satisfaction, ratings } => {
            case.kind.status = WhistleStatus::Confirmed;
            case.kind.satisfaction = Some(*satisfaction);
            for (department, rating) in ratings {
                if let Some(part) = case.kind.departments.get_mut(department) {
                    part.rating = Some(*rating);
                }
            }
        }
        EventBody::WhistleReopened { .. } => {
            case.kind.status = WhistleStatus::Open;
            case.reopen_count += 1;
            let handled: Vec<String> = case
                .kind
                .departments
                .iter()
                .filter(|(_, p)| p.status == PartStatus::Handled)
                .map(|(d, _)| d.clone())
                .collect();
            for department in handled {
                if let Some(part) = case.kind.departments.get_mut(&department) {
                    part.status = PartStatus::Acknowledged;
                    part.handled_at = None;
                }
                start(case, ClockRef::for_department(ClockKind::WhistleResolve, department), at);
            }
        }
        EventBody::WhistleWithdrawn { .. } => {
            case.kind.status = WhistleStatus::Withdrawn;
            case.clocks.clear();
        }
        EventBody::MarkedDuplicate { original } => {
            suspend_clocks(case, *original);
            let kept = std::mem::take(&mut case.kind.departments);
            case.kind.departments = kept
                .iter()
                .map(|(d, p)| {
                    let mut part = p.clone();
                    if part.status != PartStatus::Handled {
                        part.status = PartStatus::Released;
                    }
                    (d.clone(), part)
                })
                .collect();
            case.kind.suspended = Some(SuspendedWhistle { status: case.kind.status, departments: kept });
            case.kind.status = WhistleStatus::Duplicate;
        }
        EventBody::DuplicateUnlinked {} => {
            restore_clocks(case);
            if let Some(suspended) = case.kind.suspended.take() {
                case.kind.status = suspended.status;
                case.kind.departments = suspended.departments;
            }
        }
        EventBody::HandOverProposed { number, from, to, reason } => case.kind.hand_overs.push(HandOver {
            number: *number,
            from: from.clone(),
            to: to.clone(),
            reason: reason.clone(),
            proposed_at: at,
            status: ExtensionStatus::Pending,
            decided_by: None,
        }),
        EventBody::HandOverAccepted { number } | EventBody::HandOverRefused { number, .. } => {
            let accepted = matches!(event.body, EventBody::HandOverAccepted { .. });
            let Some(proposal) = case.kind.hand_overs.iter_mut().find(|h| h.number == *number) else { return };
            proposal.status = if accepted { ExtensionStatus::Approved } else { ExtensionStatus::Refused };
            proposal.decided_by = Some(event.actor.clone());
            let (from, to) = (proposal.from.clone(), proposal.to.clone());
            if accepted {
                reassign(case, &from, &to, at);
            }
        }
        EventBody::DepartmentReassigned { from, to, .. } => reassign(case, from, to, at),
        _ => {}
    }
}

/// Stops every running clock for a duplicate link, keeping them as they were.
fn suspend_clocks<K>(case: &mut Case<K>, original: Uuid) {
    case.duplicate_of = Some(original);
    case.suspended_clocks = std::mem::take(&mut case.clocks);
}

/// Restarts the clocks a duplicate link stopped, with their first start and extensions.
fn restore_clocks<K>(case: &mut Case<K>) {
    case.duplicate_of = None;
    case.clocks = std::mem::take(&mut case.suspended_clocks);
}

/// `from` gives its part to `to`: its clocks stop and it is released (with no mark: a
/// released part is not counted), `to` is summoned afresh.
fn reassign(case: &mut Case<Whistle>, from: &str, to: &str, at: DateTime<Utc>) {
    for kind in [ClockKind::Ack, ClockKind::WhistleResolve, ClockKind::Dispute] {
        stop(case, &ClockRef::for_department(kind, from.to_owned()));
    }
    if let Some(part) = case.kind.departments.get_mut(from) {
        part.status = PartStatus::Released;
    }
    summon(case, &[to.to_owned()], at);
}

fn apply_feedback(case: &mut Case<Feedback>, event: &Event) {
    let at = event.at;
    match &event.body {
        EventBody::FeedbackReplied { .. } => {
            case.kind.replies += 1;
            case.kind.first_replied_at.get_or_insert(at);
            stop(case, &ClockRef::case_wide(ClockKind::FeedbackReply));
        }
        EventBody::FeedbackResolved { .. } => {
            case.kind.status = FeedbackStatus::Resolved;
            // Resolving answers the submitter too.
            case.kind.first_replied_at.get_or_insert(at);
            stop(case, &ClockRef::case_wide(ClockKind::FeedbackReply));
            stop(case, &ClockRef::case_wide(ClockKind::FeedbackResolve));
        }
        EventBody::FeedbackRated { satisfaction } => {
            case.kind.status = FeedbackStatus::Rated;
            case.kind.satisfaction = Some(*satisfaction);
        }
        EventBody::FeedbackReopened { .. } => {
            case.kind.status = FeedbackStatus::Open;
            case.reopen_count += 1;
            start(case, ClockRef::case_wide(ClockKind::FeedbackResolve), at);
        }
        EventBody::MarkedDuplicate { original } => {
            suspend_clocks(case, *original);
            case.kind.suspended_status = Some(case.kind.status);
            case.kind.status = FeedbackStatus::Duplicate;
        }
        EventBody::DuplicateUnlinked {} => {
            restore_clocks(case);
            case.kind.status = case.kind.suspended_status.take().unwrap_or(FeedbackStatus::Open);
        }
        _ => {}
    }
}

/// Clocks serialise as a list of `{clock, running}` entries: JSON object keys must be strings.
mod clock_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{ClockRef, RunningClock};

    #[derive(Serialize, Deserialize)]
    struct Entry<C, R> {
        clock: C,
        running: R,
    }

    pub fn serialize<S: Serializer>(map: &BTreeMap<ClockRef, RunningClock>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|(clock, running)| Entry { clock, running }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ClockRef, RunningClock>, D::Error> {
        let entries: Vec<Entry<ClockRef, RunningClock>> = Vec::deserialize(d)?;
        Ok(entries.into_iter().map(|e| (e.clock, e.running)).collect())
    }
}
