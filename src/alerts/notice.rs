//! What an alert says, and how it is worded for each webhook format.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::calendar::beijing;
use crate::domain::event::{AlertStage, ClockKind, ClockRef, Event, EventBody};
use crate::log::StoredRecord;
use crate::projector::model::{responsible_unit, AlertView};

/// How a webhook wants its body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The notice itself, as JSON.
    #[default]
    Generic,
    /// WeCom (企业微信) group robot, markdown message.
    Wecom,
    /// DingTalk (钉钉) group robot, markdown message.
    Dingtalk,
}

impl WebhookFormat {
    /// Why a group robot that answered 2xx did not take the message, from its answer's body:
    /// WeCom and DingTalk answer HTTP 200 with a non-zero `errcode` when they refuse one (a rate
    /// limit of 20 messages a minute per robot: WeCom 45009, DingTalk 130101 / 90030; a revoked
    /// key: 93000; a keyword the robot's security settings require: 310000). `None`: taken.
    pub fn refusal(self, body: &[u8]) -> Option<String> {
        if self == WebhookFormat::Generic {
            return None;
        }
        let answer: Value = serde_json::from_slice(body).ok()?;
        let code = answer.get("errcode")?;
        if code.as_i64() == Some(0) {
            return None;
        }
        let message = answer.get("errmsg").and_then(Value::as_str).unwrap_or("");
        Some(format!("errcode {code}: {message}"))
    }
}

/// One alert or notice as every channel receives it: the payload on `whistle.alert.…` and
/// `whistle.notice.…`, and a generic webhook's body (schema: `schemas/notices/notice.v1.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AlertNotice {
    pub alert_id: Uuid,
    /// `warning`, `breach`, `escalation`, `operator` (a problem operators must look at),
    /// `report` (a 通报), or a notice to a unit: `summons`, `reminder`, `reported_in`,
    /// `declined`, `handled`, `progress`, `dispute`, `feedback`, `reply`, `resolved`,
    /// `extension`, `extension_decided`, `mention`, `hand_over`.
    pub stage: String,
    /// Supervisor level told (0 for notices to units).
    pub level: u8,
    /// The unit that owes the clock (`log` for operator alerts); for a notice to a unit, the
    /// unit it is for (`supervisors` for 通报 and extension requests).
    pub unit: String,
    pub case_id: Option<Uuid>,
    pub case_kind: Option<String>,
    pub title: String,
    pub township: Option<String>,
    pub clock: Option<ClockRef>,
    pub due_at: Option<DateTime<Utc>>,
    pub raised_at: DateTime<Utc>,
    pub urgent: bool,
    pub position: u64,
    /// One line in Chinese, for people.
    pub text: String,
    /// For an SLA alert: the supervisors it reaches — those of its level above the case's
    /// township (its district's and the whole city's; for feedback, the city's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supervisors: Vec<String>,
}

impl AlertNotice {
    /// The notice for an SLA event, with the case's details when the views have them.
    pub fn from_event(event: &Event, view: Option<&AlertView>, position: u64) -> Self {
        let (clock, due_at, level) = match &event.body {
            EventBody::SlaWarned { clock, due_at, .. } | EventBody::SlaBreached { clock, due_at } => {
                (clock.clone(), *due_at, 1)
            }
            EventBody::SlaEscalated { clock, due_at, level } => (clock.clone(), *due_at, *level),
            _ => (ClockRef::case_wide(ClockKind::Ack), event.at, 1),
        };
        let stage = event.body.alert_stage().unwrap_or(AlertStage::Breach);
        let mut notice = AlertNotice {
            supervisors: Vec::new(),
            alert_id: event.event_id,
            stage: stage.as_str().into(),
            level,
            unit: responsible_unit(&clock),
            case_id: Some(event.case_id),
            case_kind: view.map(|v| v.case_kind.clone()),
            title: view.map(|v| v.title.clone()).unwrap_or_default(),
            township: view.and_then(|v| v.township.clone()),
            clock: Some(clock),
            due_at: Some(due_at),
            raised_at: event.at,
            urgent: view.is_some_and(|v| v.urgent),
            position,
            text: String::new(),
        };
        notice.text = notice.sentence();
        notice
    }

