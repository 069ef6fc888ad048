//! The actions a caller may take on a case now, as the API would answer them.
//!
//! Each candidate is a command the caller could send, decided by the domain against the case's
//! current state without being stored: an action is listed exactly when the domain would accept
//! it (placeholder text stands in for what the person will type). The dashboard shows one
//! button per listed action and nothing else, so a button is never one the API refuses.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::clocks::ArmedClock;
use crate::domain::command::{Command, CommandBody};
use crate::domain::decide::decide;
use crate::domain::event::{Actor, ExtensionSpan, Satisfaction};
use crate::domain::state::{Case, ExtensionStatus, PartStatus, State};

/// Text that passes every length check, standing in for what the person writes.
const SAMPLE: &str = "—";

/// Who is asking: a signed-in actor, or an anonymous submitter holding a follow-up code.
pub struct Asker<'a> {
    pub actor: &'a Actor,
    pub follow_up_code: Option<&'a str>,
}

/// The actions `asker` may take on the case now, each with the request that performs it.
/// Extensions are offered for the clocks the policy arms (`armed`): a clock it does not run
/// has no deadline to move.
pub fn available(
    case_id: Uuid,
    state: &State,
    armed: &[ArmedClock],
    asker: &Asker<'_>,
    departments: &[String],
    now: DateTime<Utc>,
) -> Value {
    let accepts = |body: CommandBody| {
        let mut cmd = Command::new(Uuid::nil(), case_id, asker.actor.clone(), body);
        cmd.follow_up_code = asker.follow_up_code.map(str::to_owned);
        decide(state, &cmd, now).is_ok()
    };
    let mut out = Vec::new();
    let mut simple = |name: &str, path: String, body: CommandBody| {
        if accepts(body) {
            out.push(json!({ "action": name, "method": "POST", "path": path }));
        }
    };
    match state {
        State::Whistle(case) => {
            let at = |a: &str| format!("/v1/whistles/{case_id}/{a}");
            simple("ack", at("ack"), CommandBody::AcknowledgeSummons);
            simple("decline", at("decline"), CommandBody::DeclineSummons { reason: SAMPLE.into() });
            simple("progress", at("progress"), CommandBody::NoteProgress { note: SAMPLE.into() });
            simple("handled", at("handled"), CommandBody::ReportHandled { summary: SAMPLE.into() });
            simple("reopen", at("reopen"), CommandBody::ReopenWhistle { reason: SAMPLE.into() });
            simple("withdraw", at("withdraw"), CommandBody::WithdrawWhistle { reason: None });
            let confirm =
                CommandBody::ConfirmWhistle { satisfaction: Satisfaction::Satisfied, ratings: Default::default() };
            if accepts(confirm) {
                // Single departments may be rated only for the parts they handled.
                let rateable: Vec<&String> = case
                    .kind
                    .departments
                    .iter()
                    .filter(|(_, p)| p.status == PartStatus::Handled)
                    .map(|(d, _)| d)
                    .collect();
                out.push(
                    json!({ "action": "confirm", "method": "POST", "path": at("confirm"), "departments": rateable }),
                );
            }
            for (name, make) in [
                ("assign", (|d| CommandBody::AssignDepartments { departments: d }) as fn(Vec<String>) -> CommandBody),
                ("departments", |d| CommandBody::AddDepartments { departments: d }),
            ] {
                let choices: Vec<&String> = departments.iter().filter(|d| accepts(make(vec![(*d).clone()]))).collect();
                if !choices.is_empty() {
                    out.push(json!({ "action": name, "method": "POST", "path": at(name), "choices": choices }));
                }
            }
        }
        State::Feedback(_) => {
            let at = |a: &str| format!("/v1/feedback/{case_id}/{a}");
            simple("reply", at("reply"), CommandBody::ReplyFeedback { body: SAMPLE.into() });
            simple("resolve", at("resolve"), CommandBody::ResolveFeedback { summary: SAMPLE.into() });
            simple("rate", at("rate"), CommandBody::RateFeedback { satisfaction: Satisfaction::Satisfied });
            simple("reopen", at("reopen"), CommandBody::ReopenFeedback { reason: SAMPLE.into() });
        }
        State::Empty | State::Calendar(_) | State::Report(_) => {}
    }
    match state {
        State::Whistle(case) => extension_actions(case_id, case, armed, &accepts, &mut out),
        State::Feedback(case) => extension_actions(case_id, case, armed, &accepts, &mut out),
        State::Empty | State::Calendar(_) | State::Report(_) => {}
    }
    Value::Array(out)
}

/// Asking to extend each running clock the caller owes; deciding each pending request;
/// acknowledging each open alert.
fn extension_actions<K>(
    case_id: Uuid,
    case: &Case<K>,
    armed: &[ArmedClock],
    accepts: &dyn Fn(CommandBody) -> bool,
    out: &mut Vec<Value>,
) {
    for alert in case.alerts.iter().filter(|a| a.acknowledged_by.is_none()) {
        if accepts(CommandBody::AcknowledgeAlert { alert_id: alert.alert_id }) {
            out.push(json!({
                "action": "ack_alert", "method": "POST", "path": format!("/v1/alerts/{}/ack", alert.alert_id),
                "alert_id": alert.alert_id,
            }));
        }
    }
    for clock in case.clocks.keys().filter(|c| armed.iter().any(|a| &a.clock == *c)) {
        let body = CommandBody::RequestExtension {
            clock: clock.clone(),
            span: ExtensionSpan::Hours(1),
            reason: SAMPLE.into(),
        };
        if accepts(body) {
            out.push(json!({
                "action": "extension", "method": "POST", "path": format!("/v1/cases/{case_id}/extensions"),
                "clock": clock.to_string(),
            }));
        }
    }
    for extension in case.extensions.iter().filter(|e| e.status == ExtensionStatus::Pending) {
        let number = extension.number;
        for (name, body) in [
            ("approve", CommandBody::ApproveExtension { number }),
            ("refuse", CommandBody::RefuseExtension { number, reason: None }),
        ] {
            if accepts(body) {
                out.push(json!({
                    "action": name, "method": "POST",
                    "path": format!("/v1/cases/{case_id}/extensions/{number}/{name}"),
                    "number": number, "clock": extension.clock.to_string(),
                }));
            }
        }
    }
}
