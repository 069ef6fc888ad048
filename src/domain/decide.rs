//! `decide`: given a case's state, a command and the time, the events it produces or why not.
//!
//! Pure: no clock, no I/O, no randomness. Event ids derive from the command id, so deciding
//! the same command twice gives the same events.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::command::{Command, CommandBody};
use super::event::{
    Actor, AlertStage, ClockKind, ClockRef, Event, EventBody, ExtensionSpan, Role, CALENDAR_CASE_ID, SCHEMA_VERSION,
};
use super::files;
use super::state::{
    evolve, Case, ExtensionStatus, Feedback, FeedbackStatus, PartStatus, State, Whistle, WhistleStatus,
};

/// Longest title, in characters.
pub const TITLE_CHARS_MAX: usize = 200;
/// Longest free text (description, reply, note, reason), in characters.
pub const TEXT_CHARS_MAX: usize = 5_000;
/// Longest unit name (township, department), in characters.
pub const UNIT_NAME_CHARS_MAX: usize = 64;
/// Most departments one whistle may name in one command.
pub const DEPARTMENTS_PER_COMMAND_MAX: usize = 30;
/// Most departments one whistle may summon in all.
pub const DEPARTMENTS_PER_WHISTLE_MAX: usize = 60;
/// Most extensions one case may ask for; beyond that a supervisor should step in instead.
pub const EXTENSIONS_PER_CASE_MAX: usize = 20;
/// Longest extension in working days.
pub const EXTENSION_WORKING_DAYS_MAX: u32 = 30;
/// Longest extension in hours.
pub const EXTENSION_HOURS_MAX: u32 = 720;
/// Longest comment, in characters.
pub const COMMENT_CHARS_MAX: usize = 1_000;
/// Most comments one case's thread may hold.
pub const COMMENTS_PER_CASE_MAX: usize = 500;
/// How long after writing a comment its author may retract it, in minutes.
pub const COMMENT_RETRACT_MINUTES: i64 = 10;
/// Most hand-over proposals one whistle may see, whatever their outcome.
pub const HAND_OVERS_PER_CASE_MAX: usize = 3;
/// Shortest anonymous follow-up code, in characters.
pub const FOLLOW_UP_CODE_CHARS_MIN: usize = 16;

/// Why a command was refused. Each message says what is wrong in plain words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A field's value is not acceptable (HTTP 422).
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// The actor may not do this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The case does not exist, or is not of the kind the command is for (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The case is not in a state that allows this (HTTP 409).
    #[error("{0}")]
    Conflict(String),
}

impl Rejection {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Rejection::Invalid { field, message: message.into() }
    }

    /// A short stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Invalid { .. } => "invalid_field",
            Rejection::Forbidden(_) => "forbidden",
            Rejection::NotFound(_) => "not_found",
            Rejection::Conflict(_) => "conflict",
        }
    }
}

type Decision = Result<Vec<EventBody>, Rejection>;

/// Decides a command against the state of its case at time `now`.
pub fn decide(state: &State, cmd: &Command, now: DateTime<Utc>) -> Result<Vec<Event>, Rejection> {
    let bodies = match state {
        _ if matches!(cmd.body, CommandBody::PublishCalendar { .. }) || matches!(state, State::Calendar(_)) => {
            decide_calendar(cmd)?
        }
        _ if matches!(cmd.body, CommandBody::PublishReport { .. }) || matches!(state, State::Report(_)) => {
            decide_report(state, cmd)?
        }
        State::Empty => decide_new(cmd)?,
        _ if matches!(cmd.body, CommandBody::RaiseWhistle { .. } | CommandBody::SubmitFeedback { .. }) => {
            return Err(Rejection::Conflict(format!("case {} already exists", cmd.case_id)));
        }
        State::Whistle(case) => match decide_common(case, cmd, now, whistle_clock_owner)? {
            Some(bodies) => bodies,
            None => decide_whistle(case, cmd, now)?,
        },
        State::Feedback(case) => match decide_common(case, cmd, now, feedback_clock_owner)? {
            Some(bodies) => bodies,
            None => decide_feedback(case, cmd, now)?,
        },
        State::Calendar(_) | State::Report(_) => unreachable!("calendar and report cases are decided above"),
    };
    let actor = event_actor(state, cmd);
    Ok(bodies
        .into_iter()
        .enumerate()
        .map(|(index, body)| Event {
            event_id: event_id(cmd.command_id, index, now),
            case_id: cmd.case_id,
            schema_version: SCHEMA_VERSION,
            actor: actor.clone(),
            at: now,
            body,
        })
        .collect())
}

/// The identity recorded on the events: never the anonymous submitter's.
fn event_actor(state: &State, cmd: &Command) -> Actor {
    let anonymous_submit = matches!(cmd.body, CommandBody::SubmitFeedback { anonymous: true, .. });
    let anonymous_case = matches!(state, State::Feedback(c) if c.kind.anonymous) && cmd.actor.role == Role::Anonymous;
    if anonymous_submit || anonymous_case {
        Actor::anonymous()
    } else {
        cmd.actor.clone()
    }
}

/// A UUIDv7 with the command's time and bits derived from (command id, index).
pub fn event_id(command_id: Uuid, index: usize, now: DateTime<Utc>) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(command_id.as_bytes());
    hasher.update((index as u64).to_be_bytes());
    let digest = hasher.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// SHA-256 of an anonymous follow-up code, lower-case hex.