    /// The announcement of a published 通报, for supervisors' channels (None for other events).
    pub fn report(event: &Event, position: u64, link: Option<&str>) -> Option<Self> {
        let EventBody::ReportPublished { kind, period, from, to, summary } = &event.body else { return None };
        let title =
            match crate::reports::PeriodKind::parse(kind).and_then(|k| crate::reports::Period::parse(k, period).ok()) {
                Some(p) => p.title(),
                None => format!("{period} 三率通报"),
            };
        let mut text = format!("【通报】{title}已发布（{from} 至 {to} 立案的案件）。{summary}。");
        match link {
            Some(base) => text.push_str(&format!("详见：{}/#/reports/{kind}/{period}", base.trim_end_matches('/'))),
            None => text.push_str("详见 whistle 页面「三率」。"),
        }
        Some(AlertNotice {
            supervisors: Vec::new(),
            alert_id: event.event_id,
            stage: "report".into(),
            level: 1,
            unit: "supervisors".into(),
            case_id: Some(event.case_id),
            case_kind: None,
            title,
            township: None,
            clock: None,
            due_at: None,
            raised_at: event.at,
            urgent: false,
            position,
            text,
        })
    }

    /// An operator notice: the log cannot be written (`failure`), or can be again (None).
    pub fn log_health(failure: Option<&str>, now: DateTime<Utc>) -> Self {
        let (title, text) = match failure {
            Some(reason) => (
                "事件日志无法写入".to_owned(),
                format!("【系统】事件日志无法写入（{reason}）。新的操作被拒绝且未保存；腾出磁盘空间后自动恢复。"),
            ),
            None => ("事件日志恢复写入".to_owned(), "【系统】事件日志已恢复写入，操作照常进行。".to_owned()),
        };
        AlertNotice {
            supervisors: Vec::new(),
            alert_id: Uuid::now_v7(),
            stage: "operator".into(),
            level: 1,
            unit: "log".into(),
            case_id: None,
            case_kind: None,
            title,
            township: None,
            clock: None,
            due_at: None,
            raised_at: now,
            urgent: true,
            position: 0,
            text,
        }
    }

    /// An operator notice: a webhook gave up on a message after its retries.
    pub fn webhook_failed(webhook: &str, failed: &AlertNotice, now: DateTime<Utc>) -> Self {
        AlertNotice {
            supervisors: Vec::new(),
            alert_id: notice_id(failed.alert_id, "webhook_failed", webhook),
            stage: "operator".into(),
            level: 1,
            unit: "log".into(),
            case_id: failed.case_id,
            case_kind: failed.case_kind.clone(),
            title: format!("webhook「{webhook}」发送失败"),
            township: failed.township.clone(),
            clock: None,
            due_at: None,
            raised_at: now,
            urgent: true,
            position: failed.position,
            text: format!(
                "【系统】webhook「{webhook}」多次重试后仍未送达一条「{}」消息（{}）：{}",
                failed.stage, failed.unit, failed.text
            ),
        }
    }

    /// An operator alert for a record the service could not read.
    pub fn dead_letter(record: &StoredRecord, reason: &str, now: DateTime<Utc>) -> Self {
        let id = Uuid::from_u64_pair(0x0DEA_D1E7_7E50_0000, record.position);
        AlertNotice {
            supervisors: Vec::new(),
            alert_id: id,
            stage: "operator".into(),
            level: 1,
            unit: "log".into(),
            case_id: None,
            case_kind: None,
            title: format!("无法读取的日志记录 {}", record.position),
            township: None,
            clock: None,
            due_at: None,
            raised_at: now,
            urgent: true,
            position: record.position,
            text: format!(
                "【系统】日志第 {} 条记录（{}）无法读取，已存入死信：{reason}",
                record.position, record.subject
            ),
        }
    }

