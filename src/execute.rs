//! Running one command: read the case from the log, decide, append with the case's expected
//! position; on a conflict read again and decide again, a bounded number of times. A command
//! id that is already stored returns what was stored, so a retried request writes nothing twice.
//!
//! [`Executor`] does the same with a cache of the cases it has written: their state, last
//! position and command ids. A cached state is only ever used for an append that names the
//! cached position, so a case that someone else has changed since is a conflict, and the
//! command is decided again on the case as the log holds it. A rejection or a no-op decided
//! on a cached state is also checked against the log before it is answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{decide, evolve, Command, Event, Rejection, State};
use crate::log::{last_position, Commit, EventLog, LogError};

/// Attempts when other writers keep changing the case.
pub const CONFLICT_ATTEMPTS_MAX: u32 = 8;

/// What a command did.
#[derive(Clone, Debug, PartialEq)]
pub struct Executed {
    /// The events stored for this command (the original ones for a repeat).
    pub events: Vec<Event>,
    /// The case's state after them.
    pub state: State,
    /// Where the command's record is (0 when it produced no events).
    pub position: u64,
    /// True when this command id had been stored before: nothing new was written.
    pub repeated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("case {0} is changing too fast; try again")]
    Busy(uuid::Uuid),
}

/// Most cases an [`Executor`] remembers; a full cache starts again empty.
pub const CASE_CACHE_MAX: usize = 20_000;

/// What an executor knows of a case it has written.
#[derive(Clone)]
struct Known {
    state: State,
    position: u64,
    command_ids: Vec<Uuid>,
}

/// Executes commands against a log, remembering the cases it writes (see the module notes).
pub struct Executor {
    log: Arc<dyn EventLog>,
    cache: Mutex<HashMap<Uuid, Known>>,
}

impl Executor {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Executor { log, cache: Mutex::new(HashMap::new()) }
    }

    /// Executes `cmd` at time `now`, first on the cached case (see the module notes).
    pub async fn execute(&self, cmd: &Command, now: DateTime<Utc>) -> Result<Executed, ExecuteError> {
        match execute_from(self.log.as_ref(), cmd, now, self.guess(cmd)).await {
            Ok((done, Some(known))) => {
                self.remember(cmd.case_id, known);
                Ok(done)
            }
            other => {
                self.forget(cmd.case_id);
                other.map(|(done, _)| done)
            }
        }
    }

    /// The state to decide on without reading the log: the cached case, or an empty one (a
    /// case that does not exist yet, for commands that create one; if it does exist, the
    /// append with expected position 0 is a conflict). None for a repeated command id.
    fn guess(&self, cmd: &Command) -> Option<Known> {
        let cache = self.cache.lock().expect("case cache lock");
        match cache.get(&cmd.case_id) {
            Some(known) if known.command_ids.contains(&cmd.command_id) => None,
            Some(known) => Some(known.clone()),
            None => Some(Known { state: State::Empty, position: 0, command_ids: Vec::new() }),
        }
    }

    /// Whether this executor has the case cached and its cached state (which may be behind
    /// the log) satisfies `test`.
    pub fn cached_satisfies(&self, case_id: Uuid, test: impl FnOnce(&State) -> bool) -> bool {
        self.cache.lock().expect("case cache lock").get(&case_id).is_some_and(|k| test(&k.state))
    }

    /// Takes in a case as just read from the log (e.g. for a scope check), so that the command
    /// that follows decides on it instead of reading the case a second time.
    pub fn learn(&self, case_id: Uuid, records: &[crate::log::StoredRecord]) {
        self.remember(case_id, known_from(records));
    }

    fn remember(&self, case_id: Uuid, known: Known) {
        let mut cache = self.cache.lock().expect("case cache lock");
        if cache.get(&case_id).is_some_and(|k| k.position > known.position) {
            return;
        }
        if cache.len() >= CASE_CACHE_MAX && !cache.contains_key(&case_id) {
            cache.clear();
        }
        cache.insert(case_id, known);
    }

    fn forget(&self, case_id: Uuid) {
        self.cache.lock().expect("case cache lock").remove(&case_id);
    }
}

/// Executes `cmd` at time `now`, reading the case from the log.
pub async fn execute(log: &dyn EventLog, cmd: &Command, now: DateTime<Utc>) -> Result<Executed, ExecuteError> {
    execute_from(log, cmd, now, None).await.map(|(done, _)| done)
}

/// Decides and appends, a bounded number of times. The first attempt uses `guess` when given;
/// a guess that the append finds stale (a conflict), or on which the command is refused or
/// does nothing, is replaced by the case as the log holds it. Answers, with what was done, the
/// case as it now stands when the command was stored now.
async fn execute_from(
    log: &dyn EventLog,
    cmd: &Command,
    now: DateTime<Utc>,
    mut guess: Option<Known>,
) -> Result<(Executed, Option<Known>), ExecuteError> {
    // A guess does not use up one of the attempts on the log.
    let attempts = CONFLICT_ATTEMPTS_MAX + u32::from(guess.is_some());
    for _ in 0..attempts {
        let (known, guessed) = match guess.take() {
            Some(known) => (known, true),
            None => {
                let records = log.read_case(cmd.case_id).await?;
                let id = cmd.command_id.to_string();
                if let Some(stored) = records.iter().find(|r| r.msg_id.as_deref() == Some(id.as_str())) {
                    return Ok((repeat(&records, stored.position), None));
                }
                (known_from(&records), false)
            }
        };
        let events = match decide(&known.state, cmd, now) {
            Ok(events) if !events.is_empty() => events,
            _ if guessed => continue,
            Ok(events) => return Ok((Executed { events, state: known.state, position: 0, repeated: false }, None)),
            Err(rejection) => return Err(rejection.into()),
        };
        let commit = Commit { command_id: cmd.command_id, case_id: cmd.case_id, events };
        match log.append(&commit, known.position).await {
            Ok(appended) if appended.duplicate => {
                let records = log.read_case(cmd.case_id).await?;
                return Ok((repeat(&records, appended.position), None));
            }
            Ok(appended) => {
                let state = commit.events.iter().fold(known.state, evolve);
                let mut command_ids = known.command_ids;
                command_ids.push(cmd.command_id);
                let now_known = Known { state: state.clone(), position: appended.position, command_ids };
                let done = Executed { events: commit.events, state, position: appended.position, repeated: false };
                return Ok((done, Some(now_known)));
            }
            Err(LogError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::Busy(cmd.case_id))
}

/// What a case's records say: its state, last position and command ids.
fn known_from(records: &[crate::log::StoredRecord]) -> Known {
    let command_ids = records.iter().filter_map(|r| r.msg_id.as_deref().and_then(|m| m.parse().ok())).collect();
    Known { state: replay(records), position: last_position(records), command_ids }
}

/// A case's state from its records; records that do not decode are skipped (the projector
/// reports them as dead letters).
pub fn replay(records: &[crate::log::StoredRecord]) -> State {
    records.iter().filter_map(|r| r.decode().ok()).flat_map(|c| c.events).fold(State::Empty, |s, e| evolve(s, &e))
}

fn repeat(records: &[crate::log::StoredRecord], position: u64) -> Executed {
    let upto: Vec<_> = records.iter().filter(|r| r.position <= position).cloned().collect();
    let events = upto.last().and_then(|r| r.decode().ok()).map(|c| c.events).unwrap_or_default();
    Executed { events, state: replay(&upto), position, repeated: true }
}
