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

/// Actions that are a step the caller owes (a to-do), as opposed to what they may also do
/// (comment, link, withdraw, ask for more time…).
pub const OWED: [&str; 12] = [
    "ack",
    "handled",
    "confirm",
    "assign",
    "reply",
    "resolve",
    "rate",
    "approve",
    "refuse",
    "accept_hand_over",
    "refuse_hand_over",
    "ack_alert",
];

/// Whether a list of actions holds a step the caller owes.
pub fn owes(actions: &Value) -> bool {
    actions.as_array().is_some_and(|a| a.iter().any(|x| x["todo"] == true))
}

/// Text that passes every length check, standing in for what the person writes.
const SAMPLE: &str = "—";

/// Who is asking: a signed-in actor, or an anonymous submitter holding a follow-up code.
pub struct Asker<'a> {
    pub actor: &'a Actor,
    pub follow_up_code: Option<&'a str>,
}

/// What the views add to a case's state for deciding what may be offered.
pub struct Facts<'a> {
    /// The clocks the policy arms: extensions are offered for these only (a clock the policy
    /// does not run has no deadline to move).
    pub armed: &'a [ArmedClock],
    /// Other cases are linked to this one as duplicates (then it cannot become one itself).
    pub has_duplicates: bool,
    /// org.toml `[cases] township_decides_hand_overs`.
    pub township_decides: bool,
    /// org.toml `[attachments] max_per_case`.
    pub attachments_max: usize,
}

/// The actions `asker` may take on the case now, each with the request that performs it.
pub fn available(
    case_id: Uuid,
    state: &State,
    facts: &Facts<'_>,
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
        State::Whistle(case) => extension_actions(case_id, case, facts.armed, &accepts, &mut out),
        State::Feedback(case) => extension_actions(case_id, case, facts.armed, &accepts, &mut out),
        State::Empty | State::Calendar(_) | State::Report(_) => {}
    }
    let kind_path = match state {
        State::Whistle(_) => "whistles",
        _ => "feedback",
    };
    if matches!(state, State::Whistle(_) | State::Feedback(_)) {
        // Any other case id stands in for the original: the API checks the real one.
        let stand_in = Uuid::from_u128(u128::from(case_id.as_u128() == 1) + 1);
        if !facts.has_duplicates && accepts(CommandBody::MarkDuplicate { original: stand_in }) {
            out.push(json!({ "action": "duplicate", "method": "POST", "path": format!("/v1/{kind_path}/{case_id}/duplicate") }));
        }
        if accepts(CommandBody::UnlinkDuplicate) {
            out.push(
                json!({ "action": "unlink", "method": "POST", "path": format!("/v1/{kind_path}/{case_id}/unlink") }),
            );
        }
        let sample_file = CommandBody::AddAttachment {
            name: "—.jpg".into(),
            size: 1,
            content_type: "image/jpeg".into(),
            sha256: "0".repeat(64),
        };
        // Never for an anonymous submitter (the domain refuses it: a file can say who took it).
        if state.attachments().len() < facts.attachments_max && accepts(sample_file) {
            out.push(
                json!({ "action": "attach", "method": "POST", "path": format!("/v1/cases/{case_id}/attachments") }),
            );
        }
        if accepts(CommandBody::AddComment { body: SAMPLE.into(), mentions: Vec::new() }) {
            out.push(json!({ "action": "comment", "method": "POST", "path": format!("/v1/cases/{case_id}/comments") }));
        }
        let comments = match state {
            State::Whistle(c) => &c.comments,
            State::Feedback(c) => &c.comments,
            _ => unreachable!("a whistle or feedback"),
        };
        for comment in comments.iter().filter(|c| !c.retracted && &c.by == asker.actor) {
            if accepts(CommandBody::RetractComment { number: comment.number }) {
                out.push(json!({
                    "action": "retract_comment", "method": "POST",
                    "path": format!("/v1/cases/{case_id}/comments/{}/retract", comment.number), "number": comment.number,
                }));
            }
        }
    }
    if let State::Whistle(case) = state {
        hand_over_actions(case_id, case, facts, departments, &accepts, &mut out);
    }
    for action in &mut out {
        let owed = action["action"].as_str().is_some_and(|a| OWED.contains(&a));
        action["todo"] = Value::Bool(owed);
    }
    Value::Array(out)
}

/// Proposing a hand-over (to any department that may take it), deciding pending proposals,
/// and the coordinator's reassignment.
fn hand_over_actions(
    case_id: Uuid,
    case: &Case<crate::domain::state::Whistle>,
    facts: &Facts<'_>,
    departments: &[String],
    accepts: &dyn Fn(CommandBody) -> bool,
    out: &mut Vec<Value>,
) {
    let at = |a: &str| format!("/v1/whistles/{case_id}/{a}");
    let to: Vec<&String> = departments
        .iter()
        .filter(|d| accepts(CommandBody::ProposeHandOver { to: (*d).clone(), reason: SAMPLE.into() }))
        .collect();
    if !to.is_empty() {
        out.push(json!({ "action": "hand_over", "method": "POST", "path": at("hand-overs"), "choices": to }));
    }
    for proposal in case.kind.hand_overs.iter().filter(|h| h.status == ExtensionStatus::Pending) {
        let number = proposal.number;
        for (name, accept) in [("accept_hand_over", true), ("refuse_hand_over", false)] {
            let body =
                CommandBody::DecideHandOver { number, accept, reason: None, township_decides: facts.township_decides };
            if accepts(body) {
                let decision = if accept { "accept" } else { "refuse" };
                out.push(json!({
                    "action": name, "method": "POST", "path": at(&format!("hand-overs/{number}/{decision}")),
                    "number": number, "from": proposal.from, "to": proposal.to,
                }));
            }
        }
    }
    let involved: Vec<&String> =
        case.kind.departments.iter().filter(|(_, p)| p.status != PartStatus::Released).map(|(d, _)| d).collect();
    let free: Vec<&String> = departments.iter().filter(|d| !involved.contains(d)).collect();
    let from: Vec<&String> = involved
        .iter()
        .copied()
        .filter(|f| {
            free.first().is_some_and(|t| {
                accepts(CommandBody::ReassignDepartment { from: (*f).clone(), to: (*t).clone(), reason: SAMPLE.into() })
            })
        })
        .collect();
    if !from.is_empty() {
        out.push(
            json!({ "action": "reassign", "method": "POST", "path": at("reassign"), "from": from, "choices": free }),
        );
    }
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
