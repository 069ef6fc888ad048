//! Events: the facts stored in the log. Past tense, stable `type` strings, versioned.
//!
//! Never rename a stored type or field: old events must keep decoding. A change of shape
//! gets a new schema version and a schema file of its own under `schemas/`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::calendar::HolidayRange;

/// Schema version written into every event this code produces.
pub const SCHEMA_VERSION: u32 = 1;

/// The case that holds calendar publications: a fixed id, so every instance agrees on it.
pub const CALENDAR_CASE_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_8000_8000_6361_6c65_6e64);

/// What kind of party acts. A unit names the township, department or office.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Township,
    Department,
    Office,
    Coordinator,
    Supervisor,
    Admin,
    /// The service itself (watchdog, calendar loader).
    System,
    /// An anonymous feedback submitter: no identity is stored.
    Anonymous,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Township => "township",
            Role::Department => "department",
            Role::Office => "office",
            Role::Coordinator => "coordinator",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::System => "system",
            Role::Anonymous => "anonymous",
        }
    }
}

/// Who did something: a role and the unit acting in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    pub role: Role,
    pub unit: String,
}

impl Actor {
    pub fn new(role: Role, unit: impl Into<String>) -> Self {
        Actor { role, unit: unit.into() }
    }

    pub fn system() -> Self {
        Actor::new(Role::System, "whistle")
    }

    pub fn anonymous() -> Self {
        Actor::new(Role::Anonymous, "")
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    #[default]
    Normal,
    Urgent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    Satisfied,
    BasicallySatisfied,
    Unsatisfied,
}

/// The speech's own list of burden problems (文山会海, 过度留痕, 指尖负担, 督查考核, 责任甩锅).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackTopic {
    /// 文山会海
    DocumentsMeetings,
    /// 过度留痕
    ExcessivePaperwork,
    /// 指尖负担
    AppsChatGroups,
    /// 督查考核
    InspectionsAssessments,
    /// 责任甩锅
    WorkPushedDown,
    /// 其他
    Other,
}

impl FeedbackTopic {
    pub const ALL: [FeedbackTopic; 6] = [
        FeedbackTopic::DocumentsMeetings,
        FeedbackTopic::ExcessivePaperwork,
        FeedbackTopic::AppsChatGroups,
        FeedbackTopic::InspectionsAssessments,
        FeedbackTopic::WorkPushedDown,
        FeedbackTopic::Other,
    ];

    pub fn label_zh(self) -> &'static str {
        match self {
            FeedbackTopic::DocumentsMeetings => "文山会海",
            FeedbackTopic::ExcessivePaperwork => "过度留痕",
            FeedbackTopic::AppsChatGroups => "指尖负担",
            FeedbackTopic::InspectionsAssessments => "督查考核",
            FeedbackTopic::WorkPushedDown => "责任甩锅",
            FeedbackTopic::Other => "其他",
        }
    }
}

/// The kinds of SLA clock (DESIGN.md, "SLA clocks").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    /// A summoned department must report in (报到).
    Ack,
    /// A declined summons must be coordinated.
    Dispute,
    /// The office must first reply to feedback.
    FeedbackReply,
    /// The office must resolve feedback.
    FeedbackResolve,
    /// An acknowledged department must report its part handled.
    WhistleResolve,
}

impl ClockKind {
    pub const ALL: [ClockKind; 5] = [
        ClockKind::Ack,
        ClockKind::Dispute,
        ClockKind::FeedbackReply,
        ClockKind::FeedbackResolve,
        ClockKind::WhistleResolve,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::Ack => "ack",
            ClockKind::Dispute => "dispute",
            ClockKind::FeedbackReply => "feedback_reply",
            ClockKind::FeedbackResolve => "feedback_resolve",
            ClockKind::WhistleResolve => "whistle_resolve",
        }
    }

    /// Whether one clock of this kind runs per department.
    pub fn per_department(self) -> bool {
        matches!(self, ClockKind::Ack | ClockKind::Dispute | ClockKind::WhistleResolve)
    }
}

/// One clock of one case: its kind and, for per-department clocks, the department.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ClockRef {
    pub kind: ClockKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

impl ClockRef {
    pub fn case_wide(kind: ClockKind) -> Self {
        ClockRef { kind, department: None }
    }

