//! The embedded log: an append-only file of checksummed records, for a single machine.
//!
//! One writer thread owns every append. It takes the appends waiting for it (up to
//! [`APPEND_BATCH_MAX`]), checks each against the case's last position and the command ids
//! already stored, writes the accepted ones with one `pwrite` at the end of the file, calls
//! `fdatasync` once, and only then answers them all: group commit, so a 2xx always means "on
//! stable storage" and the cost is one sync per batch, not per command.
//!
//! A failed write or sync (a full disk, an I/O error) cuts the file back to where the batch
//! began and answers every append in it with [`LogError::NotStored`]: nothing of it is kept, in
//! memory or on disk, so a retry with the same command id is decided afresh. The next batch
//! tries again, so writes recover by themselves when space returns.
//!
//! Folder layout (`data/log/`):
//! - `records`: magic `WHSTLOG1`, then one frame ([`super::frame`]) per record; the body is
//!   `position (u64 LE) ‖ kind (u8) ‖ case id ‖ command id ‖ payload` for a commit, whose
//!   subject and message id follow from its ids; a raw record (kind 1, written by tools and
//!   tests) stores `‖ subject ‖ msg-id` (u16-length strings) before its payload.
//! - `consumers`: magic `WHSTCON1`, then one frame per durable-consumer acknowledgement or
//!   delivery claim; rewritten compactly on open when it has grown.
//! - `LOCK`: held (flock) by the one process that has the log open.
//!
//! The indexes (position → offset, case → its positions, command id → position) live in memory and
//! are rebuilt by reading the file on open, which checks every record's checksum on the way.
//! Why not sled, which the views use: sled 0.34's flush is `sync_file_range` (no device cache
//! flush, no metadata), and after one failed write it keeps a sticky error and keeps the
//! failed write in memory, so neither "durable" nor "recovers when space returns" can hold.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;

use async_trait::async_trait;
use bytes::Bytes;
use hashbrown::hash_table::{Entry, HashTable};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::frame::{self, Cursor, Damage, Ending};
use super::{
    case_subject, Acker, AckerInner, AlertStream, Appended, ClaimStream, Claimed, Commit, EventLog, LogError,
    RecordStream, StoredRecord, COMMIT_BYTES_MAX,
};

/// Most appends one group commit takes.
pub const APPEND_BATCH_MAX: usize = 512;
/// Appends waiting for the writer; a caller beyond this waits for room.
pub const APPENDS_QUEUED_MAX: usize = 4_096;
/// Records buffered between a subscription's reader task and its consumer.
const SUBSCRIPTION_BUFFER: usize = 1_024;
/// Records a subscription reads per turn before it yields.
const READ_BATCH_MAX: u64 = 256;
/// Alerts buffered for slow in-process alert watchers; a watcher further behind misses some.
const ALERT_BROADCAST_BUFFER: usize = 1_024;
/// Largest record body: a commit plus its subject, message id and fixed fields.
const RECORD_BODY_BYTES_MAX: usize = COMMIT_BYTES_MAX + 2 * 65_536 + 64;
/// Largest consumer-file body: a tag and two short strings.
const CONSUMER_BODY_BYTES_MAX: usize = 2 * 65_536 + 16;
/// The consumer file is rewritten on open when it holds more frames than this many times the
/// entries it stands for (acknowledgements append; only the last per consumer counts).
const CONSUMER_FILE_SLACK: u64 = 4;
/// Space the readiness probe asks the file system for, to tell whether writes can succeed.
const SPACE_PROBE_BYTES: i64 = 1 << 20;

const RECORDS_MAGIC: &[u8; 8] = b"WHSTLOG1";
const CONSUMERS_MAGIC: &[u8; 8] = b"WHSTCON1";
const KIND_COMMIT: u8 = 0;
const KIND_RAW: u8 = 1;
const TAG_ACK: u8 = 1;
const TAG_DELIVERY: u8 = 2;

struct Job {
    case_id: Uuid,
    command_id: Uuid,
    expected: u64,
    record: StoredRecord,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

impl Job {
    fn raw(&self) -> bool {
        self.expected == u64::MAX
    }
}

/// Where each record is, and which records belong to what: one [`Slot`] per record, and two
/// hash tables that hold only positions, each found by the id its record carries. A case's
/// records are chained from its last one back. A million records of a million cases take
/// 88 MB (48 bytes a slot, 9 a table bucket); maps from ids to positions and a list of
/// positions per case took 178 MB.
#[derive(Default)]
struct Index {
    /// The record at position p, at `slots[p - 1]`.
    slots: Vec<Slot>,
    /// The last position of each case, by the case id of the record there.
    cases: HashTable<u64>,
    /// The position of each command, by the command id of the record there.
    commands: HashTable<u64>,
    hasher: RandomState,
}

/// One record of the index.
struct Slot {
    /// Byte offset in the records file.
    offset: u64,
    /// The case's record before this one (0: none, or a raw record).
    previous: u64,
    /// Nil for a raw record.
    case_id: Uuid,
    command_id: Uuid,
}

impl Index {
    fn head(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&self, position: u64) -> Option<&Slot> {
        self.slots.get(usize::try_from(position.checked_sub(1)?).ok()?)
    }

