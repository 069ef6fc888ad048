//! Given / when / then helpers for the pure domain: a case built from commands, then one more
//! command decided against it.
#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::event::{Actor, Event, EventBody, FeedbackTopic, Role, Urgency};
use whistle::domain::{decide, evolve, Rejection, State};

pub const TOWNSHIP: &str = "东坝镇";
pub const OTHER_TOWNSHIP: &str = "西湖街道";
pub const HOUSING: &str = "住建局";
pub const URBAN: &str = "城管局";
pub const ECOLOGY: &str = "生态环境局";
pub const TRANSPORT: &str = "交通局";
pub const FOLLOW_UP_CODE: &str = "k7Qm-2xPz-9RtW-4vLc";

pub fn township() -> Actor {
    Actor::new(Role::Township, TOWNSHIP)
}
pub fn other_township() -> Actor {
    Actor::new(Role::Township, OTHER_TOWNSHIP)
}
pub fn department(name: &str) -> Actor {
    Actor::new(Role::Department, name)
}
pub fn coordinator() -> Actor {
    Actor::new(Role::Coordinator, "市委编办")
}
pub fn office() -> Actor {
    Actor::new(Role::Office, "市减负办")
}
pub fn supervisor() -> Actor {
    Actor::new(Role::Supervisor, "市委督查室")
}
pub fn system() -> Actor {
    Actor::system()
}

/// Parses an RFC 3339 instant.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("test instants are valid RFC 3339").with_timezone(&Utc)
}

pub fn raise(departments: &[&str]) -> CommandBody {
    CommandBody::RaiseWhistle {
        title: "  河道垃圾堆积  ".into(),
        description: "村口河道垃圾堆积，涉及多个部门职责。".into(),
        departments: departments.iter().map(|d| d.to_string()).collect(),
        category: Some("环境".into()),
        location: None,
        urgency: Urgency::Normal,
    }
}

pub fn submit(anonymous: bool) -> CommandBody {
    CommandBody::SubmitFeedback {
        topic: FeedbackTopic::ExcessivePaperwork,
        body: "每次宣传活动要求提交通知、照片、签到表、总结四类材料。".into(),
        anonymous,
    }
}

/// A case under test: its events so far, its state, and the time of the next command.
pub struct Spec {
    pub case_id: Uuid,
    pub events: Vec<Event>,
    pub state: State,
    pub now: DateTime<Utc>,
    commands: u64,
}

impl Spec {
    pub fn new() -> Self {
        Spec::starting(at("2026-03-02T09:00:00+08:00"))
    }

    pub fn starting(now: DateTime<Utc>) -> Self {
        Spec { case_id: Uuid::from_u128(0xC0FFEE), events: Vec::new(), state: State::Empty, now, commands: 0 }
    }

    pub fn whistle(departments: &[&str]) -> Self {
        Spec::new().given(township(), raise(departments))
    }

    pub fn feedback(anonymous: bool) -> Self {
        Spec::new().given_with_code(township(), submit(anonymous), Some(FOLLOW_UP_CODE))
    }

    /// Moves time forward.
    pub fn after(mut self, d: Duration) -> Self {
        self.now += d;
        self
    }

    fn command(&mut self, actor: Actor, body: CommandBody, code: Option<&str>) -> Command {
        self.commands += 1;
        Command {
            command_id: Uuid::from_u128(u128::from(self.commands)),
            case_id: self.case_id,
            actor,
            follow_up_code: code.map(str::to_owned),
            body,
        }
    }

    /// Given: a command that must be accepted; its events become history.
    pub fn given(self, actor: Actor, body: CommandBody) -> Self {
        self.given_with_code(actor, body, None)
    }

    pub fn given_with_code(mut self, actor: Actor, body: CommandBody, code: Option<&str>) -> Self {
        let cmd = self.command(actor, body, code);
        let events = decide(&self.state, &cmd, self.now)
            .unwrap_or_else(|r| panic!("given step {:?} was rejected: {r}", cmd.body));
        for event in events {
            self.state = evolve(std::mem::take(&mut self.state), &event);
            self.events.push(event);
        }
        self.now += Duration::minutes(1);
        self
    }

    /// When: the events a command would produce, or its rejection.
    pub fn when(&mut self, actor: Actor, body: CommandBody) -> Result<Vec<Event>, Rejection> {
        self.when_with_code(actor, body, None)
    }

    pub fn when_with_code(
        &mut self,
        actor: Actor,
        body: CommandBody,
        code: Option<&str>,
    ) -> Result<Vec<Event>, Rejection> {
        let cmd = self.command(actor, body, code);
        decide(&self.state, &cmd, self.now)
    }

    /// When, expecting acceptance: the bodies of the events.
    pub fn then_events(&mut self, actor: Actor, body: CommandBody) -> Vec<EventBody> {
        match self.when(actor, body) {
            Ok(events) => events.into_iter().map(|e| e.body).collect(),
            Err(r) => panic!("expected events, got rejection: {r}"),
        }
    }

    /// When, expecting a rejection.
    pub fn then_rejected(&mut self, actor: Actor, body: CommandBody) -> Rejection {
        self.then_rejected_with_code(actor, body, None)
    }

    pub fn then_rejected_with_code(&mut self, actor: Actor, body: CommandBody, code: Option<&str>) -> Rejection {
        match self.when_with_code(actor, body, code) {
            Ok(events) => panic!("expected a rejection, got {events:?}"),
            Err(r) => r,
        }
    }
}

impl Default for Spec {
    fn default() -> Self {
        Spec::new()
    }
}

/// Asserts a rejection's kind and that its message contains `words`.
#[track_caller]
pub fn assert_rejection(rejection: &Rejection, code: &str, words: &str) {
    assert_eq!(rejection.code(), code, "wrong kind of rejection: {rejection:?}");
    assert!(rejection.to_string().contains(words), "message {:?} does not say {words:?}", rejection.to_string());
}