pub fn follow_up_code_sha256(code: &str) -> String {
    files::sha256_hex(code.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The calendar case

/// Years a published schedule may be for.
pub const CALENDAR_YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

fn decide_calendar(cmd: &Command) -> Decision {
    let CommandBody::PublishCalendar { schedule } = &cmd.body else {
        return Err(Rejection::NotFound(format!("case {} is the calendar, not a whistle or feedback", cmd.case_id)));
    };
    if cmd.case_id != CALENDAR_CASE_ID {
        return Err(Rejection::invalid("case_id", format!("calendars are published on case {CALENDAR_CASE_ID}")));
    }
    if !matches!(cmd.actor.role, Role::Admin | Role::System) {
        return Err(Rejection::Forbidden(format!(
            "a {} may not publish a calendar; only an admin may",
            cmd.actor.role.as_str()
        )));
    }
    if !CALENDAR_YEARS.contains(&schedule.year) {
        return Err(Rejection::invalid(
            "year",
            format!("a calendar year is between 2000 and 2100, not {}", schedule.year),
        ));
    }
    schedule.validate().map_err(|e| Rejection::invalid("calendar", e.to_string()))?;
    Ok(vec![EventBody::CalendarPublished {
        year: schedule.year,
        notice: schedule.notice.trim().to_owned(),
        holidays: schedule.holidays.clone(),
        workdays: schedule.workdays.clone(),
    }])
}

/// The command id the watchdog uses for one alert stage of one clock deadline: the same in
/// every instance, so racing watchdogs store the alert once.
pub fn sla_command_id(case_id: Uuid, clock: &ClockRef, stage: AlertStage, due_at: DateTime<Utc>) -> Uuid {
    sla_command_id_at(case_id, clock, stage, due_at, 2)
}

/// [`sla_command_id`] of the escalation to `level`: level 2 (and every other stage) keeps the
/// id it always had, each further level has its own.
pub fn sla_command_id_at(case_id: Uuid, clock: &ClockRef, stage: AlertStage, due_at: DateTime<Utc>, level: u8) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(b"whistle-sla\0");
    hasher.update(case_id.as_bytes());
    hasher.update(clock.to_string().as_bytes());
    hasher.update([0]);
    hasher.update(stage.as_str().as_bytes());
    hasher.update(due_at.timestamp_millis().to_be_bytes());
    if stage == AlertStage::Escalation && level > 2 {
        hasher.update([level]);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// A UUID (version 8) from the hash of some parts (each length-prefixed, so parts cannot run
/// into each other): the same parts give the same id on every instance.
pub fn derived_id(parts: &[&str]) -> Uuid {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hasher.finalize()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

// ---------------------------------------------------------------------------------------------
// Report cases

/// The case and the command id of a period's 通报: the same on every instance, so that two
/// instances publishing at the same moment store it once.
pub fn report_ids(kind: &str, period: &str) -> (Uuid, Uuid) {
    let id = |purpose: &str| derived_id(&["whistle-report", purpose, kind, period]);
    (id("case"), id("command"))
}

fn decide_report(state: &State, cmd: &Command) -> Decision {
    let CommandBody::PublishReport { kind, period, from, to, summary } = &cmd.body else {
        return Err(Rejection::NotFound(format!("case {} is a 通报, not a whistle or feedback", cmd.case_id)));
    };
    if !matches!(cmd.actor.role, Role::System | Role::Admin) {
        return Err(Rejection::Forbidden(format!("a {} may not publish a 通报", cmd.actor.role.as_str())));
    }
    if !matches!(kind.as_str(), "monthly" | "weekly") {
        return Err(Rejection::invalid("kind", format!("a 通报 is monthly or weekly, not {kind:?}")));
    }
    if cmd.case_id != report_ids(kind, period).0 {
        return Err(Rejection::invalid("case_id", format!("the {kind} 通报 {period} has its own case")));
    }
    if from > to {
        return Err(Rejection::invalid("from", "a period's first day comes before its last"));
    }
    if let State::Report(published) = state {
        return Err(Rejection::Conflict(format!(
            "the {} 通报 {} is already published",
            published.kind, published.period
        )));
    }
    Ok(vec![EventBody::ReportPublished {
        kind: kind.clone(),
        period: period.clone(),
        from: *from,
        to: *to,
        summary: text("summary", summary, TEXT_CHARS_MAX)?,
    }])
}

// ---------------------------------------------------------------------------------------------
// New cases

fn decide_new(cmd: &Command) -> Decision {
    match &cmd.body {
        CommandBody::RaiseWhistle { title, description, departments, category, location, urgency } => {
            require_role(&cmd.actor, Role::Township, "raise a whistle")?;
            Ok(vec![EventBody::WhistleRaised {
                township: cmd.actor.unit.clone(),
                title: text("title", title, TITLE_CHARS_MAX)?,
                description: text("description", description, TEXT_CHARS_MAX)?,
                departments: unit_names("departments", departments)?,
                category: optional_text("category", category.as_deref(), UNIT_NAME_CHARS_MAX)?,
                location: optional_text("location", location.as_deref(), TITLE_CHARS_MAX)?,
                urgency: *urgency,
            }])
        }
        CommandBody::SubmitFeedback { topic, body, anonymous } => {
            require_role(&cmd.actor, Role::Township, "submit feedback")?;
            let follow_up_code_sha256 = match (anonymous, cmd.follow_up_code.as_deref()) {
                (true, Some(code)) if code.chars().count() >= FOLLOW_UP_CODE_CHARS_MIN => {
                    Some(follow_up_code_sha256(code))
                }
                (true, _) => {
                    return Err(Rejection::invalid(
                        "follow_up_code",
                        format!(
                        "anonymous feedback needs a follow-up code of at least {FOLLOW_UP_CODE_CHARS_MIN} characters"
                    ),
                    ))
                }
                (false, _) => None,
            };
            Ok(vec![EventBody::FeedbackSubmitted {
                topic: *topic,
                body: text("body", body, TEXT_CHARS_MAX)?,
                anonymous: *anonymous,
                follow_up_code_sha256,
            }])
        }
        _ => Err(Rejection::NotFound(format!("case {} does not exist", cmd.case_id))),
    }
}

// ---------------------------------------------------------------------------------------------
// Extensions, SLA alerts and alert acknowledgements: the same for both kinds of case

/// Decides the commands both kinds share; `None` when the command is not one of them.
fn decide_common<K>(
    case: &Case<K>,
    cmd: &Command,
    now: DateTime<Utc>,
    clock_owner: fn(&ClockRef) -> (Role, Option<&str>),
) -> Result<Option<Vec<EventBody>>, Rejection> {
    let bodies = match &cmd.body {
        CommandBody::RequestExtension { clock, span, reason } => {
            request_extension(case, cmd, clock, *span, reason, clock_owner)?
        }
        CommandBody::ApproveExtension { number } => {
            require_role(&cmd.actor, Role::Supervisor, "approve an extension")?;
            pending_extension(case, *number)?;
            vec![EventBody::ExtensionApproved { number: *number }]
        }
        CommandBody::RefuseExtension { number, reason } => {
            require_role(&cmd.actor, Role::Supervisor, "refuse an extension")?;
            pending_extension(case, *number)?;
            let reason = optional_text("reason", reason.as_deref(), TEXT_CHARS_MAX)?;
            vec![EventBody::ExtensionRefused { number: *number, reason }]
        }
        CommandBody::RecordSlaWarning { clock, due_at, warn_at } => {
            sla_alert(case, cmd, clock, AlertStage::Warning, *due_at, *warn_at, now)?
                .map(|()| EventBody::SlaWarned { clock: clock.clone(), due_at: *due_at, warn_at: *warn_at })
                .into_iter()
                .collect()
        }
        CommandBody::RecordSlaBreach { clock, due_at } => {
            sla_alert(case, cmd, clock, AlertStage::Breach, *due_at, *due_at, now)?
                .map(|()| EventBody::SlaBreached { clock: clock.clone(), due_at: *due_at })
                .into_iter()
                .collect()
        }
        CommandBody::RecordSlaEscalation { clock, due_at, level } => {
            if *level < 2 {
                return Err(Rejection::invalid("level", "an escalation goes to level 2 or above"));
            }
            if *level > 2 && case.clocks.get(clock).is_some_and(|r| !r.has_escalated(*due_at, *level - 1)) {
                return Err(Rejection::Conflict(format!(
                    "clock {clock} has not been escalated to level {} yet",
                    *level - 1
                )));
            }
            sla_alert(case, cmd, clock, AlertStage::Escalation, *due_at, *due_at, now)?
                .map(|()| EventBody::SlaEscalated { clock: clock.clone(), due_at: *due_at, level: *level })
                .into_iter()
                .collect()
        }
        CommandBody::AcknowledgeAlert { alert_id } => {
            require_role(&cmd.actor, Role::Supervisor, "acknowledge an alert")?;
            let alert = case
                .alerts
                .iter()
                .find(|a| a.alert_id == *alert_id)
                .ok_or_else(|| Rejection::NotFound(format!("no alert {alert_id} on this case")))?;
            if let Some(by) = &alert.acknowledged_by {
                return Err(Rejection::Conflict(format!("alert {alert_id} was already acknowledged by {}", by.unit)));
            }
            vec![EventBody::AlertAcknowledged { alert_id: *alert_id }]
        }
        _ => return Ok(None),
    };
    Ok(Some(bodies))
}

fn request_extension<K>(
    case: &Case<K>,
    cmd: &Command,
    clock: &ClockRef,
    span: ExtensionSpan,
    reason: &str,
    clock_owner: fn(&ClockRef) -> (Role, Option<&str>),
) -> Decision {
    let (role, unit) = clock_owner(clock);
    let owns = cmd.actor.role == role && unit.is_none_or(|u| u == cmd.actor.unit);
    if !owns {
        return Err(Rejection::Forbidden(format!(
            "only the {} that owes clock {clock} may ask to extend it",
            unit.unwrap_or(role.as_str())
        )));
    }
    if !case.clocks.contains_key(clock) {
        return Err(Rejection::Conflict(format!("clock {clock} is not running on this case")));
    }
    match span {
        ExtensionSpan::WorkingDays(n) if (1..=EXTENSION_WORKING_DAYS_MAX).contains(&n) => {}
        ExtensionSpan::Hours(n) if (1..=EXTENSION_HOURS_MAX).contains(&n) => {}
        ExtensionSpan::WorkingDays(_) => {
            return Err(Rejection::invalid(
                "working_days",
                format!("an extension is 1 to {EXTENSION_WORKING_DAYS_MAX} working days"),
            ))
        }
        ExtensionSpan::Hours(_) => {
            return Err(Rejection::invalid("hours", format!("an extension is 1 to {EXTENSION_HOURS_MAX} hours")))
        }
    }
    if case.extensions.iter().any(|e| &e.clock == clock && e.status == ExtensionStatus::Pending) {
        return Err(Rejection::Conflict(format!("an extension of clock {clock} is already waiting for a supervisor")));
    }
    if case.extensions.len() >= EXTENSIONS_PER_CASE_MAX {
        return Err(Rejection::Conflict(format!("this case already has {EXTENSIONS_PER_CASE_MAX} extension requests")));
    }
    Ok(vec![EventBody::ExtensionRequested {
        number: case.extensions.len() as u32 + 1,
        clock: clock.clone(),
        span,
        reason: text("reason", reason, TEXT_CHARS_MAX)?,
    }])
}

fn pending_extension<K>(case: &Case<K>, number: u32) -> Result<(), Rejection> {
    let ext = case
        .extensions
        .iter()
        .find(|e| e.number == number)
        .ok_or_else(|| Rejection::NotFound(format!("no extension request {number} on this case")))?;
    if ext.status != ExtensionStatus::Pending {
        return Err(Rejection::Conflict(format!("extension request {number} was already decided")));
    }
    if !case.clocks.contains_key(&ext.clock) {
        return Err(Rejection::Conflict(format!("clock {} has stopped; there is nothing to extend", ext.clock)));
    }
    Ok(())
}

/// Checks an SLA alert; `None` when it is already recorded (a repeat is not an error).
fn sla_alert<K>(
    case: &Case<K>,
    cmd: &Command,
    clock: &ClockRef,
    stage: AlertStage,
    due_at: DateTime<Utc>,
    fires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<()>, Rejection> {
    require_role(&cmd.actor, Role::System, "record an SLA alert")?;
    let running = case
        .clocks
        .get(clock)
        .ok_or_else(|| Rejection::Conflict(format!("clock {clock} is not running on this case")))?;
    if now < fires_at {
        return Err(Rejection::Conflict(format!(
            "the {} for clock {clock} is not due until {}",
            stage.as_str(),
            fires_at.to_rfc3339()
        )));
    }
    let superseded = stage == AlertStage::Warning && running.has_alerted(AlertStage::Breach, due_at);
    let recorded = match cmd.body {
        CommandBody::RecordSlaEscalation { level, .. } => running.has_escalated(due_at, level),
        _ => running.has_alerted(stage, due_at),
    };
    if recorded || superseded {
        return Ok(None);
    }
    Ok(Some(()))
}

// ---------------------------------------------------------------------------------------------
// Whistles (吹哨报到)

/// Who owes a whistle clock: the department for its own clocks, a coordinator for disputes.
fn whistle_clock_owner(clock: &ClockRef) -> (Role, Option<&str>) {
    match clock.kind {
        ClockKind::Dispute => (Role::Coordinator, None),
        _ => (Role::Department, clock.department.as_deref()),
    }
}

fn decide_whistle(case: &Case<Whistle>, cmd: &Command, now: DateTime<Utc>) -> Decision {
    let whistle = &case.kind;
    if matches!(cmd.body, CommandBody::AddAttachment { .. }) {
        let actor = &cmd.actor;
        let takes_part = match actor.role {
            Role::Township => actor.unit == whistle.township,
            Role::Department => involved_or_suspended(whistle, &actor.unit),
            Role::Coordinator | Role::Supervisor => true,
            _ => false,
        };
        if !takes_part {
            return Err(Rejection::Forbidden(
                "only the township, its summoned departments, the coordinator and supervisors attach files to a whistle"
                    .into(),
            ));
        }
        return decide_attachment(case, cmd);
    }
    if matches!(cmd.body, CommandBody::AddComment { .. } | CommandBody::RetractComment { .. }) {
        if matches!(cmd.actor.role, Role::Anonymous | Role::System) {
            return Err(Rejection::Forbidden("sign in to comment on a whistle".into()));
        }
        return decide_comment(case, cmd, now);
    }
    if matches!(
        cmd.body,
        CommandBody::ProposeHandOver { .. }
            | CommandBody::DecideHandOver { .. }
            | CommandBody::ReassignDepartment { .. }
    ) {
        return decide_hand_over(case, cmd);
    }
    match &cmd.body {
        CommandBody::MarkDuplicate { original } => {
            may_link(whistle, &cmd.actor)?;
            let closed = matches!(whistle.status, WhistleStatus::Confirmed | WhistleStatus::Withdrawn)
                .then(|| status_zh(whistle.status));
            decide_link(case.case_id, *original, whistle.status == WhistleStatus::Duplicate, closed)
        }
        CommandBody::UnlinkDuplicate => {
            may_link(whistle, &cmd.actor)?;
            if whistle.status != WhistleStatus::Duplicate {
                return Err(Rejection::Conflict("this whistle is not marked a duplicate".into()));
            }
            Ok(vec![EventBody::DuplicateUnlinked {}])
        }
        CommandBody::AcknowledgeSummons => {
            let department = summoned_department(whistle, &cmd.actor, "report in")?;
            Ok(vec![EventBody::DepartmentAcknowledged { department }])
        }
        CommandBody::DeclineSummons { reason } => {
            let department = summoned_department(whistle, &cmd.actor, "decline")?;
            Ok(vec![EventBody::DepartmentDeclined { department, reason: text("reason", reason, TEXT_CHARS_MAX)? }])
        }
        CommandBody::AssignDepartments { departments } => {
            require_role(&cmd.actor, Role::Coordinator, "assign departments")?;
            require_open(whistle)?;
            let departments = unit_names("departments", departments)?;
            let settles: Vec<String> = whistle.open_disputes().map(str::to_owned).collect();
            if settles.is_empty() {
                return Err(Rejection::Conflict("no responsibility dispute is open on this whistle".into()));
            }
            require_room(whistle, &departments)?;
            then_maybe_resolved(case, cmd, EventBody::DepartmentsAssigned { departments, settles })
        }
        CommandBody::AddDepartments { departments } => {
            require_township(whistle, &cmd.actor, "summon more departments")?;
            require_open(whistle)?;
            let departments = unit_names("departments", departments)?;
            if let Some(d) = departments.iter().find(|d| is_involved(whistle, d)) {
                return Err(Rejection::Conflict(format!("department {d} is already summoned on this whistle")));
            }
            require_room(whistle, &departments)?;
            Ok(vec![EventBody::DepartmentsAdded { departments }])
        }
        CommandBody::NoteProgress { note } => {
            let department = working_department(whistle, &cmd.actor, "note progress")?;
            Ok(vec![EventBody::ProgressNoted { department, note: text("note", note, TEXT_CHARS_MAX)? }])
        }
        CommandBody::ReportHandled { summary } => {
            let department = working_department(whistle, &cmd.actor, "report its part handled")?;
            let summary = text("summary", summary, TEXT_CHARS_MAX)?;
            then_maybe_resolved(case, cmd, EventBody::DepartmentHandled { department, summary })
        }
        CommandBody::ConfirmWhistle { satisfaction, ratings } => {
            require_township(whistle, &cmd.actor, "confirm it")?;
            require_resolved(whistle, "confirmed")?;
            if let Some(department) =
                ratings.keys().find(|d| whistle.departments.get(*d).is_none_or(|p| p.status != PartStatus::Handled))
            {
                return Err(Rejection::invalid(
                    "ratings",
                    format!(
                        "{department} has no handled part in this whistle; rate only departments that handled theirs"
                    ),
                ));
            }
            Ok(vec![EventBody::WhistleConfirmed { satisfaction: *satisfaction, ratings: ratings.clone() }])
        }
        CommandBody::ReopenWhistle { reason } => {
            require_township(whistle, &cmd.actor, "reopen it")?;
            require_resolved(whistle, "reopened")?;
            Ok(vec![EventBody::WhistleReopened { reason: text("reason", reason, TEXT_CHARS_MAX)? }])
        }
        CommandBody::WithdrawWhistle { reason } => {
            require_township(whistle, &cmd.actor, "withdraw it")?;
            if matches!(whistle.status, WhistleStatus::Confirmed | WhistleStatus::Withdrawn | WhistleStatus::Duplicate)
            {
                return Err(Rejection::Conflict(format!("this whistle is already {}", status_zh(whistle.status))));
            }
            let reason = optional_text("reason", reason.as_deref(), TEXT_CHARS_MAX)?;
            Ok(vec![EventBody::WhistleWithdrawn { reason }])
        }
        _ => Err(Rejection::NotFound(format!("case {} is a whistle, not feedback", case.case_id))),
    }
}

/// Emits `first`, and `WhistleResolved` after it when it leaves every part handled.
fn then_maybe_resolved(case: &Case<Whistle>, cmd: &Command, first: EventBody) -> Decision {
    let probe = Event {
        event_id: Uuid::nil(),
        case_id: case.case_id,
        schema_version: SCHEMA_VERSION,
        actor: cmd.actor.clone(),
        at: case.updated_at,
        body: first,
    };
    let after = evolve(State::Whistle(case.clone()), &probe);
    let resolved = matches!(&after, State::Whistle(c) if c.kind.all_handled());
    let mut bodies = vec![probe.body];
    if resolved {
        bodies.push(EventBody::WhistleResolved {});
    }
    Ok(bodies)
}

fn status_zh(status: WhistleStatus) -> &'static str {
    match status {
        WhistleStatus::Open => "open",
        WhistleStatus::Resolved => "resolved",
        WhistleStatus::Confirmed => "confirmed",
        WhistleStatus::Withdrawn => "withdrawn",
        WhistleStatus::Duplicate => "marked a duplicate",
    }
}

// ---------------------------------------------------------------------------------------------
// Duplicates, comments, hand-overs

/// An evidence file, for an actor the case's kind has already let in.
fn decide_attachment<K>(case: &Case<K>, cmd: &Command) -> Decision {
    let CommandBody::AddAttachment { name, size, content_type, sha256 } = &cmd.body else {
        return Err(Rejection::NotFound("not an attachment".into()));
    };
    if case.attachments.len() >= files::ATTACHMENTS_PER_CASE_MAX {
        return Err(Rejection::Conflict(format!(
            "this case carries its most files ({})",
            files::ATTACHMENTS_PER_CASE_MAX
        )));
    }
    let name = files::clean_name(name).ok_or_else(|| Rejection::invalid("name", "a file needs a name"))?;
    if *size == 0 {
        return Err(Rejection::invalid("size", "the file is empty"));
    }
    if !files::ATTACHMENT_TYPES.contains(&content_type.as_str()) {
        return Err(Rejection::invalid("content_type", format!("{content_type:?} is not a kind of file taken")));
    }
    if !files::is_sha256_hex(sha256) {
        return Err(Rejection::invalid("sha256", "64 lowercase hex digits"));
    }
    let number = case.attachments.len() as u32 + 1;
    Ok(vec![EventBody::AttachmentAdded {
        number,
        name,
        size: *size,
        content_type: content_type.clone(),
        sha256: sha256.clone(),
    }])
}

/// A comment or its retraction, for an actor the case's kind has already let in.
fn decide_comment<K>(case: &Case<K>, cmd: &Command, now: DateTime<Utc>) -> Decision {
    match &cmd.body {
        CommandBody::AddComment { body, mentions } => {
            if case.comments.len() >= COMMENTS_PER_CASE_MAX {
                return Err(Rejection::Conflict(format!(
                    "this case's thread holds its most comments ({COMMENTS_PER_CASE_MAX})"
                )));
            }
            let body = text("body", body, COMMENT_CHARS_MAX)?;
            let mut named: Vec<String> = Vec::new();
            for unit in mentions {
                if !named.contains(unit) {
                    named.push(unit.clone());
                }
            }
            let number = case.comments.len() as u32 + 1;
            Ok(vec![EventBody::CommentAdded { number, body, mentions: named }])
        }
        CommandBody::RetractComment { number } => {
            let comment = case
                .comments
                .iter()
                .find(|c| c.number == *number)
                .ok_or_else(|| Rejection::NotFound(format!("no comment {number} on this case")))?;
            if comment.by != cmd.actor {
                return Err(Rejection::Forbidden("only its author may retract a comment".into()));
            }
            if comment.retracted {
                return Err(Rejection::Conflict(format!("comment {number} is already retracted")));
            }
            if now - comment.at > chrono::Duration::minutes(COMMENT_RETRACT_MINUTES) {
                return Err(Rejection::Conflict(format!(
                    "a comment can be retracted within {COMMENT_RETRACT_MINUTES} minutes of writing it"
                )));
            }
            Ok(vec![EventBody::CommentRetracted { number: *number }])
        }
        _ => Err(Rejection::NotFound("not a comment".into())),
    }
}

/// Whether a department takes part in the whistle (or did, before a duplicate link released it).
fn involved_or_suspended(whistle: &Whistle, department: &str) -> bool {
    is_involved(whistle, department)
        || whistle
            .suspended
            .as_ref()
            .is_some_and(|s| s.departments.get(department).is_some_and(|p| p.status != PartStatus::Released))
}

/// Who may link a whistle to another as a duplicate, or unlink it: its township, the
/// coordinator, or a department it summons.
fn may_link(whistle: &Whistle, actor: &Actor) -> Result<(), Rejection> {
    let allowed = match actor.role {
        Role::Township => actor.unit == whistle.township,
        Role::Coordinator => true,
        Role::Department => involved_or_suspended(whistle, &actor.unit),
        _ => false,
    };
    if !allowed {
        return Err(Rejection::Forbidden(
            "only the township that raised it, the coordinator or a department it summons may link it".into(),
        ));
    }
    Ok(())
}

fn decide_link(case_id: Uuid, original: Uuid, duplicate: bool, closed: Option<&str>) -> Decision {
    if original == case_id {
        return Err(Rejection::invalid("of", "a case cannot be a duplicate of itself"));
    }
    if duplicate {
        return Err(Rejection::Conflict("this case is already marked a duplicate; unlink it first".into()));
    }
    if let Some(status) = closed {
        return Err(Rejection::Conflict(format!("this case is {status}: there is nothing left to link")));
    }
    Ok(vec![EventBody::MarkedDuplicate { original }])
}

fn decide_hand_over(case: &Case<Whistle>, cmd: &Command) -> Decision {
    let whistle = &case.kind;
    match &cmd.body {
        CommandBody::ProposeHandOver { to, reason } => {
            let part = department_part(whistle, &cmd.actor, "propose a hand-over")?;
            require_open(whistle)?;
            if !matches!(part, PartStatus::Summoned | PartStatus::Acknowledged) {
                return Err(Rejection::Conflict(format!(
                    "department {} no longer has a part to hand over",
                    cmd.actor.unit
                )));
            }
            let to = unit_names("to", std::slice::from_ref(to))?.remove(0);
            if to == cmd.actor.unit || is_involved(whistle, &to) {
                return Err(Rejection::Conflict(format!("department {to} is already summoned on this whistle")));
            }
            if whistle.hand_overs.iter().any(|h| h.from == cmd.actor.unit && h.status == ExtensionStatus::Pending) {
                return Err(Rejection::Conflict("a hand-over proposed by this department awaits a decision".into()));
            }
            if whistle.hand_overs.len() >= HAND_OVERS_PER_CASE_MAX {
                return Err(Rejection::Conflict(format!(
                    "a whistle may see at most {HAND_OVERS_PER_CASE_MAX} hand-over proposals"
                )));
            }
            let reason = text("reason", reason, TEXT_CHARS_MAX)?;
            let number = whistle.hand_overs.len() as u32 + 1;
            Ok(vec![EventBody::HandOverProposed { number, from: cmd.actor.unit.clone(), to, reason }])
        }
        CommandBody::DecideHandOver { number, accept, reason, township_decides } => {
            let allowed = match cmd.actor.role {
                Role::Coordinator => true,
                Role::Township => *township_decides && cmd.actor.unit == whistle.township,
                _ => false,
            };
            if !allowed {
                let who = if *township_decides { "the coordinator or the township" } else { "the coordinator" };
                return Err(Rejection::Forbidden(format!("only {who} may decide a hand-over")));
            }
            let proposal = whistle
                .hand_overs
                .iter()
                .find(|h| h.number == *number)
                .ok_or_else(|| Rejection::NotFound(format!("no hand-over proposal {number}")))?;
            if proposal.status != ExtensionStatus::Pending {
                return Err(Rejection::Conflict(format!("hand-over proposal {number} is already decided")));
            }
            require_open(whistle)?;
            if !*accept {
                let reason = optional_text("reason", reason.as_deref(), TEXT_CHARS_MAX)?;
                return Ok(vec![EventBody::HandOverRefused { number: *number, reason }]);
            }
            if is_involved(whistle, &proposal.to) {
                return Err(Rejection::Conflict(format!("department {} is already summoned", proposal.to)));
            }
            if !is_involved(whistle, &proposal.from) {
                return Err(Rejection::Conflict(format!("department {} no longer has a part", proposal.from)));
            }
            Ok(vec![EventBody::HandOverAccepted { number: *number }])
        }
        CommandBody::ReassignDepartment { from, to, reason } => {
            require_role(&cmd.actor, Role::Coordinator, "reassign a department's part")?;
            require_open(whistle)?;
            let names = unit_names("to", &[from.clone(), to.clone()])?;
            let (from, to) = (names[0].clone(), names[1].clone());
            if !is_involved(whistle, &from) {
                return Err(Rejection::Conflict(format!("department {from} has no part in this whistle")));
            }
            if is_involved(whistle, &to) {
                return Err(Rejection::Conflict(format!("department {to} is already summoned on this whistle")));
            }
            let reason = text("reason", reason, TEXT_CHARS_MAX)?;
            Ok(vec![EventBody::DepartmentReassigned { from, to, reason }])
        }
        _ => Err(Rejection::NotFound("not a hand-over".into())),
    }
}

fn require_open(whistle: &Whistle) -> Result<(), Rejection> {
    if whistle.status != WhistleStatus::Open {
        return Err(Rejection::Conflict(format!("this whistle is {}, not open", status_zh(whistle.status))));
    }
    Ok(())
}

fn require_resolved(whistle: &Whistle, verb: &str) -> Result<(), Rejection> {
    if whistle.status != WhistleStatus::Resolved {
        return Err(Rejection::Conflict(format!(
            "only a resolved whistle can be {verb}; this one is {}",
            status_zh(whistle.status)
        )));
    }
    Ok(())
}

fn require_township(whistle: &Whistle, actor: &Actor, what: &str) -> Result<(), Rejection> {
    if actor.role != Role::Township || actor.unit != whistle.township {
        return Err(Rejection::Forbidden(format!(
            "only {}, the township that raised this whistle, may {what}",
            whistle.township
        )));
    }
    Ok(())
}

/// A department counts as involved unless a coordinator released it.
fn is_involved(whistle: &Whistle, department: &str) -> bool {
    whistle.departments.get(department).is_some_and(|p| p.status != PartStatus::Released)
}

fn require_room(whistle: &Whistle, adding: &[String]) -> Result<(), Rejection> {
    let new = adding.iter().filter(|d| !whistle.departments.contains_key(*d)).count();
    if whistle.departments.len() + new > DEPARTMENTS_PER_WHISTLE_MAX {
        return Err(Rejection::invalid(
            "departments",
            format!("a whistle may summon at most {DEPARTMENTS_PER_WHISTLE_MAX} departments"),
        ));
    }
    Ok(())
}

/// The acting department, if it is summoned and has not yet answered.
fn summoned_department(whistle: &Whistle, actor: &Actor, what: &str) -> Result<String, Rejection> {
    let part = department_part(whistle, actor, what)?;
    require_open(whistle)?;
    match part {
        PartStatus::Summoned => Ok(actor.unit.clone()),
        PartStatus::Acknowledged | PartStatus::Handled => {
            Err(Rejection::Conflict(format!("department {} has already reported in", actor.unit)))
        }
        PartStatus::Declined | PartStatus::Released => {
            Err(Rejection::Conflict(format!("department {} has declined this whistle", actor.unit)))
        }
    }
}

/// The acting department, if it reported in and is working on its part.
fn working_department(whistle: &Whistle, actor: &Actor, what: &str) -> Result<String, Rejection> {
    let part = department_part(whistle, actor, what)?;
    require_open(whistle)?;
    match part {
        PartStatus::Acknowledged => Ok(actor.unit.clone()),
        PartStatus::Summoned => {
            Err(Rejection::Conflict(format!("department {} must report in (报到) first", actor.unit)))
        }
        PartStatus::Handled => {
            Err(Rejection::Conflict(format!("department {} has already reported its part handled", actor.unit)))
        }
        PartStatus::Declined | PartStatus::Released => {
            Err(Rejection::Conflict(format!("department {} has declined this whistle", actor.unit)))
        }
    }
}

fn department_part(whistle: &Whistle, actor: &Actor, what: &str) -> Result<PartStatus, Rejection> {
    require_role(actor, Role::Department, what)?;
    whistle
        .departments
        .get(&actor.unit)
        .map(|p| p.status)
        .ok_or_else(|| Rejection::Forbidden(format!("department {} is not summoned on this whistle", actor.unit)))
}

// ---------------------------------------------------------------------------------------------
// Feedback (基层意见直通车)

/// Who owes a feedback clock: the burden-reduction office.
fn feedback_clock_owner(_clock: &ClockRef) -> (Role, Option<&str>) {
    (Role::Office, None)
}

fn decide_feedback(case: &Case<Feedback>, cmd: &Command, now: DateTime<Utc>) -> Decision {
    let feedback = &case.kind;
    if matches!(cmd.body, CommandBody::AddAttachment { .. }) {
        let actor = &cmd.actor;
        // An anonymous submitter attaches nothing: a file can say who took it.
        let takes_part = matches!(actor.role, Role::Office | Role::Supervisor)
            || (actor.role != Role::Anonymous && feedback.submitter.as_ref() == Some(actor));
        if !takes_part {
            return Err(Rejection::Forbidden(
                "only the submitter (named), the office and supervisors attach files to feedback".into(),
            ));
        }
        return decide_attachment(case, cmd);
    }
    if matches!(cmd.body, CommandBody::AddComment { .. } | CommandBody::RetractComment { .. }) {
        match cmd.actor.role {
            Role::System => return Err(Rejection::Forbidden("the system does not comment".into())),
            // The anonymous submitter comments with the follow-up code.
            Role::Anonymous => require_submitter(feedback, cmd, "comment")?,
            _ => {}
        }
        return decide_comment(case, cmd, now);
    }
    match &cmd.body {
        CommandBody::MarkDuplicate { original } => {
            require_role(&cmd.actor, Role::Office, "link feedback items")?;
            let closed = (feedback.status == FeedbackStatus::Rated).then_some("closed with a rating");
            decide_link(case.case_id, *original, feedback.status == FeedbackStatus::Duplicate, closed)
        }
        CommandBody::UnlinkDuplicate => {
            require_role(&cmd.actor, Role::Office, "unlink feedback items")?;
            if feedback.status != FeedbackStatus::Duplicate {
                return Err(Rejection::Conflict("this feedback is not marked a duplicate".into()));
            }
            Ok(vec![EventBody::DuplicateUnlinked {}])
        }
        CommandBody::ReplyFeedback { body } => {
            require_role(&cmd.actor, Role::Office, "reply to feedback")?;
            require_feedback(feedback, FeedbackStatus::Open, "replied to")?;
            Ok(vec![EventBody::FeedbackReplied { body: text("body", body, TEXT_CHARS_MAX)? }])
        }
        CommandBody::ResolveFeedback { summary } => {
            require_role(&cmd.actor, Role::Office, "resolve feedback")?;
            require_feedback(feedback, FeedbackStatus::Open, "resolved")?;
            Ok(vec![EventBody::FeedbackResolved { summary: text("summary", summary, TEXT_CHARS_MAX)? }])
        }
        CommandBody::RateFeedback { satisfaction } => {
            require_submitter(feedback, cmd, "rate it")?;
            require_feedback(feedback, FeedbackStatus::Resolved, "rated")?;
            Ok(vec![EventBody::FeedbackRated { satisfaction: *satisfaction }])
        }
        CommandBody::ReopenFeedback { reason } => {
            require_submitter(feedback, cmd, "reopen it")?;
            require_feedback(feedback, FeedbackStatus::Resolved, "reopened")?;
            Ok(vec![EventBody::FeedbackReopened { reason: text("reason", reason, TEXT_CHARS_MAX)? }])
        }
        _ => Err(Rejection::NotFound(format!("case {} is feedback, not a whistle", case.case_id))),
    }
}

fn require_feedback(feedback: &Feedback, wanted: FeedbackStatus, verb: &str) -> Result<(), Rejection> {
    if feedback.status == wanted {
        return Ok(());
    }
    let now = match feedback.status {
        FeedbackStatus::Open => "still open",
        FeedbackStatus::Resolved => "already resolved",
        FeedbackStatus::Rated => "closed with a rating",
        FeedbackStatus::Duplicate => "marked a duplicate",
    };
    Err(Rejection::Conflict(format!("this feedback cannot be {verb}: it is {now}")))
}

/// The submitter acts by identity, or, when anonymous, by the follow-up code.
fn require_submitter(feedback: &Feedback, cmd: &Command, what: &str) -> Result<(), Rejection> {
    let by_identity = feedback.submitter.as_ref() == Some(&cmd.actor);
    let by_code = match (&feedback.follow_up_code_sha256, cmd.follow_up_code.as_deref()) {
        (Some(stored), Some(code)) => *stored == follow_up_code_sha256(code),
        _ => false,
    };
    if by_identity || by_code {
        Ok(())
    } else {
        Err(Rejection::Forbidden(format!("only the submitter of this feedback may {what}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Field checks

fn require_role(actor: &Actor, role: Role, what: &str) -> Result<(), Rejection> {
    if actor.role != role {
        return Err(Rejection::Forbidden(format!(
            "a {} may not {what}; only a {} may",
            actor.role.as_str(),
            role.as_str()
        )));
    }
    Ok(())
}

/// Trimmed, non-empty text of at most `chars_max` characters, with no control characters
/// other than line breaks and tabs.
fn text(field: &'static str, value: &str, chars_max: usize) -> Result<String, Rejection> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Rejection::invalid(field, format!("{field} must not be empty")));
    }
    if value.chars().count() > chars_max {
        return Err(Rejection::invalid(field, format!("{field} is longer than {chars_max} characters")));
    }
    if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(Rejection::invalid(field, format!("{field} contains control characters")));
    }
    Ok(value.to_owned())
}

/// Optional text: absent or blank is `None`.
fn optional_text(field: &'static str, value: Option<&str>, chars_max: usize) -> Result<Option<String>, Rejection> {
    match value {
        Some(v) if !v.trim().is_empty() => text(field, v, chars_max).map(Some),
        _ => Ok(None),
    }
}

/// A non-empty list of distinct, single-line unit names.
fn unit_names(field: &'static str, names: &[String]) -> Result<Vec<String>, Rejection> {
    if names.is_empty() {
        return Err(Rejection::invalid(field, format!("{field} must name at least one department")));
    }
    if names.len() > DEPARTMENTS_PER_COMMAND_MAX {
        return Err(Rejection::invalid(
            field,
            format!("{field} may name at most {DEPARTMENTS_PER_COMMAND_MAX} departments"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = text(field, name, UNIT_NAME_CHARS_MAX)?;
        if name.contains(['\n', '\r', '\t']) {
            return Err(Rejection::invalid(field, format!("department name {name:?} must be one line")));
        }
        if out.contains(&name) {
            return Err(Rejection::invalid(field, format!("department {name} is named twice")));
        }
        out.push(name);
    }
    Ok(out)
}