    fn offset(&self, position: u64) -> Option<u64> {
        self.slot(position).map(|s| s.offset)
    }

    fn add(&mut self, offset: u64, position: u64, meta: Option<(Uuid, Uuid)>) {
        debug_assert_eq!(position, self.head() + 1, "positions are dense");
        let (case_id, command_id) = meta.unwrap_or((Uuid::nil(), Uuid::nil()));
        self.slots.push(Slot { offset, previous: 0, case_id, command_id });
        if meta.is_none() {
            return;
        }
        let previous = self.replace(Table::Cases, case_id, position).unwrap_or(0);
        if let Some(slot) = self.slots.last_mut() {
            slot.previous = previous;
        }
        self.replace(Table::Commands, command_id, position);
    }

    /// Points `table`'s entry for `id` at `position`; returns where it pointed before.
    fn replace(&mut self, table: Table, id: Uuid, position: u64) -> Option<u64> {
        let Index { slots, cases, commands, hasher } = self;
        let (table, id_of): (_, fn(&Slot) -> Uuid) = match table {
            Table::Cases => (cases, |s| s.case_id),
            Table::Commands => (commands, |s| s.command_id),
        };
        let same = |p: &u64| id_of(slot_of(slots, *p)) == id;
        match table.entry(hasher.hash_one(id), same, |p| hasher.hash_one(id_of(slot_of(slots, *p)))) {
            Entry::Occupied(mut stored) => Some(std::mem::replace(stored.get_mut(), position)),
            Entry::Vacant(vacant) => {
                vacant.insert(position);
                None
            }
        }
    }

    /// The position `table` holds for `id`.
    fn find(&self, table: Table, id: Uuid) -> Option<u64> {
        let (table, id_of): (_, fn(&Slot) -> Uuid) = match table {
            Table::Cases => (&self.cases, |s| s.case_id),
            Table::Commands => (&self.commands, |s| s.command_id),
        };
        table.find(self.hasher.hash_one(id), |p| id_of(slot_of(&self.slots, *p)) == id).copied()
    }

    /// The case's last position (0: none).
    fn case_last(&self, case_id: Uuid) -> u64 {
        self.find(Table::Cases, case_id).unwrap_or(0)
    }

    /// The case's positions up to `until`, oldest first.
    fn case_positions(&self, case_id: Uuid, until: u64) -> Vec<u64> {
        let mut positions = Vec::new();
        let mut position = self.case_last(case_id);
        while let Some(slot) = self.slot(position) {
            if position <= until {
                positions.push(position);
            }
            position = slot.previous;
        }
        positions.reverse();
        positions
    }

    fn command_position(&self, command_id: Uuid) -> Option<u64> {
        self.find(Table::Commands, command_id)
    }
}

/// The index's two tables: the last position of each case, the position of each command.
#[derive(Clone, Copy)]
enum Table {
    Cases,
    Commands,
}

/// The slot of a position the index's tables hold (always one of `slots`).
fn slot_of(slots: &[Slot], position: u64) -> &Slot {
    &slots[position as usize - 1]
}

/// What readers share with the writer.
struct Shared {
    dir: PathBuf,
    file: File,
    index: RwLock<Index>,
    /// The consumers' file; `None` once the log is closed.
    consumers: Mutex<Option<ConsumerFile>>,
    /// Why the last write failed, while writes are failing.
    write_failure: Mutex<Option<String>>,
    /// The folder's lock, held until the log is closed (or the last reader lets go).
    lock: Mutex<Option<File>>,
}

/// The embedded event log. Cheap to share behind an `Arc`; dropping the last handle stops
/// the writer thread after it has answered what it took.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    durable: watch::Receiver<u64>,
    writer: thread::JoinHandle<()>,
    alerts: tokio::sync::broadcast::Sender<(String, Bytes)>,
}