    pub fn for_department(kind: ClockKind, department: impl Into<String>) -> Self {
        ClockRef { kind, department: Some(department.into()) }
    }
}

impl std::fmt::Display for ClockRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.department {
            Some(d) => write!(f, "{}:{}", self.kind.as_str(), d),
            None => f.write_str(self.kind.as_str()),
        }
    }
}

/// How much longer an extension gives a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionSpan {
    WorkingDays(u32),
    Hours(u32),
}

/// The stage of an SLA alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStage {
    Warning,
    Breach,
    Escalation,
}

impl AlertStage {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStage::Warning => "warning",
            AlertStage::Breach => "breach",
            AlertStage::Escalation => "escalation",
        }
    }
}

/// One stored fact about one case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// UUIDv7, derived deterministically from the command that produced it.
    pub event_id: Uuid,
    pub case_id: Uuid,
    pub schema_version: u32,
    pub actor: Actor,
    /// Server time; clients never set it.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        self.body.type_name()
    }
}

/// What happened. The serde tag is the stored `type` string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// A township raised a whistle (吹哨) summoning departments.
    WhistleRaised {
        township: String,
        title: String,
        description: String,
        departments: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
        urgency: Urgency,
    },
    /// A summoned department reported in (报到).
    DepartmentAcknowledged { department: String },
    /// A summoned department said the matter is not its responsibility.
    DepartmentDeclined { department: String, reason: String },
    /// A coordinator settled the open responsibility disputes by naming departments.
    DepartmentsAssigned { departments: Vec<String>, settles: Vec<String> },
    /// The township summoned more departments.
    DepartmentsAdded { departments: Vec<String> },
    /// A department noted progress.
    ProgressNoted { department: String, note: String },
    /// A department reported its part handled.
    DepartmentHandled { department: String, summary: String },
    /// Every responsible department has handled its part.
    WhistleResolved {},
    /// The township confirmed the resolution and rated it: the whole whistle, and optionally
    /// single departments' parts (a department without its own rating gets the whole one).
    WhistleConfirmed {
        satisfaction: Satisfaction,
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        ratings: std::collections::BTreeMap<String, Satisfaction>,
    },
    /// The township reopened a resolved whistle.
    WhistleReopened { reason: String },
    /// The township withdrew its whistle.
    WhistleWithdrawn {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A grassroots official reported a burden problem (基层意见直通车).
    FeedbackSubmitted {
        topic: FeedbackTopic,
        body: String,
        anonymous: bool,
        /// SHA-256 (hex) of the anonymous submitter's follow-up code; never the code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        follow_up_code_sha256: Option<String>,
    },
    /// The office replied.
    FeedbackReplied { body: String },
    /// The office resolved the feedback.
    FeedbackResolved { summary: String },
    /// The submitter rated the resolution.
    FeedbackRated { satisfaction: Satisfaction },
    /// The submitter reopened resolved feedback.
    FeedbackReopened { reason: String },
    /// The party that owes a clock asked for more time.
    ExtensionRequested { number: u32, clock: ClockRef, span: ExtensionSpan, reason: String },
    /// A supervisor granted an extension; the clock's deadline moves.
    ExtensionApproved { number: u32 },
    /// A supervisor refused an extension.
    ExtensionRefused {
        number: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A clock reached its warning time.
    SlaWarned { clock: ClockRef, due_at: DateTime<Utc>, warn_at: DateTime<Utc> },
    /// A clock ran out.
    SlaBreached { clock: ClockRef, due_at: DateTime<Utc> },
    /// A clock was still overdue after the escalation delay; the next level is told.
    SlaEscalated { clock: ClockRef, due_at: DateTime<Utc>, level: u8 },
    /// A supervisor acknowledged an alert (the alert id is the id of the SLA event).
    AlertAcknowledged { alert_id: Uuid },
    /// A year's official working-day schedule was published (or corrected). Stored on the
    /// calendar case; open deadlines that depend on that year are recomputed.
    CalendarPublished { year: i32, notice: String, holidays: Vec<HolidayRange>, workdays: Vec<chrono::NaiveDate> },
    /// A period's 三率 通报 was published: `kind` is `monthly` or `weekly`, `period` names it
    /// (`2026-11`, `2026-W48`), `summary` is the line sent to supervisors' channels.
    ReportPublished { kind: String, period: String, from: chrono::NaiveDate, to: chrono::NaiveDate, summary: String },
    /// The case was marked as a duplicate of `original` (same kind): it closes pointing there,
    /// its running clocks stop and its departments' summonses are released, until unlinked.
    MarkedDuplicate { original: Uuid },
    /// A duplicate was unlinked: open again, its parts and clocks as they were when it was
    /// marked (same start, same extensions).
    DuplicateUnlinked {},
    /// A comment in the case's thread; `mentions` are the units it names with `@`.
    CommentAdded {
        number: u32,
        body: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<String>,
    },
    /// Its author took a comment back (within the window); the comment stays in the log.
    CommentRetracted { number: u32 },
    /// An evidence file (photo, PDF, Office document) was attached; the bytes are in the file
    /// store under their SHA-256, never in the log.
    AttachmentAdded { number: u32, name: String, size: u64, content_type: String, sha256: String },
    /// A summoned department proposes that another department take its part (转办).
    HandOverProposed { number: u32, from: String, to: String, reason: String },
    /// The proposal was accepted: `to` is summoned afresh, `from` released with no mark.
    HandOverAccepted { number: u32 },
    /// The proposal was refused: `from` keeps its part, its clock never stopped.
    HandOverRefused {
        number: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The coordinator gave a department's part to another department.
    DepartmentReassigned { from: String, to: String, reason: String },
}

impl EventBody {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::WhistleRaised { .. } => "whistle_raised",
            EventBody::DepartmentAcknowledged { .. } => "department_acknowledged",
            EventBody::DepartmentDeclined { .. } => "department_declined",
            EventBody::DepartmentsAssigned { .. } => "departments_assigned",
            EventBody::DepartmentsAdded { .. } => "departments_added",
            EventBody::ProgressNoted { .. } => "progress_noted",
            EventBody::DepartmentHandled { .. } => "department_handled",
            EventBody::WhistleResolved { .. } => "whistle_resolved",
            EventBody::WhistleConfirmed { .. } => "whistle_confirmed",
            EventBody::WhistleReopened { .. } => "whistle_reopened",
            EventBody::WhistleWithdrawn { .. } => "whistle_withdrawn",
            EventBody::FeedbackSubmitted { .. } => "feedback_submitted",
            EventBody::FeedbackReplied { .. } => "feedback_replied",
            EventBody::FeedbackResolved { .. } => "feedback_resolved",
            EventBody::FeedbackRated { .. } => "feedback_rated",
            EventBody::FeedbackReopened { .. } => "feedback_reopened",
            EventBody::ExtensionRequested { .. } => "extension_requested",
            EventBody::ExtensionApproved { .. } => "extension_approved",
            EventBody::ExtensionRefused { .. } => "extension_refused",
            EventBody::SlaWarned { .. } => "sla_warned",
            EventBody::SlaBreached { .. } => "sla_breached",
            EventBody::SlaEscalated { .. } => "sla_escalated",
            EventBody::AlertAcknowledged { .. } => "alert_acknowledged",
            EventBody::CalendarPublished { .. } => "calendar_published",
            EventBody::ReportPublished { .. } => "report_published",
            EventBody::MarkedDuplicate { .. } => "marked_duplicate",
            EventBody::DuplicateUnlinked { .. } => "duplicate_unlinked",
            EventBody::CommentAdded { .. } => "comment_added",
            EventBody::CommentRetracted { .. } => "comment_retracted",
            EventBody::AttachmentAdded { .. } => "attachment_added",
            EventBody::HandOverProposed { .. } => "hand_over_proposed",
            EventBody::HandOverAccepted { .. } => "hand_over_accepted",
            EventBody::HandOverRefused { .. } => "hand_over_refused",
            EventBody::DepartmentReassigned { .. } => "department_reassigned",
        }
    }

    /// The alert stage this event raises, if it is an SLA alert.
    pub fn alert_stage(&self) -> Option<AlertStage> {
        match self {
            EventBody::SlaWarned { .. } => Some(AlertStage::Warning),
            EventBody::SlaBreached { .. } => Some(AlertStage::Breach),
            EventBody::SlaEscalated { .. } => Some(AlertStage::Escalation),
            _ => None,
        }
    }
}
