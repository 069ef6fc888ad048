//! Commands: what someone asks the system to do. Imperative names; decided, never stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::calendar::YearSchedule;
use super::event::{Actor, ClockRef, ExtensionSpan, FeedbackTopic, Satisfaction, Urgency};

/// A request to change one case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Idempotency key: the same id is stored at most once, and event ids derive from it.
    pub command_id: Uuid,
    pub case_id: Uuid,
    pub actor: Actor,
    /// The anonymous feedback submitter's follow-up code, as proof of who they are.
    /// Hashed before comparison; never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up_code: Option<String>,
    pub body: CommandBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandBody {
    RaiseWhistle {
        title: String,
        description: String,
        departments: Vec<String>,
        category: Option<String>,
        location: Option<String>,
        urgency: Urgency,
    },
    /// The acting department reports in (报到).
    AcknowledgeSummons,
    DeclineSummons {
        reason: String,
    },
    AssignDepartments {
        departments: Vec<String>,
    },
    AddDepartments {
        departments: Vec<String>,
    },
    NoteProgress {
        note: String,
    },
    ReportHandled {
        summary: String,
    },
    ConfirmWhistle {
        /// The rating of the whole whistle: it applies to every department that handled its
        /// part and is not rated in `ratings`.
        satisfaction: Satisfaction,
        /// Ratings of single departments' parts.
        #[serde(default)]
        ratings: std::collections::BTreeMap<String, Satisfaction>,
    },
    ReopenWhistle {
        reason: String,
    },
    WithdrawWhistle {
        reason: Option<String>,
    },
    SubmitFeedback {
        topic: FeedbackTopic,
        body: String,
        anonymous: bool,
    },
    ReplyFeedback {
        body: String,
    },
    ResolveFeedback {
        summary: String,
    },
    RateFeedback {
        satisfaction: Satisfaction,
    },
    ReopenFeedback {
        reason: String,
    },
    RequestExtension {
        clock: ClockRef,
        span: ExtensionSpan,
        reason: String,
    },
    ApproveExtension {
        number: u32,
    },
    RefuseExtension {
        number: u32,
        reason: Option<String>,
    },
    RecordSlaWarning {
        clock: ClockRef,
        due_at: DateTime<Utc>,
        warn_at: DateTime<Utc>,
    },
    RecordSlaBreach {
        clock: ClockRef,
        due_at: DateTime<Utc>,
    },
    RecordSlaEscalation {
        clock: ClockRef,
        due_at: DateTime<Utc>,
        level: u8,
    },
    AcknowledgeAlert {
        alert_id: Uuid,
    },
    /// Marks this case a duplicate of `original`, which the API has checked exists, is of the
    /// same kind, is visible to the actor and is not itself a duplicate.
    MarkDuplicate {
        original: Uuid,
    },
    UnlinkDuplicate,
    /// A comment; `mentions` are the known units the body names with `@`.
    AddComment {
        body: String,
        mentions: Vec<String>,
    },
    RetractComment {
        number: u32,
    },
    /// An evidence file, already stored: its name, size, kind (told from its bytes) and SHA-256.
    AddAttachment {
        name: String,
        size: u64,
        content_type: String,
        sha256: String,
    },
    ProposeHandOver {
        to: String,
        reason: String,
    },
    /// Accepts or refuses hand-over proposal `number`; `township_decides` is the
    /// organisation's rule letting the raising township decide (org.toml `[cases]`).
    DecideHandOver {
        number: u32,
        accept: bool,
        reason: Option<String>,
        township_decides: bool,
    },
    ReassignDepartment {
        from: String,
        to: String,
        reason: String,
    },
    /// Publishes (or corrects) one year's official schedule, on the calendar case.
    PublishCalendar {
        schedule: YearSchedule,
    },
    /// Publishes a period's 三率 通报 (the service does, at the time org.toml sets), on the
    /// period's own case ([`super::decide::report_ids`]).
    PublishReport {
        kind: String,
        period: String,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        summary: String,
    },
}

impl Command {
    pub fn new(command_id: Uuid, case_id: Uuid, actor: Actor, body: CommandBody) -> Self {
        Command { command_id, case_id, actor, follow_up_code: None, body }
    }

    pub fn with_follow_up_code(mut self, code: impl Into<String>) -> Self {
        self.follow_up_code = Some(code.into());
        self
    }
}
