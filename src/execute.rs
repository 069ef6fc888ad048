//! Running one command: read the case from the log, decide, append with the case's expected
//! position; on a conflict read again and decide again, a bounded number of times. A command
//! id that is already stored returns what was stored, so a retried request writes nothing twice.

use chrono::{DateTime, Utc};

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

/// Executes `cmd` at time `now`.
pub async fn execute(log: &dyn EventLog, cmd: &Command, now: DateTime<Utc>) -> Result<Executed, ExecuteError> {
    for _ in 0..CONFLICT_ATTEMPTS_MAX {
        let records = log.read_case(cmd.case_id).await?;
        let id = cmd.command_id.to_string();
        if let Some(stored) = records.iter().find(|r| r.msg_id.as_deref() == Some(id.as_str())) {
            return Ok(repeat(&records, stored.position));
        }
        let state = replay(&records);
        let events = decide(&state, cmd, now)?;
        if events.is_empty() {
            return Ok(Executed { events, state, position: 0, repeated: false });
        }
        let commit = Commit { command_id: cmd.command_id, case_id: cmd.case_id, events };
        match log.append(&commit, last_position(&records)).await {
            Ok(appended) if appended.duplicate => {
                let records = log.read_case(cmd.case_id).await?;
                return Ok(repeat(&records, appended.position));
            }
            Ok(appended) => {
                let state = commit.events.iter().fold(state, evolve);
                return Ok(Executed { events: commit.events, state, position: appended.position, repeated: false });
            }
            Err(LogError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::Busy(cmd.case_id))
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
