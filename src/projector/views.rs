//! The views in sled: one tree, keys by prefix, written one batch at a time with
//! `apply_batch` (atomic), so a batch's view changes, deadline index and checkpoint land
//! together or not at all.
//!
//! The key layout is owned by [`super::keys`].
//!
//! Alert delivery keeps its own state in a second tree that is not part of the views (it is
//! not derived from the log, and a rebuild leaves it alone).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::apply::ViewTarget;
use super::codec;
use super::keys::*;
use super::model::{AlertView, CaseView, DeadLetter, IndexEntry, StatsCell, StatsDimension};
use crate::domain::YearSchedule;

/// Keys and bytes under one key prefix (see [`Views::live_size`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveSize {
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// The largest value.
    pub largest: u64,
}

/// A raw key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("views storage: {0}")]
    Storage(String),
    #[error("views hold an undecodable value under {key}: {message}")]
    Corrupt { key: String, message: String },
    /// The database files themselves are damaged.
    #[error("views are damaged: {0}")]
    Damaged(String),
}

fn storage(e: sled::Error) -> ViewError {
    ViewError::Storage(e.to_string())
}

pub(super) fn corrupt(key: &[u8], message: String) -> ViewError {
    ViewError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), message }
}

fn open_inner(path: &Path, cache_bytes: u64) -> Result<Inner, ViewError> {
    let opened = std::panic::catch_unwind(|| {
        let db = sled::Config::new().path(path).mode(sled::Mode::HighThroughput).cache_capacity(cache_bytes).open()?;
        let tree = db.open_tree("views")?;
        let delivery = db.open_tree("delivery")?;
        Ok::<_, sled::Error>(Inner { db, tree, delivery })
    });
    match opened {
        Ok(Ok(inner)) => Ok(inner),
        Ok(Err(e @ (sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)))) => {
            Err(ViewError::Damaged(format!("cannot open views at {}: {e}", path.display())))
        }
        Ok(Err(e)) => Err(ViewError::Storage(format!("cannot open views at {}: {e}", path.display()))),
        Err(_) => Err(ViewError::Damaged(format!("cannot open views at {}: sled could not read them", path.display()))),
    }
}

/// Version of the views' layout; views written under another are dropped and rebuilt.
pub const VIEWS_FORMAT: u64 = 9;

/// Handle on the views database. Cheap to clone; every clone follows a [`Views::reopen`]
/// and a [`Views::compact`].
#[derive(Clone)]
pub struct Views {
    path: Arc<PathBuf>,
    cache_bytes: u64,
    inner: Arc<RwLock<Option<Inner>>>,
    /// Held (shared) by every delivery write, and (exclusive) by a compaction while it copies,
    /// so that no claim written meanwhile is left behind in the old database.
    gate: Arc<RwLock<()>>,
    /// Bytes on disk of a fresh copy of the views: measured after a compaction, estimated
    /// before (0: not known yet).
    fresh_bytes: Arc<AtomicU64>,
    /// Views smaller than this are never compacted ([`COMPACT_SLACK_BYTES`]).
    compact_floor: Arc<AtomicU64>,
    /// Compactions since open.
    compactions: Arc<AtomicU64>,
    /// Reopens since open.
    reopens: Arc<AtomicU64>,
}

/// What a compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Bytes of keys and values copied.
    pub live_bytes: u64,
}

/// Views are compacted when they take more than this many times what a fresh copy would…
pub const COMPACT_SPACE_FACTOR: u64 = 2;
/// …and more than this (small views are never worth compacting).
pub const COMPACT_SLACK_BYTES: u64 = 256 * 1024 * 1024;
/// A fresh copy of the views takes about this many bytes on disk per byte of keys and values
/// (sled's pages, measured: 2.7 for `whistle sim` views).
const FRESH_BYTES_PER_LIVE_BYTE: u64 = 3;
/// Most threads a fold's work (deriving keys, writing them) is split over.
const FOLD_THREADS_MAX: usize = 4;

/// Threads a fold's work is split over: one per core, at most [`FOLD_THREADS_MAX`].
pub(super) fn fold_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, FOLD_THREADS_MAX)
}
/// Entries per batch when copying into a fresh database.
const COPY_BATCH_ENTRIES: usize = 8_192;

/// The open database. Handles are cloned out for each operation so that a reopen only waits
/// for operations in flight, never for idle holders.
#[derive(Clone)]
struct Inner {
    db: sled::Db,
    tree: sled::Tree,
    delivery: sled::Tree,
}

/// sled's page cache for the views when nothing else is said, in MiB. sled's own default is
/// 1 GiB per database, and sled uses about three times its nominal cache; with 16 MiB a service
/// that has projected a million records stays under 400 MB (docs/performance.md), and the
/// operating system's file cache still holds the views' file.
pub const VIEWS_CACHE_MIB_DEFAULT: u64 = 16;
/// [`VIEWS_CACHE_MIB_DEFAULT`] in bytes.
pub const VIEWS_CACHE_BYTES_DEFAULT: u64 = VIEWS_CACHE_MIB_DEFAULT * 1024 * 1024;

/// How long a reopen waits for operations still holding the old database.
const REOPEN_ATTEMPTS_MAX: u32 = 100;
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

