//! The embedded log: an append-only log in sled, for a single machine.
//!
//! One writer thread owns every write. It takes the appends waiting for it (up to
//! [`APPEND_BATCH_MAX`]), checks each against the case's last position and the command ids
//! already stored, writes the accepted ones in one sled transaction, flushes once, and only
//! then answers them all: group commit, so throughput is not one fsync per command.
//!
//! Trees: `records` (position → record), `cases` (case id ‖ position → ∅), `commands`
//! (command id → position; deduplication without a time window).

use std::collections::HashMap;
use std::path::Path;
use std::thread;

use async_trait::async_trait;
use bytes::Bytes;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::{
    case_subject, Acker, AckerInner, AlertStream, Appended, ClaimStream, Claimed, Commit, EventLog, LogError,
    RecordStream, StoredRecord,
};

/// Most appends one group commit takes.
pub const APPEND_BATCH_MAX: usize = 512;
/// Appends waiting for the writer; a caller beyond this waits for room.
pub const APPENDS_QUEUED_MAX: usize = 4_096;
/// Records a subscription reads from sled at a time.
const READ_BATCH_MAX: usize = 256;
/// Records buffered between a subscription's reader task and its consumer.
const SUBSCRIPTION_BUFFER: usize = 1_024;
/// Alerts buffered for slow in-process alert watchers; a watcher further behind misses some.
const ALERT_BROADCAST_BUFFER: usize = 1_024;