    fn sentence(&self) -> String {
        let clock = self.clock.as_ref().map(clock_label).unwrap_or("期限");
        let due =
            self.due_at.map(|d| d.with_timezone(&beijing()).format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default();
        let place = match &self.township {
            Some(t) => format!("{}（{t}）", self.title),
            None => self.title.clone(),
        };
        let urgent = if self.urgent { "【紧急】" } else { "" };
        match self.stage.as_str() {
            "warning" => format!("{urgent}【预警】{} 的「{clock}」将于 {due} 到期：{place}", self.unit),
            "escalation" => {
                format!(
                    "{urgent}【升级督办】{} 的「{clock}」超时仍未办理（截止 {due}），请上级督查：{place}",
                    self.unit
                )
            }
            _ => format!("{urgent}【超时】{} 的「{clock}」已超时（截止 {due}）：{place}", self.unit),
        }
    }

    /// The body a webhook of `format` receives.
    pub fn webhook_body(&self, format: WebhookFormat) -> Value {
        match format {
            WebhookFormat::Generic => serde_json::to_value(self).expect("notices serialise (plain data)"),
            WebhookFormat::Wecom => json!({ "msgtype": "markdown", "markdown": { "content": self.markdown() } }),
            WebhookFormat::Dingtalk => json!({
                "msgtype": "markdown",
                "markdown": { "title": self.text.chars().take(40).collect::<String>(), "text": self.markdown() }
            }),
        }
    }

    fn markdown(&self) -> String {
        let mut lines = vec![format!("**{}**", self.text)];
        if let Some(due) = self.due_at {
            lines.push(format!("> 截止时间：{}", due.with_timezone(&beijing()).format("%Y-%m-%d %H:%M")));
        }
        if self.stage == "report" {
            return lines.join("\n");
        }
        lines.push(format!("> 责任单位：{}", self.unit));
        if let Some(case_id) = self.case_id {
            lines.push(format!("> 案件编号：{case_id}"));
        }
        lines.join("\n")
    }
}

fn clock_label(clock: &ClockRef) -> &'static str {
    match clock.kind {
        ClockKind::Ack => "报到",
        ClockKind::Dispute => "权责争议协调",
        ClockKind::FeedbackReply => "意见回应",
        ClockKind::FeedbackResolve => "意见办结",
        ClockKind::WhistleResolve => "吹哨办结",
    }
}

// ------------------------------------------------------------------------ notices to units

/// Kinds of notice sent to the unit that must act or that raised the case (beside the SLA
/// stages and `report`, which are supervisors' alerts).
pub const UNIT_NOTICE_KINDS: [&str; 14] = [
    "summons",
    "reminder",
    "reported_in",
    "declined",
    "handled",
    "progress",
    "dispute",
    "feedback",
    "reply",
    "resolved",
    "extension",
    "extension_decided",
    "mention",
    "hand_over",
];

/// What a township following a case (through a duplicate it raised) hears of it.
const FOLLOWED_KINDS: [&str; 4] = ["reported_in", "declined", "handled", "progress"];

/// Subjects of notices to units: `whistle.notice.<kind>.<unit>`.
pub const NOTICE_SUBJECT_PREFIX: &str = "whistle.notice.";

/// The subject of a notice to a unit.
pub fn notice_subject(kind: &str, unit: &str) -> String {
    use crate::log::subject_token;
    format!("{NOTICE_SUBJECT_PREFIX}{}.{}", subject_token(kind), subject_token(unit))
}

/// The id of one notice: the same for the same event, kind and recipient on every instance.
pub fn notice_id(event_id: Uuid, kind: &str, unit: &str) -> Uuid {
    crate::domain::decide::derived_id(&["whistle-notice", &event_id.to_string(), kind, unit])
}

fn beijing_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing()).format("%Y-%m-%d %H:%M").to_string()
}

impl AlertNotice {
    /// Whether this is a notice to a unit rather than a supervisors' alert.
    pub fn is_unit_notice(&self) -> bool {
        UNIT_NOTICE_KINDS.contains(&self.stage.as_str())
    }

    /// The subject this notice is published on.
    pub fn subject(&self) -> String {
        if self.is_unit_notice() {
            notice_subject(&self.stage, &self.unit)
        } else {
            crate::log::alert_subject(&self.stage, self.level, &self.unit)
        }
    }

    /// A notice of `kind` to `unit` about `view`'s case, for `event`.
    fn to_unit(
        event: &Event,
        view: &crate::projector::model::CaseView,
        position: u64,
        kind: &str,
        unit: &str,
        clock: Option<ClockRef>,
        text: String,
    ) -> Self {
        let due_at = clock
            .as_ref()
            .and_then(|c| view.armed.iter().find(|a| &a.clock == c && a.started_at <= event.at).map(|a| a.due_at));
        AlertNotice {
            supervisors: Vec::new(),
            alert_id: notice_id(event.event_id, kind, unit),
            stage: kind.into(),
            level: 0,
            unit: unit.into(),
            case_id: Some(event.case_id),
            case_kind: view.kind().map(str::to_owned),
            title: view.title(),
            township: view.township().map(str::to_owned),
            clock,
            due_at,
            raised_at: event.at,
            urgent: view.urgent(),
            position,
            text,
        }
    }