impl Views {
    /// Opens the views. sled panics on some damaged files instead of answering an error: that
    /// comes back as [`ViewError::Storage`] too.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ViewError> {
        Views::open_with_cache(path, VIEWS_CACHE_BYTES_DEFAULT)
    }

    /// Opens the views with a page cache of `cache_bytes` (the bound on what they keep in memory).
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: u64) -> Result<Self, ViewError> {
        let path = path.as_ref().to_path_buf();
        // A compaction that did not finish (or whose old copy was not yet removed).
        let leftover = fresh_path(&path);
        if leftover.exists() {
            std::fs::remove_dir_all(&leftover).map_err(|e| {
                ViewError::Storage(format!("cannot remove an unfinished compaction at {}: {e}", leftover.display()))
            })?;
        }
        let inner = open_inner(&path, cache_bytes)?;
        Ok(Views {
            path: Arc::new(path),
            cache_bytes,
            inner: Arc::new(RwLock::new(Some(inner))),
            gate: Arc::new(RwLock::new(())),
            fresh_bytes: Arc::new(AtomicU64::new(0)),
            compact_floor: Arc::new(AtomicU64::new(COMPACT_SLACK_BYTES)),
            compactions: Arc::new(AtomicU64::new(0)),
            reopens: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Compactions (and resets) since the views were opened.
    pub fn compactions(&self) -> u64 {
        self.compactions.load(Ordering::Relaxed)
    }

    /// Reopens ([`Views::reopen`]) since the views were opened.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// Sets the size below which the views are never compacted (for tests of compaction on
    /// small views).
    pub fn set_compact_floor(&self, bytes: u64) {
        self.compact_floor.store(bytes, Ordering::Relaxed);
    }

    /// Bytes the views take on disk.
    pub fn size_on_disk(&self) -> Result<u64, ViewError> {
        self.inner()?.db.size_on_disk().map_err(storage)
    }

    /// Compacts the views when they take more than [`COMPACT_SPACE_FACTOR`] times what a fresh
    /// copy of them would (and more than [`COMPACT_SLACK_BYTES`]). sled reclaims space slowly,
    /// and not at all across a rebuild. What a fresh copy takes is known after a compaction;
    /// before the first it is estimated from the live bytes (which reads every key, so it is
    /// done only once the file has grown past the last estimate).
    /// Only the projector may call this, between batches: it is the views' one writer.
    pub fn compact_if_worthwhile(&self) -> Result<Option<Compaction>, ViewError> {
        let floor = self.compact_floor.load(Ordering::Relaxed);
        let allowed = |fresh: u64| fresh.saturating_mul(COMPACT_SPACE_FACTOR).max(floor);
        if self.size_on_disk()? <= allowed(self.fresh_bytes.load(Ordering::Relaxed)) {
            return Ok(None);
        }
        let live = self.live_bytes()?;
        let estimate = live.saturating_mul(FRESH_BYTES_PER_LIVE_BYTE);
        if self.size_on_disk()? <= allowed(estimate) {
            self.fresh_bytes.store(estimate, Ordering::Relaxed);
            return Ok(None);
        }
        self.compact().map(Some)
    }

    /// Copies the views and the delivery state into a fresh database and puts it in place of
    /// the old one, which gives back all the space sled has not reclaimed. The swap is one
    /// `renameat2(RENAME_EXCHANGE)`: after a crash at any point the views folder holds either
    /// database whole, and the other is removed on the next open.
    /// Only the projector may call this, between batches: it is the views' one writer.
    pub fn compact(&self) -> Result<Compaction, ViewError> {
        // Moved into the closure, which is dropped once it has run: the old database must be
        // closed before the fresh one is opened in its place.
        let tree = self.inner()?.tree;
        self.replace(move |new| copy_tree(&tree, new))
    }

    /// Replaces the views with empty ones of this format, keeping the delivery state, and
    /// gives back their space (see [`Views::compact`]).
    pub fn reset(&self) -> Result<(), ViewError> {
        self.replace(|new| {
            new.insert(FORMAT_KEY, &VIEWS_FORMAT.to_be_bytes()).map_err(storage)?;
            Ok(0)
        })
        .map(|_| ())
    }

    /// Replaces the views with `entries` (keys and values in key order: a fold of the log),
    /// keeping the delivery state, in one step as [`Views::compact`] does.
    /// Only the projector may call this: it is the views' one writer.
    pub fn install(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<Compaction, ViewError> {
        self.replace(|new| write_sorted(new, entries))
    }

    /// Builds a fresh database beside the views (`fill` writes its views tree, the delivery
    /// state is copied), then swaps it in.
    fn replace(&self, fill: impl FnOnce(&sled::Tree) -> Result<u64, ViewError>) -> Result<Compaction, ViewError> {
        let old = self.inner()?;
        let bytes_before = old.db.size_on_disk().map_err(storage)?;
        let fresh = fresh_path(&self.path);
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh).map_err(|e| io_error("remove", &fresh, e))?;
        }
        let built = (|| {
            let new = open_inner(&fresh, self.cache_bytes)?;
            let mut live_bytes = fill(&new.tree)?;
            // Delivery writes wait from here until the swap, so that none is left behind in
            // the old database.
            let writers = self.gate.write().unwrap_or_else(|p| p.into_inner());
            live_bytes += copy_tree(&old.delivery, &new.delivery)?;
            new.db.flush().map_err(storage)?;
            drop(new);
            // sled's flush is `sync_file_range`; the delivery state must survive a power cut.
            sync_folder(&fresh)?;
            Ok((live_bytes, writers))
        })();
        let (live_bytes, _writers) = match built {
            Ok(built) => built,
            Err(e) => {
                // A full disk, most likely: give the space back at once.
                let _ = std::fs::remove_dir_all(&fresh);
                self.fresh_bytes.store(bytes_before, Ordering::Relaxed);
                return Err(e);
            }
        };
        let mut slot = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = exchange(&fresh, &self.path) {
            // The old views are untouched and stay in use; try again only once they have
            // grown as much again.
            drop(slot);
            let _ = std::fs::remove_dir_all(&fresh);
            self.fresh_bytes.store(bytes_before, Ordering::Relaxed);
            return Err(e);
        }
        drop(slot.take());
        drop(old);
        *slot = Some(open_retrying(&self.path, self.cache_bytes)?);
        let bytes_after = slot.as_ref().expect("just opened").db.size_on_disk().map_err(storage)?;
        drop(slot);
        // Readers may still hold the old database open: its files go when they let go.
        if let Err(e) = std::fs::remove_dir_all(&fresh) {
            tracing::warn!("cannot remove the views' old copy at {}: {e}", fresh.display());
        }
        self.fresh_bytes.store(bytes_after, Ordering::Relaxed);
        self.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(Compaction { bytes_before, bytes_after, live_bytes })
    }

    /// Where the views live.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops the open database and opens it again from disk: after a failed write sled keeps
    /// failing until reopened, and what it held in memory of the failed batch is discarded.
    /// Readers wait meanwhile (about a second for views of a million cases).
    pub fn reopen(&self) -> Result<(), ViewError> {
        let mut slot = self.inner.write().unwrap_or_else(|p| p.into_inner());
        drop(slot.take());
        *slot = Some(open_retrying(&self.path, self.cache_bytes)?);
        self.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn inner(&self) -> Result<Inner, ViewError> {
        let slot = self.inner.read().unwrap_or_else(|p| p.into_inner());
        slot.clone().ok_or_else(|| ViewError::Storage("the views are being reopened".into()))
    }

    /// Writes everything so far to disk, on a blocking thread of the runtime. Not sled's
    /// `flush_async`: that flush waits on sled's own small thread pool for a write queued on the
    /// same pool, and with several flushing at once every pool thread waits and none writes.
    pub async fn flush(&self) -> Result<(), ViewError> {
        let db = self.inner()?.db;
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| ViewError::Storage(format!("flushing the views: {e}")))?
            .map_err(storage)?;
        Ok(())
    }

    /// Whether the views were written under another layout and must be rebuilt.
    pub fn outdated(&self) -> Result<bool, ViewError> {
        let format = self.counter(FORMAT_KEY)?;
        Ok(format != VIEWS_FORMAT && (format != 0 || self.checkpoint()? > 0))
    }

    /// Reads every key and value once, and checks that the counters the service relies on
    /// decode and equal what they count: damage sled reports, or counters that do not hold,
    /// come back as [`ViewError::Damaged`]. Views of another format are left to the projector,
    /// which rebuilds them.
    pub fn verify(&self) -> Result<(), ViewError> {
        let damaged = |e: ViewError| ViewError::Damaged(e.to_string());
        let inner = self.inner()?;
        let mut counted = [0u64; 3];
        let prefixes: [&[u8]; 3] = [b"i:", b"ao:", b"d:"];
        for (n, tree) in [&inner.tree, &inner.delivery].into_iter().enumerate() {
            let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tree.iter().try_for_each(|item| {
                    let (key, _) = item?;
                    if n == 0 {
                        for (count, prefix) in counted.iter_mut().zip(prefixes) {
                            *count += u64::from(key.starts_with(prefix));
                        }
                    }
                    Ok::<(), sled::Error>(())
                })
            }));
            match walked {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ViewError::Damaged(e.to_string())),
                Err(_) => return Err(ViewError::Damaged("sled could not read them".into())),
            }
        }
        for key in [FORMAT_KEY, CHECKPOINT_KEY] {
            self.counter(key).map_err(damaged)?;
        }
        if self.outdated()? {
            return Ok(());
        }
        let keys = [ARMED_COUNT_KEY, OPEN_ALERT_COUNT_KEY, DEAD_LETTER_COUNT_KEY];
        for ((key, prefix), count) in keys.into_iter().zip(prefixes).zip(counted) {
            let kept = self.counter(key).map_err(damaged)?;
            if kept != count {
                return Err(ViewError::Damaged(format!(
                    "counter {} says {kept} but {count} keys start with {}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(prefix)
                )));
            }
        }
        Ok(())
    }

    /// How many keys and bytes of keys and values the views hold, by key prefix (`c:`, `i:`,
    /// `l:u:`…): what they would take with no storage overhead, to compare with their size on disk.
    pub fn live_size(&self) -> Result<BTreeMap<String, LiveSize>, ViewError> {
        let mut out: BTreeMap<String, LiveSize> = BTreeMap::new();
        for item in self.inner()?.tree.iter() {
            let (key, value) = item.map_err(storage)?;
            let size = out.entry(key_prefix(&key)).or_default();
            size.keys += 1;
            size.bytes += (key.len() + value.len()) as u64;
            size.largest = size.largest.max(value.len() as u64);
        }
        Ok(out)
    }

    /// Bytes of keys and values the views hold, all prefixes together.
    pub fn live_bytes(&self) -> Result<u64, ViewError> {
        let mut bytes = 0;
        for item in self.inner()?.tree.iter() {
            let (key, value) = item.map_err(storage)?;
            bytes += (key.len() + value.len()) as u64;
        }
        Ok(bytes)
    }

    /// Whether the views are a fresh, empty copy of this format (only the format key).
    pub fn is_fresh(&self) -> Result<bool, ViewError> {
        Ok(self.counter(FORMAT_KEY)? == VIEWS_FORMAT && self.inner()?.tree.iter().nth(1).is_none())
    }

    /// Every `every`-th value of each key prefix whose values are JSON documents (case views,
    /// index entries, alerts, statistics cells…), for training the values' dictionary.
    pub fn sample_values(&self, every: usize) -> Result<Vec<Vec<u8>>, ViewError> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for item in self.inner()?.tree.iter() {
            let (key, value) = item.map_err(storage)?;
            if key.starts_with(b"m:") || key.starts_with(b"l:") || value.is_empty() {
                continue;
            }
            let n = seen.entry(key_prefix(&key)).or_default();
            if (*n).is_multiple_of(every.max(1)) {
                out.push(value.to_vec());
            }
            *n += 1;
        }
        Ok(out)
    }

    pub fn checkpoint(&self) -> Result<u64, ViewError> {
        self.counter(CHECKPOINT_KEY)
    }

    /// A u64 stored under `key` (0 when absent).
    fn counter(&self, key: &[u8]) -> Result<u64, ViewError> {
        match self.get_raw(key)? {
            Some(v) => u64_from(&v).map_err(|message| corrupt(key, message)),
            None => Ok(0),
        }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.inner()?.tree.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    /// Writes one batch atomically.
    pub fn apply(&self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Result<(), ViewError> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(v) => batch.insert(key.as_slice(), v.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        self.inner()?.tree.apply_batch(batch).map_err(storage)
    }

    pub fn case(&self, case_id: Uuid) -> Result<Option<CaseView>, ViewError> {
        self.get_json(&case_key(case_id))
    }

    /// Published calendar years, in year order.
    pub fn published_calendars(&self) -> Result<Vec<YearSchedule>, ViewError> {
        self.scan_json(CALENDAR_PREFIX)
    }

    /// The earliest entry of the deadline index that fires after `now`.
    pub fn earliest_alert_after(&self, now: DateTime<Utc>) -> Result<Option<IndexEntry>, ViewError> {
        let start = index_time_key(now.timestamp_millis().saturating_add(1));
        match self.inner()?.tree.range(start..prefix_end(b"i:")).next() {
            Some(item) => {
                let (key, value) = item.map_err(storage)?;
                decode(&key, &value).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Index entries due at or before `now`, earliest first, at most `max`.
    pub fn due_alerts(&self, now: DateTime<Utc>, max: usize) -> Result<Vec<IndexEntry>, ViewError> {
        let end = index_time_key(now.timestamp_millis().saturating_add(1));
        let mut out = Vec::new();
        for item in self.inner()?.tree.range(b"i:".to_vec()..end).take(max) {
            let (key, value) = item.map_err(storage)?;
            out.push(decode(&key, &value)?);
        }
        Ok(out)
    }

    /// Clocks in the deadline index: a counter the projector keeps, so reading it never scans.
    pub fn armed_count(&self) -> Result<u64, ViewError> {
        self.counter(ARMED_COUNT_KEY)
    }

    /// Whether an event names the stored file `sha256` (hex).
    pub fn attachment_named(&self, sha256: &str) -> Result<bool, ViewError> {
        Ok(self.get_raw(&attachment_key(sha256))?.is_some())
    }

    /// Evidence files attached over the whole installation, and their bytes.
    pub fn file_totals(&self) -> Result<(u64, u64), ViewError> {
        Ok((self.counter(FILES_COUNT_KEY)?, self.counter(FILE_BYTES_KEY)?))
    }

    pub fn alert(&self, alert_id: Uuid) -> Result<Option<AlertView>, ViewError> {
        self.get_json(&alert_key(alert_id))
    }

    /// Alerts, newest first; only unacknowledged ones when `open_only`.
    pub fn alerts(&self, open_only: bool, max: usize) -> Result<Vec<AlertView>, ViewError> {
        let mut out = Vec::new();
        let prefix: &[u8] = if open_only { b"ao:" } else { b"a:" };
        for item in self.inner()?.tree.scan_prefix(prefix).rev().take(max) {
            let (key, value) = item.map_err(storage)?;
            let id = &key[prefix.len()..];
            let view =
                if open_only { self.get_json::<AlertView>(&prefixed(b"a:", id))? } else { Some(decode(&key, &value)?) };
            out.extend(view);
        }
        Ok(out)
    }

    /// The status lists (prefixes) that together hold every case of a kind, or every case
    /// (`None`): those present, found by skipping from one to the next.
    pub fn status_lists(&self, kind: Option<&str>) -> Result<Vec<Vec<u8>>, ViewError> {
        let tree = self.inner()?.tree;
        let root = kind.map_or_else(|| STATUS_LISTS_PREFIX.to_vec(), kind_lists_prefix);
        let end = prefix_end(&root);
        let mut lists = Vec::new();
        let mut from = root;
        while let Some(item) = tree.range(from..end.clone()).next() {
            let (key, _) = item.map_err(storage)?;
            let list = status_list_of(&key).map_err(|m| corrupt(&key, m))?;
            from = prefix_end(&list);
            lists.push(list);
        }
        Ok(lists)
    }

    /// Case ids in the lists under `lists` (prefixes), newest opened first, after `cursor` (a
    /// list suffix from an earlier page); returns the ids and the cursor for the next page.
    pub fn list(
        &self,
        lists: &[Vec<u8>],
        cursor: Option<&[u8]>,
        max: usize,
    ) -> Result<(Vec<Uuid>, Option<Vec<u8>>), ViewError> {
        let entries = self.newest_first(lists, max, |prefix| {
            let end = match cursor {
                Some(c) => prefixed(prefix, c),
                None => prefix_end(prefix),
            };
            (prefix.to_vec(), end)
        })?;
        let next = if entries.len() == max { entries.last().map(|(_, suffix)| suffix.clone()) } else { None };
        Ok((entries.into_iter().map(|(id, _)| id).collect(), next))
    }

    /// Cases of the lists under `lists` opened in `[from, to)`, newest first, at most `max`,
    /// each with its list suffix (for [`Views::listed`]).
    pub fn recent_in_list(
        &self,
        lists: &[Vec<u8>],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<(Uuid, Vec<u8>)>, ViewError> {
        self.newest_first(lists, max, |prefix| opened_range(prefix, from, to))
    }

    /// The newest `max` entries of the lists under `lists`, each read in the key range
    /// `bounds` gives its prefix: each case id with its list suffix.
    fn newest_first(
        &self,
        lists: &[Vec<u8>],
        max: usize,
        bounds: impl Fn(&[u8]) -> (Vec<u8>, Vec<u8>),
    ) -> Result<Vec<(Uuid, Vec<u8>)>, ViewError> {
        let tree = self.inner()?.tree;
        let mut out = Vec::new();
        for prefix in lists {
            let (start, end) = bounds(prefix);
            for item in tree.range(start..end).rev().take(max) {
                let (key, _) = item.map_err(storage)?;
                let id = list_key_case_id(prefix, &key).map_err(|m| corrupt(&key, m))?;
                out.push((id, key[prefix.len()..].to_vec()));
            }
        }
        out.sort_unstable_by(|a, b| b.1.cmp(&a.1));
        out.truncate(max);
        Ok(out)
    }

    /// Whether the case with this list suffix is in the list under `prefix`.
    pub fn listed(&self, prefix: &[u8], suffix: &[u8]) -> Result<bool, ViewError> {
        self.inner()?.tree.contains_key(prefixed(prefix, suffix)).map_err(storage)
    }

    /// The anonymous feedback a follow-up code (its SHA-256, hex) belongs to.
    pub fn follow_up_case(&self, code_sha256_hex: &str) -> Result<Option<Uuid>, ViewError> {
        let prefix = follow_up_prefix(code_sha256_hex);
        match self.inner()?.tree.scan_prefix(&prefix).next() {
            None => Ok(None),
            Some(item) => {
                let (key, _) = item.map_err(storage)?;
                let id = key.get(prefix.len()..).and_then(|b| Uuid::from_slice(b).ok());
                id.map(Some).ok_or_else(|| corrupt(&key, "not a follow-up key".into()))
            }
        }
    }

    /// The cases of the lists under `lists` opened in `[from, to)`, oldest first, read lazily
    /// (for exports).
    pub fn opened_between(
        &self,
        lists: &[Vec<u8>],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<impl Iterator<Item = Result<Uuid, ViewError>> + Send + 'static, ViewError> {
        let tree = self.inner()?.tree;
        let sources = lists
            .iter()
            .map(|prefix| {
                let (start, end) = opened_range(prefix, from, to);
                let prefix = prefix.clone();
                tree.range(start..end).map(move |item| {
                    let (key, _) = item.map_err(storage)?;
                    let id = list_key_case_id(&prefix, &key).map_err(|m| corrupt(&key, m))?;
                    Ok((key[prefix.len()..].to_vec(), id))
                })
            })
            .collect();
        Ok(OldestFirst { sources, heads: Vec::new() }.map(|entry| entry.map(|(_, id)| id)))
    }

    /// Statistics cells of one dimension with dates in `[from, to]` (YYYY-MM-DD), by unit.
    pub fn stats(
        &self,
        dimension: StatsDimension,
        from: &str,
        to: &str,
    ) -> Result<BTreeMap<String, StatsCell>, ViewError> {
        let mut out: BTreeMap<String, StatsCell> = BTreeMap::new();
        let prefix = [b"t:", dimension.as_str().as_bytes(), &[0]].concat();
        for item in self.inner()?.tree.scan_prefix(&prefix) {
            let (key, value) = item.map_err(storage)?;
            let rest = &key[prefix.len()..];
            let Some(split) = rest.iter().position(|b| *b == 0) else { continue };
            let date = String::from_utf8_lossy(&rest[split + 1..]);
            if date.as_ref() < from || date.as_ref() > to {
                continue;
            }
            let unit = String::from_utf8_lossy(&rest[..split]).into_owned();
            let cell: StatsCell = decode(&key, &value)?;
            out.entry(unit).or_default().add(&cell, 1);
        }
        Ok(out)
    }

    pub fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, ViewError> {
        let mut out = Vec::new();
        for item in self.inner()?.tree.scan_prefix(b"d:").take(max) {
            let (key, value) = item.map_err(storage)?;
            out.push(decode(&key, &value)?);
        }
        Ok(out)
    }

    /// How many alerts of a stage have been recorded.
    pub fn alert_count(&self, stage: crate::domain::event::AlertStage) -> Result<u64, ViewError> {
        self.counter(&alert_count_key(stage))
    }

    /// Alerts not yet acknowledged: a counter, like [`Views::armed_count`].
    pub fn open_alert_count(&self) -> Result<u64, ViewError> {
        self.counter(OPEN_ALERT_COUNT_KEY)
    }

    /// Dead letters recorded: a counter, like [`Views::armed_count`].
    pub fn dead_letter_count(&self) -> Result<u64, ViewError> {
        self.counter(DEAD_LETTER_COUNT_KEY)
    }

    /// SHA-256 over every view key and value, in key order: equal digests, equal views.
    pub fn digest(&self) -> Result<String, ViewError> {
        let mut hasher = Sha256::new();
        for item in self.inner()?.tree.iter() {
            let (key, value) = item.map_err(storage)?;
            hasher.update((key.len() as u64).to_be_bytes());
            hasher.update(&key);
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(&value);
        }
        Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    // ----------------------------------------------------------------- delivery state

    pub fn delivery_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.inner()?.delivery.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    /// Writes one delivery entry, flushed.
    pub fn delivery_put(&self, key: &[u8], value: &[u8]) -> Result<(), ViewError> {
        self.delivery_put_all(&[(key.to_vec(), value.to_vec())])
    }

    /// Holds every delivery write until the guard is dropped, as a disk that takes its time would
    /// (for tests of what waits on those writes).
    pub fn hold_delivery_writes(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes several delivery entries at once, flushed once.
    pub fn delivery_put_all(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), ViewError> {
        if entries.is_empty() {
            return Ok(());
        }
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        for (key, value) in entries {
            batch.insert(key.as_slice(), value.as_slice());
        }
        let inner = self.inner()?;
        inner.delivery.apply_batch(batch).map_err(storage)?;
        inner.delivery.flush().map_err(storage)?;
        Ok(())
    }

    /// Writes a delivery entry without waiting for the disk: for an entry whose loss in a crash
    /// only repeats work that is claimed, and so done once.
    pub fn delivery_put_unflushed(&self, key: &[u8], value: &[u8]) -> Result<(), ViewError> {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.inner()?.delivery.insert(key, value).map_err(storage)?;
        Ok(())
    }

    /// Removes a delivery entry without waiting for the disk: for an entry whose return after a
    /// crash only repeats a decision, or work that is claimed and so done once.
    pub fn delivery_forget(&self, key: &[u8]) -> Result<(), ViewError> {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.inner()?.delivery.remove(key).map_err(storage)?;
        Ok(())
    }

    /// Delivery entries under a prefix, in key order, after the key `after` if given, at most
    /// `max`.
    pub fn delivery_scan(&self, prefix: &[u8], after: Option<&[u8]>, max: usize) -> Result<Vec<KeyValue>, ViewError> {
        let inner = self.inner()?;
        let entries = match after {
            Some(after) => {
                inner.delivery.range::<&[u8], _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => inner.delivery.scan_prefix(prefix),
        };
        entries
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(max)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
            .collect()
    }

    // ----------------------------------------------------------------- helpers

    fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ViewError> {
        match self.inner()?.tree.get(key).map_err(storage)? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn scan_json<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, ViewError> {
        self.inner()?
            .tree
            .scan_prefix(prefix)
            .map(|item| {
                let (key, value) = item.map_err(storage)?;
                decode(&key, &value)
            })
            .collect()
    }
}

/// Decoded case views and statistics cells kept between batches, so that a busy case or
/// statistics cell is not decoded from JSON again on every record. Only the projector writes
/// the views, and it adds a batch's values here only after sled has taken the batch, so the
/// cache never holds what sled does not. Bounded: a full cache starts again empty.
#[derive(Default)]
pub struct ViewCache {
    cases: HashMap<Uuid, CaseView>,
    stats: HashMap<Vec<u8>, StatsCell>,
}

/// Most case views and statistics cells kept between batches (each).
pub const VIEW_CACHE_MAX: usize = 8_192;

impl ViewCache {
    /// Takes in a committed batch's values.
    pub fn absorb(&mut self, batch: BatchValues) {
        absorb_bounded(&mut self.cases, batch.cases);
        absorb_bounded(&mut self.stats, batch.stats);
    }
}

fn absorb_bounded<K: std::hash::Hash + Eq, V>(cache: &mut HashMap<K, V>, new: HashMap<K, V>) {
    if cache.len() + new.len() > VIEW_CACHE_MAX {
        cache.clear();
    }
    cache.extend(new);
}

/// The decoded values a batch wrote, for the [`ViewCache`].
pub struct BatchValues {
    cases: HashMap<Uuid, CaseView>,
    stats: HashMap<Vec<u8>, StatsCell>,
}

/// Collects one batch's writes; reads see the batch's own writes first, then the cache, then
/// sled. Case views and statistics cells stay decoded until [`Overlay::finish`].
pub struct Overlay<'a> {
    views: &'a Views,
    cache: &'a ViewCache,
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    cases: HashMap<Uuid, CaseView>,
    stats: HashMap<Vec<u8>, StatsCell>,
    /// Alert views raised or acknowledged in this batch, in order.
    pub alerts: Vec<AlertView>,
}

impl<'a> Overlay<'a> {
    pub fn new(views: &'a Views, cache: &'a ViewCache) -> Self {
        Overlay {
            views,
            cache,
            writes: BTreeMap::new(),
            cases: HashMap::new(),
            stats: HashMap::new(),
            alerts: Vec::new(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.views.get_raw(key),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// The case as of this batch so far (a fresh, empty view if it does not exist yet).
    pub fn case(&mut self, case_id: Uuid) -> Result<CaseView, ViewError> {
        if let Some(view) = self.cases.get(&case_id).or_else(|| self.cache.cases.get(&case_id)) {
            return Ok(view.clone());
        }
        Ok(self.get_json(&case_key(case_id))?.unwrap_or_else(|| CaseView::new(case_id)))
    }

    pub fn set_case(&mut self, view: CaseView) {
        self.cases.insert(view.case_id, view);
    }

    /// Adds `cell` times `sign` to the statistics cell under `key`.
    pub fn add_stats(&mut self, key: Vec<u8>, cell: &StatsCell, sign: i64) -> Result<(), ViewError> {
        if !self.stats.contains_key(&key) {
            let stored = match self.cache.stats.get(&key) {
                Some(cached) => cached.clone(),
                None => self.get_json(&key)?.unwrap_or_default(),
            };
            self.stats.insert(key.clone(), stored);
        }
        self.stats.get_mut(&key).expect("inserted above").add(cell, sign);
        Ok(())
    }

    /// Keys and values stored under `prefix`, batch writes included.
    fn merged(&self, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, ViewError> {
        let mut stored: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for item in self.views.inner()?.tree.scan_prefix(prefix) {
            let (k, v) = item.map_err(storage)?;
            stored.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in self.writes.range(prefix.to_vec()..prefix_end(prefix)) {
            match v {
                Some(v) => stored.insert(k.clone(), v.clone()),
                None => stored.remove(k),
            };
        }
        Ok(stored)
    }

    /// Index entries currently stored, batch writes included.
    pub fn index_entries(&self) -> Result<Vec<IndexEntry>, ViewError> {
        self.merged(b"i:")?.iter().map(|(k, v)| decode(k, v)).collect()
    }

    /// Case ids in a list (see [`list_keys`]), batch writes included.
    pub fn list_case_ids(&self, prefix: &[u8]) -> Result<std::collections::BTreeSet<Uuid>, ViewError> {
        self.merged(prefix)?.keys().map(|k| list_key_case_id(prefix, k).map_err(|m| corrupt(k, m))).collect()
    }

    /// Encodes the batch's case views and statistics cells, sets the checkpoint, and returns
    /// the writes and the decoded values (for the cache once the writes are stored).
    pub fn finish(mut self, checkpoint: u64) -> (BTreeMap<Vec<u8>, Option<Vec<u8>>>, BatchValues) {
        let cases = std::mem::take(&mut self.cases);
        for view in cases.values() {
            self.put_json(case_key(view.case_id), view);
        }
        let stats = std::mem::take(&mut self.stats);
        for (key, cell) in &stats {
            if cell.is_empty() {
                self.remove(key.clone());
            } else {
                self.put_json(key.clone(), cell);
            }
        }
        self.put(CHECKPOINT_KEY.to_vec(), checkpoint.to_be_bytes().to_vec());
        (self.writes, BatchValues { cases, stats })
    }
}

/// The keys of a list's cases opened in `[from, to)`.
fn opened_range(prefix: &[u8], from: DateTime<Utc>, to: DateTime<Utc>) -> (Vec<u8>, Vec<u8>) {
    (prefixed(prefix, &list_suffix(from, Uuid::nil())), prefixed(prefix, &list_suffix(to, Uuid::nil())))
}

/// A list entry as read: its suffix and case id.
type ListEntry = Result<(Vec<u8>, Uuid), ViewError>;

/// List entries of several lists, each read oldest first, merged oldest first; an error is
/// passed on as soon as it is read.
struct OldestFirst<I> {
    sources: Vec<I>,
    /// The next entry of each source (filled on the first call).
    heads: Vec<Option<ListEntry>>,
}

impl<I: Iterator<Item = ListEntry>> Iterator for OldestFirst<I> {
    type Item = ListEntry;

    fn next(&mut self) -> Option<Self::Item> {
        if self.heads.len() < self.sources.len() {
            self.heads = self.sources.iter_mut().map(Iterator::next).collect();
        }
        let failed = self.heads.iter().position(|head| matches!(head, Some(Err(_))));
        let next = failed.or_else(|| {
            let oldest = self.heads.iter().enumerate().filter_map(|(i, head)| match head {
                Some(Ok((suffix, _))) => Some((i, suffix)),
                _ => None,
            });
            oldest.min_by(|a, b| a.1.cmp(b.1)).map(|(i, _)| i)
        })?;
        std::mem::replace(&mut self.heads[next], self.sources[next].next())
    }
}

/// Opens the database, waiting while an operation still holds a closing one (and its file lock).
fn open_retrying(path: &Path, cache_bytes: u64) -> Result<Inner, ViewError> {
    let mut last = None;
    for _ in 0..REOPEN_ATTEMPTS_MAX {
        match open_inner(path, cache_bytes) {
            Ok(inner) => return Ok(inner),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(REOPEN_PAUSE);
    }
    Err(last.unwrap_or_else(|| ViewError::Storage("views did not reopen".into())))
}

/// Where a compaction builds the fresh database: beside the views.
fn fresh_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".compacting");
    path.with_file_name(name)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> ViewError {
    ViewError::Storage(format!("cannot {what} {}: {e}", path.display()))
}

/// Copies every entry of `from` into `to`; returns the bytes of keys and values copied.
fn copy_tree(from: &sled::Tree, to: &sled::Tree) -> Result<u64, ViewError> {
    let mut bytes = 0;
    let mut batch = sled::Batch::default();
    let mut entries = 0;
    for item in from.iter() {
        let (key, value) = item.map_err(storage)?;
        bytes += (key.len() + value.len()) as u64;
        batch.insert(key, value);
        entries += 1;
        if entries == COPY_BATCH_ENTRIES {
            to.apply_batch(std::mem::take(&mut batch)).map_err(storage)?;
            entries = 0;
        }
    }
    to.apply_batch(batch).map_err(storage)?;
    Ok(bytes)
}

/// Writes keys and values given in key order; returns their bytes. One insert at a time: a
/// sled batch keeps a copy of every page it touches until it is applied (measured: a fold's
/// 330k keys in batches of 8k took 2.5 s and 475 MB more RSS; one by one 1.1 s and 42 MB).
fn write_sorted(to: &sled::Tree, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<u64, ViewError> {
    let write = |part: &[(Vec<u8>, Vec<u8>)]| -> Result<u64, ViewError> {
        let mut bytes = 0;
        for (key, value) in part {
            bytes += (key.len() + value.len()) as u64;
            to.insert(key.as_slice(), value.as_slice()).map_err(storage)?;
        }
        Ok(bytes)
    };
    let part = entries.len().div_ceil(fold_threads()).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries.chunks(part).map(|chunk| scope.spawn(move || write(chunk))).collect();
        handles.into_iter().try_fold(0, |sum, h| {
            let bytes = h.join().map_err(|_| ViewError::Storage("a views writer panicked".into()))??;
            Ok(sum + bytes)
        })
    })
}

/// fsyncs every file in a folder (sled's own flush does not reach the disk's cache), then the
/// folder and its parent.
fn sync_folder(path: &Path) -> Result<(), ViewError> {
    fn sync_all(path: &Path) -> Result<(), ViewError> {
        for entry in std::fs::read_dir(path).map_err(|e| io_error("read", path, e))? {
            let entry = entry.map_err(|e| io_error("read", path, e))?;
            let file_type = entry.file_type().map_err(|e| io_error("read", &entry.path(), e))?;
            if file_type.is_dir() {
                sync_all(&entry.path())?;
            } else {
                std::fs::File::open(entry.path())
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io_error("sync", &entry.path(), e))?;
            }
        }
        std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| io_error("sync", path, e))
    }
    sync_all(path)?;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(|e| io_error("sync", parent, e))
}

/// Swaps two folders in one step (Linux `renameat2` with `RENAME_EXCHANGE`), then syncs their
/// parent so the swap itself is durable.
fn exchange(a: &Path, b: &Path) -> Result<(), ViewError> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io_error("name", p, std::io::ErrorKind::InvalidInput.into()))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both paths are NUL-terminated C strings that live across the call.
    let rc =
        unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc != 0 {
        return Err(ViewError::Storage(format!(
            "cannot swap {} and {}: {}",
            a.display(),
            b.display(),
            std::io::Error::last_os_error()
        )));
    }
    let parent = b.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(|e| io_error("sync", parent, e))
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, ViewError> {
    codec::decode(value).map_err(|message| corrupt(key, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind's list and the list of all cases are no keys of their own but the status lists
    /// merged: newest first page by page, oldest first for exports, nothing lost or repeated.
    #[test]
    fn the_lists_of_a_kind_and_of_all_cases_are_the_status_lists_merged() {
        let dir = tempfile::tempdir().unwrap();
        let views = Views::open(dir.path().join("views")).unwrap();
        let start = DateTime::from_timestamp_millis(1_790_000_000_000).unwrap();
        let statuses = [("whistle", "open"), ("whistle", "resolved"), ("whistle", "confirmed"), ("feedback", "rated")];
        let mut writes = BTreeMap::new();
        let mut cases: Vec<(DateTime<Utc>, Uuid, &str)> = Vec::new();
        for i in 0..230u128 {
            // Several cases opened in the same millisecond: the case id orders them.
            let at = start + chrono::Duration::milliseconds((i / 3) as i64);
            let (kind, status) = statuses[(i * 7 % 4) as usize];
            let id = Uuid::from_u128(i * 7919 % 1000 + 1);
            writes.insert([status_list_prefix(kind, status), list_suffix(at, id)].concat(), Some(Vec::new()));
            writes.insert([unit_list_prefix("东坝镇"), list_suffix(at, id)].concat(), Some(Vec::new()));
            cases.push((at, id, kind));
        }
        views.apply(&writes).unwrap();
        let newest_first = |kind: Option<&str>| {
            let mut c: Vec<_> = cases.iter().filter(|c| kind.is_none_or(|k| c.2 == k)).collect();
            c.sort_by_key(|c| std::cmp::Reverse((c.0, c.1)));
            c.into_iter().map(|c| c.1).collect::<Vec<Uuid>>()
        };

        let mut kinds = views.status_lists(None).unwrap();
        assert_eq!(kinds.len(), 4, "every status list present, each once");
        kinds.sort();
        assert_eq!(kinds[0], status_list_prefix("feedback", "rated"));
        assert_eq!(views.status_lists(Some("whistle")).unwrap().len(), 3);
        assert!(views.status_lists(Some("report")).unwrap().is_empty());

        for kind in [None, Some("whistle"), Some("feedback")] {
            let lists = views.status_lists(kind).unwrap();
            let mut paged = Vec::new();
            let mut cursor = None;
            loop {
                let (ids, next) = views.list(&lists, cursor.as_deref(), 17).unwrap();
                assert!(ids.len() <= 17);
                paged.extend(ids);
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            assert_eq!(paged, newest_first(kind), "pages of {kind:?}, newest first, each case once");

            let to = start + chrono::Duration::milliseconds(40);
            let oldest: Vec<Uuid> = views.opened_between(&lists, start, to).unwrap().map(Result::unwrap).collect();
            let mut expected: Vec<_> = cases.iter().filter(|c| kind.is_none_or(|k| c.2 == k) && c.0 < to).collect();
            expected.sort_by_key(|c| (c.0, c.1));
            assert_eq!(oldest, expected.iter().map(|c| c.1).collect::<Vec<_>>(), "export order of {kind:?}");

            let recent = views.recent_in_list(&lists, start, to, 10).unwrap();
            let ids: Vec<Uuid> = recent.iter().map(|(id, _)| *id).collect();
            let mut newest: Vec<_> = expected.iter().rev().map(|c| c.1).collect();
            newest.truncate(10);
            assert_eq!(ids, newest, "the newest ten of {kind:?} opened before {to}");
        }
        // A unit's list is read as it was: one prefix.
        let (ids, _) = views.list(&[unit_list_prefix("东坝镇")], None, 1_000).unwrap();
        assert_eq!(ids, newest_first(None));
    }
}
