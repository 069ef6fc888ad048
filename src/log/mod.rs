//! The event log: the source of truth. Two back ends behind one trait, passing one contract
//! test suite (`tests/log_contract.rs`):
//!
//! - [`nats::NatsLog`]: NATS JetStream, stream `WHISTLE`, one subject per case.
//! - [`embedded::EmbeddedLog`]: an append-only file of checksummed records, in-process, for a
//!   single machine.
//!
//! One record holds one command's events (a [`Commit`]), so a command is stored whole or not at
//! all. Records have global positions starting at 1 (the JetStream stream sequence); a case's
//! last position is the expected value for its next append (0: the case is new).

pub mod embedded;
pub mod frame;
pub mod nats;
pub mod object_store;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Event;

/// Largest encoded commit accepted, in bytes (NATS's default `max_payload` is 1 MiB).
pub const COMMIT_BYTES_MAX: usize = 256 * 1024;

/// Subject prefix of case records; a case's subject is `whistle.case.<case id>`.
pub const CASE_SUBJECT_PREFIX: &str = "whistle.case.";

/// The subject of one case.
pub fn case_subject(case_id: Uuid) -> String {
    format!("{CASE_SUBJECT_PREFIX}{case_id}")
}

/// The events one command produced, stored as one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub command_id: Uuid,
    pub case_id: Uuid,
    pub events: Vec<Event>,
}

impl Commit {
    pub fn encode(&self) -> Result<Bytes, LogError> {
        let bytes = serde_json::to_vec(self).map_err(|e| LogError::Encode(e.to_string()))?;
        if bytes.len() > COMMIT_BYTES_MAX {
            return Err(LogError::TooLarge { bytes: bytes.len() });
        }
        Ok(Bytes::from(bytes))
    }
}

/// One stored record as the log holds it: raw bytes, decoded by the reader, so that a record
/// some other program wrote can be set aside rather than stop everything.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecord {
    pub position: u64,
    pub subject: String,
    /// The command id the record was stored under, if any.
    pub msg_id: Option<String>,
    pub payload: Bytes,
}

impl StoredRecord {
    /// Decodes the commit, checking that it belongs where it is stored.
    pub fn decode(&self) -> Result<Commit, String> {
        let commit: Commit = serde_json::from_slice(&self.payload).map_err(|e| format!("not a commit: {e}"))?;
        if self.subject != case_subject(commit.case_id) {
            return Err(format!("commit for case {} stored on subject {}", commit.case_id, self.subject));
        }
        if let Some(e) = commit.events.iter().find(|e| e.case_id != commit.case_id) {
            return Err(format!("event {} names case {}, not {}", e.event_id, e.case_id, commit.case_id));
        }
        Ok(commit)
    }
}

/// The outcome of an append that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub position: u64,
    /// True when this command id was already stored: nothing new was written and `position`
    /// is where the original is.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Someone else wrote the case since it was read.
    #[error("case {case_id} changed since it was read (expected last position {expected})")]
    Conflict { case_id: Uuid, expected: u64 },
    #[error("commit of {bytes} bytes is larger than {COMMIT_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("cannot encode commit: {0}")]
    Encode(String),
    /// The log cannot be reached or did not answer: the append may or may not have been
    /// stored (it may still be, when a queued publish goes out on reconnect). Retrying with the
    /// same command id is safe: it returns the stored result or stores it once.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The append was not stored and nothing of it remains (a write or sync failed and was
    /// undone): retrying is safe.
    #[error("not stored: {0}")]
    NotStored(String),
    /// The log's configuration or contents are not what this service needs.
    #[error("event log: {0}")]
    Setup(String),
}

pub type RecordStream = Pin<Box<dyn Stream<Item = Result<StoredRecord, LogError>> + Send>>;

/// A record handed to one consumer of a shared, durable subscription, with its acknowledgement.
pub struct Claimed {
    pub record: StoredRecord,
    pub ack: Acker,
}

pub type ClaimStream = Pin<Box<dyn Stream<Item = Result<Claimed, LogError>> + Send>>;

/// Acknowledges one claimed record, so no consumer of the same name gets it again.
pub struct Acker(AckerInner);

enum AckerInner {
    Embedded { log: embedded::EmbeddedAck, name: String, position: u64 },
    Nats(Box<async_nats::jetstream::Message>),
}

