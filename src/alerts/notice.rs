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

/// One alert as every channel receives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertNotice {
    pub alert_id: Uuid,
    /// `warning`, `breach`, `escalation`, or `operator` (a problem operators must look at).
    pub stage: String,
    /// Supervisor level told.
    pub level: u8,
    /// The unit that owes the clock (`log` for operator alerts).
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

    /// An operator alert for a record the service could not read.
    pub fn dead_letter(record: &StoredRecord, reason: &str, now: DateTime<Utc>) -> Self {
        let id = Uuid::from_u64_pair(0x0DEA_D1E7_7E50_0000, record.position);
        AlertNotice {
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
