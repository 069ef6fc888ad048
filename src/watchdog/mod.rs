//! The watchdog: turns passed deadlines into alert events.
//!
//! It sleeps until the earliest time in the deadline index (or until the projector has
//! written a batch, which may have armed an earlier one): no periodic scans, no cost while
//! nothing is due. When a time passes it decides `RecordSlaWarning` / `RecordSlaBreach` /
//! `RecordSlaEscalation` against the case as the log holds it, and appends the event with a
//! command id derived from (case, clock, stage, deadline) and the case's expected position.
//! Several watchdogs racing on one log therefore store each alert once.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::domain::command::{Command, CommandBody};
use crate::domain::decide::sla_command_id_at;
use crate::domain::event::{Actor, AlertStage};
use crate::execute::{ExecuteError, Executor};
use crate::log::LogError;
use crate::projector::keys::index_key;
use crate::projector::model::IndexEntry;
use crate::projector::views::Views;
use crate::projector::Progress;

/// Most due entries handled per wake-up.
pub const DUE_BATCH_MAX: usize = 256;
/// How long a fired entry is left alone for the projector to catch up before it is tried again.
const REFIRE_AFTER_SECONDS: i64 = 30;

/// What happened to one due entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    Stored {
        position: u64,
    },
    /// Another watchdog (or an earlier attempt) stored it already.
    AlreadyStored,
    /// The clock stopped or moved; nothing to say.
    Moot(String),
}

pub struct Watchdog {
    executor: Arc<Executor>,
    views: Views,
    clock: Arc<dyn Clock>,
    progress: Progress,
    /// Index entries fired recently, by index key → when to try again if still indexed.
    fired: HashMap<Vec<u8>, DateTime<Utc>>,
}

impl Watchdog {
    pub fn new(executor: Arc<Executor>, views: Views, clock: Arc<dyn Clock>, progress: Progress) -> Self {
        Watchdog { executor, views, clock, progress, fired: HashMap::new() }
    }

    /// Runs until `stop` turns true.
    pub async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let applied = self.progress.applied.clone();
            let batch_written = applied.notified();
            let next = match self.tick().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!("watchdog: {e}");
                    Some(self.clock.now() + Duration::seconds(1))
                }
            };
            let sleep = crate::clock::sleep_until_if(self.clock.as_ref(), next);
            tokio::select! {
                _ = sleep => {}
                _ = batch_written => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Fires every due entry; returns when to look again (`None`: nothing armed).
    pub async fn tick(&mut self) -> Result<Option<DateTime<Utc>>, WatchdogError> {
        let now = self.clock.now();
        let due = self.views.due_alerts(now, DUE_BATCH_MAX)?;
        let due_keys: std::collections::HashSet<Vec<u8>> = due.iter().map(index_key).collect();
        self.fired.retain(|key, _| due_keys.contains(key));
        for entry in &due {
            let key = index_key(entry);
            if self.fired.get(&key).is_some_and(|retry_at| *retry_at > now) {
                continue;
            }
            match self.fire(entry, now).await {
                Ok(outcome) => {
                    tracing::info!(case_id = %entry.case_id, clock = %entry.clock, stage = ?entry.stage, ?outcome, "watchdog")
                }
                Err(e) => {
                    tracing::warn!(case_id = %entry.case_id, clock = %entry.clock, "watchdog could not record alert: {e}")
                }
            }
            self.fired.insert(key, now + Duration::seconds(REFIRE_AFTER_SECONDS));
        }
        let retry = self.fired.values().min().copied();
        let upcoming = self.views.earliest_alert_after(now)?.map(|e| e.fire_at);
        let full_batch = (due.len() >= DUE_BATCH_MAX).then_some(now);
        Ok([retry, upcoming, full_batch].into_iter().flatten().min())
    }

    /// Records the alert one due entry owes, unless it is moot or already stored.
    pub async fn fire(&self, entry: &IndexEntry, now: DateTime<Utc>) -> Result<Fired, WatchdogError> {
        // A warning whose deadline has already passed says nothing the breach will not.
        let stage =
            if entry.stage == AlertStage::Warning && now >= entry.due_at { AlertStage::Breach } else { entry.stage };
        let body = match stage {
            AlertStage::Warning => CommandBody::RecordSlaWarning {
                clock: entry.clock.clone(),
                due_at: entry.due_at,
                warn_at: entry.fire_at,
            },
            AlertStage::Breach => CommandBody::RecordSlaBreach { clock: entry.clock.clone(), due_at: entry.due_at },
            AlertStage::Escalation => CommandBody::RecordSlaEscalation {
                clock: entry.clock.clone(),
                due_at: entry.due_at,
                level: entry.level.max(2),
            },
        };
        let command_id = sla_command_id_at(entry.case_id, &entry.clock, stage, entry.due_at, entry.level);
        let cmd = Command::new(command_id, entry.case_id, Actor::system(), body);
        match self.executor.execute(&cmd, now).await {
            Ok(done) if done.repeated || done.events.is_empty() => Ok(Fired::AlreadyStored),
            Ok(done) => Ok(Fired::Stored { position: done.position }),
            Err(ExecuteError::Rejected(rejection)) => Ok(Fired::Moot(rejection.to_string())),
            Err(ExecuteError::Log(e)) => Err(e.into()),
            Err(ExecuteError::Busy(case_id)) => Err(WatchdogError::Busy(case_id.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Views(#[from] crate::projector::views::ViewError),
    #[error("case {0} kept changing; the alert will be tried again")]
    Busy(String),
}