impl Acker {
    /// Acknowledges and waits until the log has recorded it.
    pub async fn ack(self) -> Result<(), LogError> {
        match self.0 {
            AckerInner::Embedded { log, name, position } => log.ack(name, position).await,
            AckerInner::Nats(message) => {
                message.double_ack().await.map_err(|e| LogError::Unavailable(format!("acknowledging a claim: {e}")))
            }
        }
    }
}

/// Alerts published for other systems: a subject and a JSON payload.
pub type AlertStream = Pin<Box<dyn Stream<Item = (String, Bytes)> + Send>>;

/// Subject prefix of published alerts: `whistle.alert.<stage>.<level>.<unit>`.
pub const ALERT_SUBJECT_PREFIX: &str = "whistle.alert.";

/// The subject of an alert: its stage (`warning`, `breach`, `escalation`, `operator`), the
/// supervisor level told (1 = the case's own district), and the unit that owes the clock, so
/// a consumer can filter on any of them (`whistle.alert.*.2.>`: everything for level 2).
/// Unit names are made safe as one subject token.
pub fn alert_subject(stage: &str, level: u8, unit: &str) -> String {
    format!("{ALERT_SUBJECT_PREFIX}{}.{level}.{}", subject_token(stage), subject_token(unit))
}

/// A name made safe as one subject token: `.`, `*`, `>` and spaces become `_`; empty is `_`.
pub fn subject_token(s: &str) -> String {
    let t: String =
        s.chars().map(|c| if c == '.' || c == '*' || c == '>' || c.is_whitespace() { '_' } else { c }).collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// The event log both back ends implement.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends one command's events to its case if the case's last position is still
    /// `expected` (0: the case must be new). A command id already stored is not stored again.
    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, LogError>;

    /// Every record of one case, in order.
    async fn read_case(&self, case_id: Uuid) -> Result<Vec<StoredRecord>, LogError>;

    /// Every record from `from` on, in order, then new ones as they are stored. Only durable
    /// records are delivered.
    async fn subscribe(&self, from: u64) -> Result<RecordStream, LogError>;

    /// The position of the last stored record (0 when empty).
    async fn head(&self) -> Result<u64, LogError>;

    /// A durable subscription shared by every consumer with this name: each record goes to
    /// one of them. A name used for the first time starts after the current head, so history
    /// is never handed out again.
    async fn claim(&self, name: &str) -> Result<ClaimStream, LogError>;

    /// Publishes an alert on `subject` for other systems (NATS core subject, or an in-process
    /// broadcast on the embedded back end).
    async fn publish_alert(&self, subject: &str, payload: Bytes) -> Result<(), LogError>;

    /// Alerts published from now on whose subject starts with `prefix`.
    async fn watch_alerts(&self, prefix: &str) -> Result<AlertStream, LogError>;

    /// Claims the one delivery of something (an alert on a channel) across every service
    /// instance: true for the first caller with this key, false for every later one.
    async fn claim_delivery(&self, key: &str) -> Result<bool, LogError>;

    /// Claims several deliveries at once, each answered as [`EventLog::claim_delivery`] would
    /// answer it, in the order of `keys`. A back end stores them together where it can (one
    /// synced write on the embedded log, publishes in flight together on NATS), so a burst of
    /// alerts is not delivered one sync at a time.
    async fn claim_deliveries(&self, keys: &[String]) -> Vec<Result<bool, LogError>> {
        let mut won = Vec::with_capacity(keys.len());
        for key in keys {
            won.push(self.claim_delivery(key).await);
        }
        won
    }

    /// Why appends are failing right now, if they are (a full disk): readiness reports it.
    fn write_failure(&self) -> Option<String> {
        None
    }

    /// Bytes the log's records take in storage, where the back end can tell (for benchmarks).
    async fn stored_bytes(&self) -> Result<Option<u64>, LogError> {
        Ok(None)
    }
}

/// The last position of a case from its records (0 when there are none).
pub fn last_position(records: &[StoredRecord]) -> u64 {
    records.last().map_or(0, |r| r.position)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the docs promised `<level>.<unit>` while the code published `<stage>.<unit>`,
    /// so no consumer could filter by supervisor level.
    #[test]
    fn alert_subjects_carry_stage_level_and_unit_as_safe_tokens() {
        assert_eq!(alert_subject("escalation", 2, "住建局"), "whistle.alert.escalation.2.住建局");
        assert_eq!(alert_subject("breach", 1, "a.b c>*"), "whistle.alert.breach.1.a_b_c__");
        assert_eq!(alert_subject("operator", 1, ""), "whistle.alert.operator.1._");
    }
}