    /// Whether an event of this type gives notices to units (so the case need not be read for
    /// the others).
    pub fn may_notify_units(event: &Event) -> bool {
        matches!(
            event.body,
            EventBody::WhistleRaised { .. }
                | EventBody::DepartmentsAdded { .. }
                | EventBody::DepartmentsAssigned { .. }
                | EventBody::DepartmentAcknowledged { .. }
                | EventBody::DepartmentDeclined { .. }
                | EventBody::DepartmentHandled { .. }
                | EventBody::ProgressNoted { .. }
                | EventBody::FeedbackSubmitted { .. }
                | EventBody::FeedbackReopened { .. }
                | EventBody::FeedbackReplied { .. }
                | EventBody::FeedbackResolved { .. }
                | EventBody::ExtensionRequested { .. }
                | EventBody::ExtensionApproved { .. }
                | EventBody::ExtensionRefused { .. }
                | EventBody::CommentAdded { .. }
                | EventBody::HandOverProposed { .. }
                | EventBody::HandOverAccepted { .. }
                | EventBody::DepartmentReassigned { .. }
        )
    }

    /// The notices to units one event gives, from the case as the views show it. `office` and
    /// `coordinator` name those units (the event does not).
    pub fn for_units(
        event: &Event,
        view: &crate::projector::model::CaseView,
        position: u64,
        office: &str,
        coordinator: &str,
    ) -> Vec<Self> {
        use crate::domain::state::State;
        let title = view.title();
        let township = view.township().unwrap_or("").to_owned();
        let one = |kind: &str, unit: &str, clock: Option<ClockRef>, text: String| {
            Self::to_unit(event, view, position, kind, unit, clock, text)
        };
        let summons = |department: &str| {
            let clock = ClockRef::for_department(ClockKind::Ack, department);
            let mut notice = one("summons", department, Some(clock), String::new());
            let due = notice.due_at.map(beijing_time).unwrap_or_else(|| "尽快".to_owned());
            let urgent = if notice.urgent { "【紧急】" } else { "" };
            notice.text = format!("{urgent}【召集报到】{township}吹哨「{title}」，请{department}于 {due} 前报到。");
            notice
        };
        let mut out = Vec::new();
        match &event.body {
            EventBody::WhistleRaised { departments, .. } | EventBody::DepartmentsAdded { departments } => {
                out.extend(departments.iter().map(|d| summons(d)));
            }
            EventBody::DepartmentsAssigned { departments, .. } => {
                // Only those summoned afresh by this event.
                if let State::Whistle(case) = &view.state {
                    out.extend(
                        departments
                            .iter()
                            .filter(|d| case.kind.departments.get(*d).is_some_and(|p| p.summoned_at == event.at))
                            .map(|d| summons(d)),
                    );
                }
            }
            EventBody::DepartmentAcknowledged { department } => {
                out.push(one("reported_in", &township, None, format!("【已报到】{department} 已报到：「{title}」")))
            }
            EventBody::DepartmentDeclined { department, reason } => {
                out.push(one(
                    "declined",
                    &township,
                    None,
                    format!("【退回】{department} 认为「{title}」不属于本部门职责：{reason}。已转{coordinator}协调。"),
                ));
                let clock = ClockRef::for_department(ClockKind::Dispute, department.clone());
                let mut notice = one("dispute", coordinator, Some(clock), String::new());
                let due = notice.due_at.map(beijing_time).unwrap_or_default();
                notice.text =
                    format!("【权责争议】{department} 退回{township}的「{title}」（{reason}），请于 {due} 前协调。");
                out.push(notice);
            }
            EventBody::DepartmentHandled { department, summary } => out.push(one(
                "handled",
                &township,
                None,
                format!("【已办结】{department} 报告「{title}」已办结：{summary}"),
            )),
            EventBody::ProgressNoted { department, note } => {
                out.push(one("progress", &township, None, format!("【进展】{department}（「{title}」）：{note}")))
            }
            EventBody::FeedbackSubmitted { .. } | EventBody::FeedbackReopened { .. } => {
                let clock = match event.body {
                    EventBody::FeedbackSubmitted { .. } => ClockKind::FeedbackReply,
                    _ => ClockKind::FeedbackResolve,
                };
                let mut notice = one("feedback", office, Some(ClockRef::case_wide(clock)), String::new());
                let due = notice.due_at.map(beijing_time).unwrap_or_default();
                let what = if clock == ClockKind::FeedbackReply { "收到一条" } else { "重新打开一条" };
                notice.text = format!(
                    "【基层意见】{what}「{title}」，请于 {due} 前{}。",
                    if clock == ClockKind::FeedbackReply { "答复" } else { "办结" }
                );
                out.push(notice);
            }
            EventBody::FeedbackReplied { .. } | EventBody::FeedbackResolved { .. } => {
                // Only a named submitter; an anonymous one reads the follow-up page.
                if let State::Feedback(case) = &view.state {
                    if let Some(submitter) = &case.kind.submitter {
                        let (kind, text) = match event.body {
                            EventBody::FeedbackReplied { .. } => {
                                ("reply", format!("【答复】{office}已答复您反映的「{title}」。"))
                            }
                            _ => ("resolved", format!("【办结】{office}已办结您反映的「{title}」，请评价。")),
                        };
                        out.push(one(kind, &submitter.unit, None, text));
                    }
                }
            }
            EventBody::ExtensionRequested { clock, reason, .. } => out.push(one(
                "extension",
                "supervisors",
                None,
                format!("【延期申请】{} 申请延长「{}」（「{title}」）：{reason}", event.actor.unit, clock_label(clock)),
            )),
            EventBody::ExtensionApproved { number } | EventBody::ExtensionRefused { number, .. } => {
                let requested = view.extension_requester(*number);
                if let Some(unit) = requested {
                    let decided = if matches!(event.body, EventBody::ExtensionApproved { .. }) {
                        "已批准"
                    } else {
                        "未批准"
                    };
                    out.push(one(
                        "extension_decided",
                        &unit,
                        None,
                        format!("【延期】您对「{title}」的延期申请{decided}。"),
                    ));
                }
            }
            EventBody::CommentAdded { body, mentions, .. } => {
                let who = if event.actor.role == crate::domain::event::Role::Anonymous {
                    "提交人".to_owned()
                } else {
                    event.actor.unit.clone()
                };
                let excerpt: String = body.chars().take(80).collect();
                for unit in mentions.iter().filter(|u| **u != event.actor.unit) {
                    out.push(one("mention", unit, None, format!("【提及】{who}在「{title}」中提到您：{excerpt}")));
                }
            }
            EventBody::HandOverProposed { from, to, reason, .. } => out.push(one(
                "hand_over",
                coordinator,
                None,
                format!("【转办申请】{from} 申请将「{title}」转交{to}：{reason}"),
            )),
            EventBody::HandOverAccepted { number } => {
                if let State::Whistle(case) = &view.state {
                    if let Some(h) = case.kind.hand_overs.iter().find(|h| h.number == *number) {
                        out.push(summons(&h.to));
                    }
                }
            }
            EventBody::DepartmentReassigned { to, .. } => out.push(summons(to)),
            _ => {}
        }
        // Units whose duplicates are linked to this case hear what its own township hears.
        let copies: Vec<Self> = out
            .iter()
            .filter(|n| n.unit == township && FOLLOWED_KINDS.contains(&n.stage.as_str()))
            .flat_map(|n| {
                view.followers()
                    .filter(|f| *f != township)
                    .map(|f| one(&n.stage, f, None, n.text.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.extend(copies);
        out
    }

    /// The reminder (催办) sent in the last working hours before a deadline that falls outside
    /// them, for a notice that carries a clock and its deadline.
    pub fn reminder_of(&self) -> Option<Self> {
        let (clock, due_at) = (self.clock.clone()?, self.due_at?);
        let id = notice_id(self.alert_id, "reminder", &self.unit);
        Some(AlertNotice {
            alert_id: id,
            stage: "reminder".into(),
            text: format!(
                "【催办】{} 的「{}」将于 {} 到期（非工作时间），请在今天下班前办理：{}",
                self.unit,
                clock_label(&clock),
                beijing_time(due_at),
                self.title
            ),
            ..self.clone()
        })
    }
}