struct Job {
    case_id: Uuid,
    command_id: Uuid,
    expected: u64,
    record: StoredRecord,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

#[derive(Clone)]
struct Trees {
    db: sled::Db,
    records: sled::Tree,
    cases: sled::Tree,
    commands: sled::Tree,
    /// Durable consumer name → last acknowledged position.
    consumers: sled::Tree,
}

/// The embedded event log. Cheap to share behind an `Arc`; dropping the last handle stops
/// the writer thread after it has answered what it took.
pub struct EmbeddedLog {
    trees: Trees,
    jobs: mpsc::Sender<Job>,
    durable: watch::Receiver<u64>,
    writer: thread::JoinHandle<()>,
    alerts: tokio::sync::broadcast::Sender<(String, Bytes)>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in a folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let path = path.as_ref();
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| LogError::Setup(format!("cannot open embedded log at {}: {e}", path.display())))?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_error);
        let trees = Trees {
            records: tree("records")?,
            cases: tree("cases")?,
            commands: tree("commands")?,
            consumers: tree("consumers")?,
            db,
        };
        let head = last_position(&trees.records)?;
        let (durable_tx, durable) = watch::channel(head);
        let (jobs, rx) = mpsc::channel(APPENDS_QUEUED_MAX);
        let writer_trees = trees.clone();
        let writer = thread::Builder::new()
            .name("whistle-log-writer".into())
            .spawn(move || write_loop(writer_trees, rx, durable_tx, head))
            .map_err(|e| LogError::Setup(format!("cannot start the log writer: {e}")))?;
        let (alerts, _) = tokio::sync::broadcast::channel(ALERT_BROADCAST_BUFFER);
        Ok(EmbeddedLog { trees, jobs, durable, writer, alerts })
    }

    /// Stops the writer after it has answered every append it took, and flushes.
    pub async fn close(self) -> Result<(), LogError> {
        let EmbeddedLog { trees, jobs, durable, writer, .. } = self;
        drop((jobs, durable));
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| LogError::Unavailable(format!("log writer: {e}")))?
            .map_err(|_| LogError::Unavailable("the log writer panicked".into()))?;
        trees.db.flush_async().await.map_err(sled_error)?;
        Ok(())
    }

    /// Stores a record exactly as given, bypassing the commit format: for tests and tools
    /// that must see how readers handle records some other program wrote.
    pub async fn append_raw(&self, subject: &str, payload: Bytes) -> Result<Appended, LogError> {
        let record = StoredRecord { position: 0, subject: subject.to_owned(), msg_id: None, payload };
        self.submit(Uuid::nil(), Uuid::now_v7(), u64::MAX, record).await
    }

    async fn submit(
        &self,
        case_id: Uuid,
        command_id: Uuid,
        expected: u64,
        record: StoredRecord,
    ) -> Result<Appended, LogError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { case_id, command_id, expected, record, reply };
        self.jobs.send(job).await.map_err(|_| LogError::Unavailable("the log writer has stopped".into()))?;
        answer.await.map_err(|_| LogError::Unavailable("the log writer stopped before answering".into()))?
    }

    fn durable_head(&self) -> u64 {
        *self.durable.borrow()
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, LogError> {
        let record = StoredRecord {
            position: 0,
            subject: case_subject(commit.case_id),
            msg_id: Some(commit.command_id.to_string()),
            payload: commit.encode()?,
        };
        self.submit(commit.case_id, commit.command_id, expected, record).await
    }

    async fn read_case(&self, case_id: Uuid) -> Result<Vec<StoredRecord>, LogError> {
        let durable = self.durable_head();
        let mut out = Vec::new();
        for key in self.trees.cases.scan_prefix(case_id.as_bytes()).keys() {
            let position = position_from(&key.map_err(sled_error)?[16..]);
            if position > durable {
                break;
            }
            out.push(read_record(&self.trees.records, position)?);
        }
        Ok(out)
    }

    async fn subscribe(&self, from: u64) -> Result<RecordStream, LogError> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let records = self.trees.records.clone();
        let durable = self.durable.clone();
        tokio::spawn(feed_subscription(records, durable, from.max(1), tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })))
    }

    async fn head(&self) -> Result<u64, LogError> {
        Ok(self.durable_head())
    }

    async fn claim(&self, name: &str) -> Result<ClaimStream, LogError> {
        let consumers = self.trees.consumers.clone();
        let start = match consumers.get(name.as_bytes()).map_err(sled_error)? {
            Some(p) => position_from(&p),
            None => {
                let head = self.durable_head();
                consumers.insert(name.as_bytes(), &head.to_be_bytes()).map_err(sled_error)?;
                consumers.flush_async().await.map_err(sled_error)?;
                head
            }
        };
        let name = name.to_owned();
        let records = self.subscribe(start + 1).await?;
        Ok(Box::pin(futures::StreamExt::map(records, move |item| {
            item.map(|record| {
                let ack = Acker(AckerInner::Embedded {
                    consumers: consumers.clone(),
                    name: name.clone(),
                    position: record.position,
                });
                Claimed { record, ack }
            })
        })))
    }

    async fn publish_alert(&self, subject: &str, payload: Bytes) -> Result<(), LogError> {
        // No watcher is not an error: nobody is listening in-process.
        let _ = self.alerts.send((subject.to_owned(), payload));
        Ok(())
    }

    async fn claim_delivery(&self, key: &str) -> Result<bool, LogError> {
        let claimed = self
            .trees
            .consumers
            .compare_and_swap(
                [b"delivery:".as_slice(), key.as_bytes()].concat(),
                None as Option<&[u8]>,
                Some(&[1u8][..]),
            )
            .map_err(sled_error)?
            .is_ok();
        self.trees.consumers.flush_async().await.map_err(sled_error)?;
        Ok(claimed)
    }

    async fn watch_alerts(&self, prefix: &str) -> Result<AlertStream, LogError> {
        let rx = self.alerts.subscribe();
        let prefix = prefix.to_owned();
        Ok(Box::pin(futures::stream::unfold((rx, prefix), |(mut rx, prefix)| async move {
            loop {
                match rx.recv().await {
                    Ok((subject, payload)) if subject.starts_with(&prefix) => {
                        return Some(((subject, payload), (rx, prefix)))
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }
}

/// Records that consumer `name` has taken every record up to `position`.
pub(super) async fn ack(consumers: &sled::Tree, name: &str, position: u64) -> Result<(), LogError> {
    let current = consumers.get(name.as_bytes()).map_err(sled_error)?.map_or(0, |p| position_from(&p));
    if position > current {
        consumers.insert(name.as_bytes(), &position.to_be_bytes()).map_err(sled_error)?;
        consumers.flush_async().await.map_err(sled_error)?;
    }
    Ok(())
}

async fn feed_subscription(
    records: sled::Tree,
    mut durable: watch::Receiver<u64>,
    mut next: u64,
    tx: mpsc::Sender<Result<StoredRecord, LogError>>,
) {
    loop {
        let head = *durable.borrow_and_update();
        while next <= head {
            let last = head.min(next + READ_BATCH_MAX as u64 - 1);
            let batch: Result<Vec<StoredRecord>, LogError> = (next..=last).map(|p| read_record(&records, p)).collect();
            let failed = batch.is_err();
            for item in batch.map_or_else(|e| vec![Err(e)], |b| b.into_iter().map(Ok).collect()) {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            if failed {
                return;
            }
            next = last + 1;
        }
        if durable.changed().await.is_err() {
            return;
        }
    }
}

fn write_loop(trees: Trees, mut rx: mpsc::Receiver<Job>, durable: watch::Sender<u64>, mut head: u64) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < APPEND_BATCH_MAX {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        head = write_batch(&trees, jobs, head, &durable);
    }
}

enum Plan {
    Answer(Result<Appended, LogError>),
    Write(u64),
}

/// Writes one group of appends and answers them; returns the new durable head.
fn write_batch(trees: &Trees, jobs: Vec<Job>, head: u64, durable: &watch::Sender<u64>) -> u64 {
    let mut next_head = head;
    let mut case_last: HashMap<Uuid, u64> = HashMap::new();
    let mut stored_commands: HashMap<Uuid, u64> = HashMap::new();
    let plans: Vec<Plan> =
        jobs.iter().map(|job| plan(trees, job, &mut next_head, &mut case_last, &mut stored_commands)).collect();
    let writes: Vec<(u64, &Job)> = plans
        .iter()
        .zip(&jobs)
        .filter_map(|(p, j)| if let Plan::Write(pos) = p { Some((*pos, j)) } else { None })
        .collect();
    let outcome = if writes.is_empty() { Ok(()) } else { commit_writes(trees, &writes) };
    let new_head = if outcome.is_ok() { next_head } else { head };
    // Readers see the new records before any writer hears its append succeeded, so a reader
    // that acts on an acknowledgement finds what was acknowledged.
    durable.send_replace(new_head);
    for (plan, job) in plans.into_iter().zip(jobs) {
        let answer = match (plan, &outcome) {
            (Plan::Answer(a), _) => a,
            (Plan::Write(position), Ok(())) => Ok(Appended { position, duplicate: false }),
            (Plan::Write(_), Err(e)) => Err(e.clone()),
        };
        // The caller may have gone away; its append stands either way.
        let _ = job.reply.send(answer);
    }
    new_head
}

fn plan(
    trees: &Trees,
    job: &Job,
    head: &mut u64,
    case_last: &mut HashMap<Uuid, u64>,
    stored_commands: &mut HashMap<Uuid, u64>,
) -> Plan {
    let raw = job.expected == u64::MAX;
    if !raw {
        match stored_position(trees, job.command_id, stored_commands) {
            Ok(Some(position)) => return Plan::Answer(Ok(Appended { position, duplicate: true })),
            Ok(None) => {}
            Err(e) => return Plan::Answer(Err(e)),
        }
        let last = match case_last.get(&job.case_id) {
            Some(p) => *p,
            None => match last_case_position(&trees.cases, job.case_id) {
                Ok(p) => p,
                Err(e) => return Plan::Answer(Err(e)),
            },
        };
        if last != job.expected {
            return Plan::Answer(Err(LogError::Conflict { case_id: job.case_id, expected: job.expected }));
        }
    }
    *head += 1;
    if !raw {
        case_last.insert(job.case_id, *head);
        stored_commands.insert(job.command_id, *head);
    }
    Plan::Write(*head)
}

fn stored_position(trees: &Trees, command_id: Uuid, pending: &HashMap<Uuid, u64>) -> Result<Option<u64>, LogError> {
    if let Some(p) = pending.get(&command_id) {
        return Ok(Some(*p));
    }
    Ok(trees.commands.get(command_id.as_bytes()).map_err(sled_error)?.map(|v| position_from(&v)))
}

fn commit_writes(trees: &Trees, writes: &[(u64, &Job)]) -> Result<(), LogError> {
    let result: Result<(), TransactionError<()>> =
        (&trees.records, &trees.cases, &trees.commands).transaction(|(records, cases, commands)| {
            for (position, job) in writes {
                records.insert(&position.to_be_bytes(), encode_record(&job.record))?;
                if job.expected != u64::MAX {
                    cases.insert(case_key(job.case_id, *position).as_slice(), &[] as &[u8])?;
                    commands.insert(job.command_id.as_bytes(), &position.to_be_bytes())?;
                }
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
    result.map_err(|e| LogError::Unavailable(format!("embedded log write failed: {e:?}")))?;
    trees.db.flush().map_err(|e| LogError::Unavailable(format!("embedded log flush failed: {e}")))?;
    Ok(())
}

fn case_key(case_id: Uuid, position: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(case_id.as_bytes());
    key[16..].copy_from_slice(&position.to_be_bytes());
    key
}

fn last_case_position(cases: &sled::Tree, case_id: Uuid) -> Result<u64, LogError> {
    match cases.scan_prefix(case_id.as_bytes()).keys().next_back() {
        Some(key) => Ok(position_from(&key.map_err(sled_error)?[16..])),
        None => Ok(0),
    }
}

fn last_position(records: &sled::Tree) -> Result<u64, LogError> {
    Ok(records.last().map_err(sled_error)?.map_or(0, |(k, _)| position_from(&k)))
}

fn position_from(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

/// Record layout: subject length (u16 BE), subject, msg-id length (u16 BE), msg-id, payload.
fn encode_record(record: &StoredRecord) -> Vec<u8> {
    let msg_id = record.msg_id.as_deref().unwrap_or("");
    let mut out = Vec::with_capacity(4 + record.subject.len() + msg_id.len() + record.payload.len());
    for field in [record.subject.as_bytes(), msg_id.as_bytes()] {
        out.extend_from_slice(&(field.len() as u16).to_be_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&record.payload);
    out
}

fn decode_record(position: u64, bytes: &[u8]) -> Result<StoredRecord, LogError> {
    let corrupt = || LogError::Setup(format!("embedded log record {position} is corrupt"));
    let mut rest = bytes;
    let mut fields = Vec::with_capacity(2);
    for _ in 0..2 {
        if rest.len() < 2 {
            return Err(corrupt());
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let field = rest.get(2..2 + len).ok_or_else(corrupt)?;
        fields.push(String::from_utf8(field.to_vec()).map_err(|_| corrupt())?);
        rest = &rest[2 + len..];
    }
    let msg_id = fields.pop().filter(|m| !m.is_empty());
    let subject = fields.pop().ok_or_else(corrupt)?;
    Ok(StoredRecord { position, subject, msg_id, payload: Bytes::copy_from_slice(rest) })
}

fn read_record(records: &sled::Tree, position: u64) -> Result<StoredRecord, LogError> {
    let bytes = records
        .get(position.to_be_bytes())
        .map_err(sled_error)?
        .ok_or_else(|| LogError::Setup(format!("embedded log record {position} is missing")))?;
    decode_record(position, &bytes)
}

fn sled_error(e: sled::Error) -> LogError {
    LogError::Unavailable(format!("embedded log: {e}"))
}

/// Benchmark baseline: raw sled writes of `payload_bytes`-byte values in batches of `batch`,
/// one flush per batch, for `duration`, in a scratch database at `path`. Returns writes per
/// second.
pub fn baseline_write_rate(
    path: &Path,
    batch: usize,
    payload_bytes: usize,
    duration: std::time::Duration,
) -> Result<f64, LogError> {
    let db = sled::Config::new().path(path).mode(sled::Mode::HighThroughput).open().map_err(sled_error)?;
    let tree = db.open_tree("baseline").map_err(sled_error)?;
    let payload = vec![b'x'; payload_bytes];
    let started = std::time::Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration {
        let mut b = sled::Batch::default();
        for _ in 0..batch {
            written += 1;
            b.insert(&written.to_be_bytes(), payload.as_slice());
        }
        tree.apply_batch(b).map_err(sled_error)?;
        db.flush().map_err(sled_error)?;
    }
    Ok(written as f64 / started.elapsed().as_secs_f64())
}