/// What a check of a log folder found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// Records whose checksum and position are right.
    pub records: u64,
    pub ending: Ending,
    pub consumers: Ending,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in a folder. Every record's checksum is checked on the way; a
    /// torn tail (a write interrupted by a crash, never acknowledged) is cut off, damage
    /// anywhere else is an error naming the record.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| setup(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock_folder(&dir)?;
        migrate_from_sled(&dir)?;
        let records_path = dir.join("records");
        let file = open_file(&records_path, RECORDS_MAGIC)?;
        let mut index = Index::default();
        let ending = scan_records(&file, &records_path, |offset, position, meta, _| {
            index.add(offset, position, meta);
            Ok(())
        })?;
        let end = cut_torn_tail(&file, &records_path, &ending)?;
        let consumers = ConsumerFile::open(&dir)?;
        let head = index.head();
        let shared = Arc::new(Shared {
            dir,
            file: file.try_clone().map_err(|e| setup(format!("cannot share the log file: {e}")))?,
            index: RwLock::new(index),
            consumers: Mutex::new(Some(consumers)),
            write_failure: Mutex::new(None),
            lock: Mutex::new(Some(lock)),
        });
        let (durable_tx, durable) = watch::channel(head);
        let (jobs, rx) = mpsc::channel(APPENDS_QUEUED_MAX);
        let writer_shared = shared.clone();
        let writer = thread::Builder::new()
            .name("whistle-log-writer".into())
            .spawn(move || Writer { shared: writer_shared, file, end, durable: durable_tx }.run(rx))
            .map_err(|e| setup(format!("cannot start the log writer: {e}")))?;
        let (alerts, _) = tokio::sync::broadcast::channel(ALERT_BROADCAST_BUFFER);
        Ok(EmbeddedLog { shared, jobs, durable, writer, alerts })
    }

    /// Reads a log folder without opening it for writing (it may be in use) and checks every
    /// record: how many are good, and where damage begins if any.
    pub fn check(path: impl AsRef<Path>) -> Result<CheckReport, LogError> {
        let dir = path.as_ref();
        let records_path = dir.join("records");
        let file = open_read_only(&records_path)?;
        let mut records = 0u64;
        let ending = scan_records(&file, &records_path, |_, position, _, _| {
            records = position;
            Ok(())
        })?;
        let consumers_path = dir.join("consumers");
        let consumers = match File::open(&consumers_path) {
            Ok(f) => {
                frame::scan(&f, CONSUMERS_MAGIC, CONSUMER_BODY_BYTES_MAX, |_, body| consumer_entry(body).map(|_| ()))
                    .map_err(|d| damaged(&consumers_path, &d, "consumer entry", d.frames_before + 1))?
            }
            Err(_) => Ending::Clean { end: 0 },
        };
        Ok(CheckReport { records, ending, consumers })
    }

    /// Every calendar published in a log folder, in order, read without opening the log for
    /// writing (a running service may hold it). Reading stops at the first damaged record.
    pub fn published_calendars(path: impl AsRef<Path>) -> Result<Vec<crate::domain::YearSchedule>, LogError> {
        let records_path = path.as_ref().join("records");
        let file = open_read_only(&records_path)?;
        let mut schedules = Vec::new();
        scan_records(&file, &records_path, |_, _, meta, body| {
            if meta.map(|(case_id, _)| case_id) != Some(crate::domain::event::CALENDAR_CASE_ID) {
                return Ok(());
            }
            let record = decode_record(body)?;
            for event in record.decode()?.events {
                if let crate::domain::event::EventBody::CalendarPublished { year, notice, holidays, workdays } =
                    event.body
                {
                    schedules.push(crate::domain::YearSchedule { year, notice, holidays, workdays });
                }
            }
            Ok(())
        })?;
        Ok(schedules)
    }

    /// Stops the writer after it has answered every append it took (everything it answered is
    /// already on stable storage), closes the consumers' file and lets go of the folder: another
    /// process, or this one, may open the log as soon as this returns. Subscriptions still held
    /// elsewhere end after the records already durable; their claims store no acknowledgement.
    pub async fn close(self) -> Result<(), LogError> {
        let EmbeddedLog { shared, jobs, durable, writer, .. } = self;
        drop((jobs, durable));
        let joined = tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| LogError::Unavailable(format!("log writer: {e}")))?;
        *shared.consumers.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *shared.lock.lock().unwrap_or_else(|p| p.into_inner()) = None;
        joined.map_err(|_| LogError::Unavailable("the log writer panicked".into()))
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
        let positions = read_index(&self.shared).case_positions(case_id, durable);
        positions.into_iter().map(|p| read_record(&self.shared, p)).collect()
    }

    async fn subscribe(&self, from: u64) -> Result<RecordStream, LogError> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(feed_subscription(self.shared.clone(), self.durable.clone(), from.max(1), tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })))
    }

    async fn head(&self) -> Result<u64, LogError> {
        Ok(self.durable_head())
    }

    async fn claim(&self, name: &str) -> Result<ClaimStream, LogError> {
        let head = self.durable_head();
        let shared = self.shared.clone();
        let owned = name.to_owned();
        let start = blocking(move || with_consumers(&shared, |c| c.start(&owned, head))).await?;
        let name = name.to_owned();
        let shared = self.shared.clone();
        let records = self.subscribe(start + 1).await?;
        Ok(Box::pin(futures::StreamExt::map(records, move |item| {
            item.map(|record| {
                let ack = Acker(AckerInner::Embedded {
                    log: EmbeddedAck(shared.clone()),
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
        let shared = self.shared.clone();
        let keys = [key.to_owned()];
        blocking(move || with_consumers(&shared, |c| c.claim_deliveries(&keys)).map(|won| won[0])).await
    }

    /// One synced write for all of them: a burst of notices costs one sync, not one each.
    async fn claim_deliveries(&self, keys: &[String]) -> Vec<Result<bool, LogError>> {
        let shared = self.shared.clone();
        let owned = keys.to_vec();
        match blocking(move || with_consumers(&shared, |c| c.claim_deliveries(&owned))).await {
            Ok(won) => won.into_iter().map(Ok).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn stored_bytes(&self) -> Result<Option<u64>, LogError> {
        let path = self.shared.dir.join("records");
        let len = std::fs::metadata(&path)
            .map_err(|e| LogError::Unavailable(format!("cannot read {}: {e}", path.display())))?
            .len();
        Ok(Some(len))
    }

    /// While writes are failing, each call asks the file system whether space has come back,
    /// so readiness recovers without a write.
    fn write_failure(&self) -> Option<String> {
        let mut failure = self.shared.write_failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_some() && space_probe(&self.shared.dir).is_ok() {
            *failure = None;
        }
        failure.clone()
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

/// The embedded log's side of a claimed record's acknowledgement.
pub(super) struct EmbeddedAck(Arc<Shared>);

impl EmbeddedAck {
    /// Records that consumer `name` has taken every record up to `position`, durably.
    pub(super) async fn ack(self, name: String, position: u64) -> Result<(), LogError> {
        let shared = self.0;
        blocking(move || with_consumers(&shared, |c| c.ack(&name, position))).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, LogError> + Send + 'static) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| LogError::Unavailable(format!("embedded log task: {e}")))?
}

fn read_index(shared: &Shared) -> std::sync::RwLockReadGuard<'_, Index> {
    // A panic elsewhere cannot leave the index half-changed: the writer changes it only by
    // pushing whole entries after a successful sync.
    shared.index.read().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` on the consumers' file; an error once the log is closed.
fn with_consumers<T>(shared: &Shared, f: impl FnOnce(&mut ConsumerFile) -> Result<T, LogError>) -> Result<T, LogError> {
    match shared.consumers.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        Some(consumers) => f(consumers),
        None => Err(LogError::Unavailable("the log is closed".into())),
    }
}

async fn feed_subscription(
    shared: Arc<Shared>,
    mut durable: watch::Receiver<u64>,
    mut next: u64,
    tx: mpsc::Sender<Result<StoredRecord, LogError>>,
) {
    loop {
        let head = *durable.borrow_and_update();
        while next <= head {
            let last = head.min(next + READ_BATCH_MAX - 1);
            for position in next..=last {
                let item = read_record(&shared, position);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
            next = last + 1;
        }
        if durable.changed().await.is_err() {
            return;
        }
    }
}

// -------------------------------------------------------------------------------- the writer

struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Where the good records end: the next batch is written here.
    end: u64,
    durable: watch::Sender<u64>,
}

/// What one append in a batch comes to.
enum Plan {
    Answer(Result<Appended, LogError>),
    Write { position: u64, offset: u64 },
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < APPEND_BATCH_MAX {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.write_batch(jobs);
        }
    }

    /// Writes one group of appends, syncs once, and answers them.
    fn write_batch(&mut self, jobs: Vec<Job>) {
        let (plans, bytes) = self.plan(&jobs);
        let outcome = if bytes.is_empty() { Ok(()) } else { self.write_and_sync(&bytes) };
        if outcome.is_ok() && !bytes.is_empty() {
            self.record_success(&plans, &jobs, bytes.len() as u64);
        }
        for (plan, job) in plans.into_iter().zip(jobs) {
            let answer = match (plan, &outcome) {
                (Plan::Answer(a), _) => a,
                (Plan::Write { position, .. }, Ok(())) => Ok(Appended { position, duplicate: false }),
                (Plan::Write { .. }, Err(e)) => Err(e.clone()),
            };
            // The caller may have gone away; its append stands either way.
            let _ = job.reply.send(answer);
        }
    }

    /// Decides each append against the index and the batch so far; encodes the accepted ones.
    fn plan(&self, jobs: &[Job]) -> (Vec<Plan>, Vec<u8>) {
        let index = read_index(&self.shared);
        let mut head = index.head();
        let mut case_last: HashMap<Uuid, u64> = HashMap::new();
        let mut batch_commands: HashMap<Uuid, u64> = HashMap::new();
        let mut bytes = Vec::new();
        let plans = jobs
            .iter()
            .map(|job| {
                if !job.raw() {
                    let stored =
                        batch_commands.get(&job.command_id).copied().or_else(|| index.command_position(job.command_id));
                    if let Some(position) = stored {
                        return Plan::Answer(Ok(Appended { position, duplicate: true }));
                    }
                    let last = case_last.get(&job.case_id).copied().unwrap_or_else(|| index.case_last(job.case_id));
                    if last != job.expected {
                        return Plan::Answer(Err(LogError::Conflict { case_id: job.case_id, expected: job.expected }));
                    }
                }
                let position = head + 1;
                let offset = self.end + bytes.len() as u64;
                if let Err(e) = encode_record(job, position, &mut bytes) {
                    return Plan::Answer(Err(LogError::Encode(e)));
                }
                head = position;
                if !job.raw() {
                    case_last.insert(job.case_id, position);
                    batch_commands.insert(job.command_id, position);
                }
                Plan::Write { position, offset }
            })
            .collect();
        (plans, bytes)
    }

    /// Writes `bytes` at the end and syncs; on failure cuts the file back so nothing of the
    /// batch remains.
    fn write_and_sync(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        let written = self.file.write_all_at(bytes, self.end).and_then(|()| self.file.sync_data());
        let Err(e) = written else { return Ok(()) };
        let cut = self.file.set_len(self.end).and_then(|()| self.file.sync_data());
        let reason = match cut {
            Ok(()) => format!("embedded log write failed: {e}"),
            // The bytes past `end` are garbage the next batch overwrites, and a restart cuts off
            // as a torn tail; they are never read, because the index does not point at them.
            Err(cut) => format!("embedded log write failed: {e} (and cutting the file back failed: {cut})"),
        };
        let mut failure = self.shared.write_failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            tracing::error!("{reason}; appends are refused until the disk accepts writes again");
        }
        *failure = Some(reason.clone());
        Err(LogError::NotStored(reason))
    }

    fn record_success(&mut self, plans: &[Plan], jobs: &[Job], bytes: u64) {
        let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
        for (plan, job) in plans.iter().zip(jobs) {
            if let Plan::Write { position, offset } = plan {
                index.add(*offset, *position, (!job.raw()).then_some((job.case_id, job.command_id)));
            }
        }
        let head = index.head();
        drop(index);
        self.end += bytes;
        let mut failure = self.shared.write_failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.take().is_some() {
            tracing::info!("embedded log writes succeed again");
        }
        drop(failure);
        // Readers see the new records before any writer hears its append succeeded, so a reader
        // that acts on an acknowledgement finds what was acknowledged.
        self.durable.send_replace(head);
    }
}

// ------------------------------------------------------------------------------ record codec

fn encode_record(job: &Job, position: u64, out: &mut Vec<u8>) -> Result<(), String> {
    let record = &job.record;
    let mut body = Vec::with_capacity(64 + record.subject.len() + record.payload.len());
    body.extend_from_slice(&position.to_le_bytes());
    body.push(if job.raw() { KIND_RAW } else { KIND_COMMIT });
    body.extend_from_slice(job.case_id.as_bytes());
    body.extend_from_slice(job.command_id.as_bytes());
    // A commit's subject and message id follow from its case and command ids: only raw records
    // store them.
    if job.raw() {
        frame::put_short_str(&mut body, &record.subject)?;
        frame::put_short_str(&mut body, record.msg_id.as_deref().unwrap_or(""))?;
    }
    body.extend_from_slice(&record.payload);
    frame::encode(&body, out);
    Ok(())
}

/// Reads every record of the records file in order, checking that positions are dense, and
/// hands each to `visit` with its offset, position, case and command ids (commits) and body.
fn scan_records(
    file: &File,
    path: &Path,
    mut visit: impl FnMut(u64, u64, Option<(Uuid, Uuid)>, &[u8]) -> Result<(), String>,
) -> Result<Ending, LogError> {
    let mut next = 1u64;
    frame::scan(file, RECORDS_MAGIC, RECORD_BODY_BYTES_MAX, |offset, body| {
        let (position, meta) = record_meta(body)?;
        if position != next {
            return Err(format!("holds position {position} where {next} belongs"));
        }
        next += 1;
        visit(offset, position, meta, body)
    })
    .map_err(|d| damaged(path, &d, "record", d.frames_before + 1))
}

fn open_read_only(path: &Path) -> Result<File, LogError> {
    File::open(path).map_err(|e| setup(format!("cannot read {}: {e}", path.display())))
}

/// A record's position, and for a commit its case and command ids.
fn record_meta(body: &[u8]) -> Result<(u64, Option<(Uuid, Uuid)>), String> {
    let mut c = Cursor::new(body);
    let position = c.u64()?;
    let kind = c.u8()?;
    let case_id = c.uuid()?;
    let command_id = c.uuid()?;
    match kind {
        KIND_COMMIT => Ok((position, Some((case_id, command_id)))),
        KIND_RAW => Ok((position, None)),
        other => Err(format!("unknown record kind {other}")),
    }
}

fn decode_record(body: &[u8]) -> Result<StoredRecord, String> {
    let mut c = Cursor::new(body);
    let position = c.u64()?;
    let kind = c.u8()?;
    let case_id = c.uuid()?;
    let command_id = c.uuid()?;
    let (subject, msg_id) = match kind {
        KIND_COMMIT => (case_subject(case_id), Some(command_id.to_string())),
        _ => (c.short_str()?.to_owned(), Some(c.short_str()?.to_owned()).filter(|m| !m.is_empty())),
    };
    Ok(StoredRecord { position, subject, msg_id, payload: Bytes::copy_from_slice(c.rest()) })
}

fn read_record(shared: &Shared, position: u64) -> Result<StoredRecord, LogError> {
    let offset = read_index(shared)
        .offset(position)
        .ok_or_else(|| setup(format!("embedded log record {position} is missing")))?;
    let record = frame::read_at(&shared.file, offset, RECORD_BODY_BYTES_MAX)
        .and_then(|body| decode_record(&body))
        .map_err(|e| setup(format!("embedded log record {position} (byte {offset}) is damaged: {e}")))?;
    if record.position != position {
        return Err(setup(format!(
            "embedded log record at byte {offset} holds position {}, not {position}",
            record.position
        )));
    }
    Ok(record)
}

// ------------------------------------------------------------------------ durable consumers

/// Durable consumers' positions and claimed deliveries, kept in memory and appended to the
/// `consumers` file (synced) before any change is acted on.
struct ConsumerFile {
    path: PathBuf,
    file: File,
    end: u64,
    positions: HashMap<String, u64>,
    deliveries: HashSet<String>,
}

enum ConsumerEntry {
    Ack(String, u64),
    Delivery(String),
}

impl ConsumerFile {
    fn open(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join("consumers");
        let file = open_file(&path, CONSUMERS_MAGIC)?;
        let mut positions = HashMap::new();
        let mut deliveries = HashSet::new();
        let mut frames = 0u64;
        let ending = frame::scan(&file, CONSUMERS_MAGIC, CONSUMER_BODY_BYTES_MAX, |_, body| {
            frames += 1;
            match consumer_entry(body)? {
                ConsumerEntry::Ack(name, position) => {
                    let p = positions.entry(name).or_insert(0);
                    *p = position.max(*p);
                }
                ConsumerEntry::Delivery(key) => {
                    deliveries.insert(key);
                }
            }
            Ok(())
        })
        .map_err(|d| damaged(&path, &d, "consumer entry", d.frames_before + 1))?;
        let end = cut_torn_tail(&file, &path, &ending)?;
        let mut consumers = ConsumerFile { path, file, end, positions, deliveries };
        let live = (consumers.positions.len() + consumers.deliveries.len()) as u64;
        if frames > CONSUMER_FILE_SLACK * live.max(64) {
            consumers.compact()?;
        }
        Ok(consumers)
    }

    /// Where consumer `name` starts: after its last acknowledgement, or after `head` when new.
    fn start(&mut self, name: &str, head: u64) -> Result<u64, LogError> {
        match self.positions.get(name) {
            Some(p) => Ok(*p),
            None => {
                self.append(&ConsumerEntry::Ack(name.to_owned(), head), true)?;
                self.positions.insert(name.to_owned(), head);
                Ok(head)
            }
        }
    }

    fn ack(&mut self, name: &str, position: u64) -> Result<(), LogError> {
        if self.positions.get(name).is_some_and(|p| *p >= position) {
            return Ok(());
        }
        // Not synced: an acknowledgement lost in a crash only hands records out again, and
        // every delivery of them is claimed (synced) before it is made, so none goes out twice.
        self.append(&ConsumerEntry::Ack(name.to_owned(), position), false)?;
        self.positions.insert(name.to_owned(), position);
        Ok(())
    }

    /// Claims each key not claimed before (nor earlier in `keys`), all in one synced write.
    fn claim_deliveries(&mut self, keys: &[String]) -> Result<Vec<bool>, LogError> {
        let mut new = HashSet::new();
        let won: Vec<bool> = keys.iter().map(|k| !self.deliveries.contains(k) && new.insert(k.as_str())).collect();
        let entries: Vec<ConsumerEntry> =
            keys.iter().zip(&won).filter(|(_, w)| **w).map(|(k, _)| ConsumerEntry::Delivery(k.clone())).collect();
        if !entries.is_empty() {
            self.append_all(&entries, true)?;
        }
        self.deliveries.extend(new.into_iter().map(str::to_owned));
        Ok(won)
    }

    fn append(&mut self, entry: &ConsumerEntry, sync: bool) -> Result<(), LogError> {
        self.append_all(std::slice::from_ref(entry), sync)
    }

    /// Appends `entries` in one write (and one sync): all of them are stored, or none.
    fn append_all(&mut self, entries: &[ConsumerEntry], sync: bool) -> Result<(), LogError> {
        let mut bytes = Vec::new();
        for entry in entries {
            frame::encode(&encode_consumer_entry(entry)?, &mut bytes);
        }
        let written =
            self.file.write_all_at(&bytes, self.end).and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Best effort: what lies past `end` is overwritten next time or cut off on open.
            let _ = self.file.set_len(self.end);
            return Err(LogError::NotStored(format!("embedded log consumer file write failed: {e}")));
        }
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// Rewrites the file with one entry per consumer and delivery: written beside it, synced,
    /// renamed over it, and the folder synced, so a crash leaves the old file or the new one.
    fn compact(&mut self) -> Result<(), LogError> {
        let tmp = self.path.with_extension("compacting");
        let mut bytes = CONSUMERS_MAGIC.to_vec();
        let entries = self
            .positions
            .iter()
            .map(|(n, p)| ConsumerEntry::Ack(n.clone(), *p))
            .chain(self.deliveries.iter().map(|k| ConsumerEntry::Delivery(k.clone())));
        for entry in entries {
            frame::encode(&encode_consumer_entry(&entry)?, &mut bytes);
        }
        let io = |e: std::io::Error| setup(format!("cannot compact {}: {e}", self.path.display()));
        std::fs::write(&tmp, &bytes).map_err(io)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        sync_dir(self.path.parent().unwrap_or(Path::new("."))).map_err(io)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path).map_err(io)?;
        self.end = bytes.len() as u64;
        Ok(())
    }
}

fn encode_consumer_entry(entry: &ConsumerEntry) -> Result<Vec<u8>, LogError> {
    let mut body = Vec::new();
    let text = match entry {
        ConsumerEntry::Ack(name, position) => {
            body.push(TAG_ACK);
            body.extend_from_slice(&position.to_le_bytes());
            name
        }
        ConsumerEntry::Delivery(key) => {
            body.push(TAG_DELIVERY);
            key
        }
    };
    frame::put_short_str(&mut body, text).map_err(LogError::Encode)?;
    Ok(body)
}

fn consumer_entry(body: &[u8]) -> Result<ConsumerEntry, String> {
    let mut c = Cursor::new(body);
    match c.u8()? {
        TAG_ACK => {
            let position = c.u64()?;
            Ok(ConsumerEntry::Ack(c.short_str()?.to_owned(), position))
        }
        TAG_DELIVERY => Ok(ConsumerEntry::Delivery(c.short_str()?.to_owned())),
        other => Err(format!("unknown consumer entry tag {other}")),
    }
}

// ------------------------------------------------------------------------------ file helpers

fn setup(message: String) -> LogError {
    LogError::Setup(message)
}

fn damaged(path: &Path, d: &Damage, what: &str, number: u64) -> LogError {
    setup(format!(
        "{} is damaged at byte {}: {what} {number} cannot be read ({}); the {} before it are intact. \
         `whistle check` reports the same; restore the data folder from a backup",
        path.display(),
        d.offset,
        d.reason,
        d.frames_before
    ))
}

/// Opens a log file for reading and writing, creating it with its magic (synced, and the
/// folder synced) when it does not exist.
fn open_file(path: &Path, magic: &[u8; 8]) -> Result<File, LogError> {
    let io = |e: std::io::Error| setup(format!("cannot open {}: {e}", path.display()));
    if !path.exists() {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, magic).map_err(io)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
    }
    OpenOptions::new().read(true).write(true).open(path).map_err(io)
}

/// Cuts off a torn tail (logging it) and returns where good frames end.
fn cut_torn_tail(file: &File, path: &Path, ending: &Ending) -> Result<u64, LogError> {
    if let Ending::TornTail { end, bytes } = ending {
        tracing::warn!("{}: cutting off {bytes} bytes of an interrupted write at byte {end}", path.display());
        file.set_len(*end)
            .and_then(|()| file.sync_data())
            .map_err(|e| setup(format!("cannot cut the torn tail of {}: {e}", path.display())))?;
    }
    Ok(ending.end())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes the folder's lock, so two processes never append to one log.
fn lock_folder(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| setup(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        return Err(setup(format!("{} is in use by another whistle process", dir.display())));
    }
    Ok(file)
}

/// Asks the file system for space beside the log, then gives it back: whether a write of
/// that size could succeed now.
fn space_probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join("space-probe");
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    // SAFETY: fallocate on a file descriptor we own.
    let allocated = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, SPACE_PROBE_BYTES) };
    let _ = std::fs::remove_file(&path);
    match allocated {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// A log folder written by earlier versions (sled) is copied record by record into the
/// current format once; the old files stay where they were, unused.
fn migrate_from_sled(dir: &Path) -> Result<(), LogError> {
    if dir.join("records").exists() || !dir.join("db").exists() {
        return Ok(());
    }
    let fail = |e: String| setup(format!("cannot migrate the log in {}: {e}", dir.display()));
    let db = sled::Config::new().path(dir).open().map_err(|e| fail(e.to_string()))?;
    let tree = |name: &str| db.open_tree(name).map_err(|e| fail(e.to_string()));
    let (records, consumers) = (tree("records")?, tree("consumers")?);
    let mut bytes = RECORDS_MAGIC.to_vec();
    for (n, item) in records.iter().enumerate() {
        let (key, value) = item.map_err(|e| fail(e.to_string()))?;
        let position = legacy_u64(&key).map_err(fail)?;
        if position != n as u64 + 1 {
            return Err(fail(format!("record {position} found where {} belongs", n + 1)));
        }
        let record = legacy_record(position, &value).map_err(fail)?;
        let commit = record.decode().ok();
        let (reply, _) = oneshot::channel();
        let job = Job {
            case_id: commit.as_ref().map_or(Uuid::nil(), |c| c.case_id),
            command_id: commit.as_ref().map_or(Uuid::nil(), |c| c.command_id),
            expected: if commit.is_some() { 0 } else { u64::MAX },
            record,
            reply,
        };
        encode_record(&job, position, &mut bytes).map_err(fail)?;
    }
    let mut consumer_bytes = CONSUMERS_MAGIC.to_vec();
    for item in consumers.iter() {
        let (key, value) = item.map_err(|e| fail(e.to_string()))?;
        let entry = match key.strip_prefix(b"delivery:") {
            Some(k) => ConsumerEntry::Delivery(String::from_utf8_lossy(k).into_owned()),
            None => ConsumerEntry::Ack(String::from_utf8_lossy(&key).into_owned(), legacy_u64(&value).map_err(fail)?),
        };
        frame::encode(&encode_consumer_entry(&entry)?, &mut consumer_bytes);
    }
    drop((records, consumers, db));
    for (name, content) in [("consumers", consumer_bytes), ("records", bytes)] {
        let tmp = dir.join(format!("{name}.migrating"));
        std::fs::write(&tmp, &content).map_err(|e| fail(e.to_string()))?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(|e| fail(e.to_string()))?;
    }
    sync_dir(dir).map_err(|e| fail(e.to_string()))?;
    tracing::info!("migrated the embedded log in {} to the checksummed format", dir.display());
    Ok(())
}

fn legacy_u64(bytes: &[u8]) -> Result<u64, String> {
    let b: [u8; 8] =
        bytes.try_into().map_err(|_| format!("expected an 8-byte position, found {} bytes", bytes.len()))?;
    Ok(u64::from_be_bytes(b))
}

/// The earlier record layout: subject length (u16 BE), subject, msg-id length (u16 BE), msg-id,
/// payload.
fn legacy_record(position: u64, bytes: &[u8]) -> Result<StoredRecord, String> {
    let mut rest = bytes;
    let mut fields = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = rest.get(..2).ok_or_else(|| format!("record {position} ends early"))?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let field = rest.get(2..2 + len).ok_or_else(|| format!("record {position} ends early"))?;
        fields.push(String::from_utf8(field.to_vec()).map_err(|_| format!("record {position} is not UTF-8"))?);
        rest = &rest[2 + len..];
    }
    let msg_id = fields.pop().filter(|m| !m.is_empty());
    let subject = fields.pop().unwrap_or_default();
    Ok(StoredRecord { position, subject, msg_id, payload: Bytes::copy_from_slice(rest) })
}

/// Benchmark baseline: raw appends of `payload_bytes`-byte records to a file in groups of
/// `batch`, one `fdatasync` per group, for `duration`, in a scratch file at `path`. Returns
/// records per second.
pub fn baseline_write_rate(
    path: &Path,
    batch: usize,
    payload_bytes: usize,
    duration: std::time::Duration,
) -> Result<f64, LogError> {
    let io = |e: std::io::Error| LogError::Unavailable(format!("baseline: {e}"));
    std::fs::create_dir_all(path).map_err(io)?;
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(path.join("baseline")).map_err(io)?;
    let payload = vec![b'x'; payload_bytes];
    let started = std::time::Instant::now();
    let (mut written, mut end) = (0u64, 0u64);
    while started.elapsed() < duration {
        let mut bytes = Vec::with_capacity(batch * (payload_bytes + 8));
        for _ in 0..batch {
            written += 1;
            frame::encode(&payload, &mut bytes);
        }
        file.write_all_at(&bytes, end).and_then(|()| file.sync_data()).map_err(io)?;
        end += bytes.len() as u64;
    }
    Ok(written as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_finds_each_case_s_records_in_order_and_each_command_across_table_growth() {
        let mut index = Index::default();
        let cases: Vec<Uuid> = (0..3_000u128).map(|i| Uuid::from_u128(i + 1)).collect();
        let mut expected: HashMap<Uuid, Vec<u64>> = HashMap::new();
        // Cases interleaved, one in three with a second and third record, raw records between.
        let mut position = 0;
        for round in 0..3 {
            for (i, case_id) in cases.iter().enumerate() {
                if round > 0 && i % 3 != 0 {
                    continue;
                }
                position += 1;
                index.add(position * 100, position, Some((*case_id, Uuid::from_u128(1 << 64 | position as u128))));
                expected.entry(*case_id).or_default().push(position);
                if i % 500 == 0 {
                    position += 1;
                    index.add(position * 100, position, None);
                }
            }
        }
        assert_eq!(index.head(), position);
        for (case_id, positions) in &expected {
            assert_eq!(&index.case_positions(*case_id, u64::MAX), positions);
            assert_eq!(index.case_last(*case_id), *positions.last().unwrap());
            let until = positions[0];
            assert_eq!(index.case_positions(*case_id, until), vec![until], "only records up to the durable head");
            for p in positions {
                assert_eq!(index.command_position(Uuid::from_u128(1 << 64 | *p as u128)), Some(*p));
                assert_eq!(index.offset(*p), Some(p * 100));
            }
        }
        assert_eq!(index.case_last(Uuid::from_u128(99_999)), 0);
        assert!(index.case_positions(Uuid::nil(), u64::MAX).is_empty(), "raw records belong to no case");
        assert_eq!(index.command_position(Uuid::from_u128(7)), None);
        assert_eq!(index.offset(0), None);
        assert_eq!(index.offset(position + 1), None);
    }
}
