//! The views in sled: one tree, keys by prefix, written one batch at a time with
//! `apply_batch` (atomic), so a batch's view changes, deadline index and checkpoint land
//! together or not at all.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m:checkpoint` | | last applied log position (u64 BE) |
//! | `m:calendar:` | year (i32 BE) | a published [`YearSchedule`] (JSON) |
//! | `m:alerts:` | stage | alerts recorded of that stage (u64 BE) |
//! | `c:` | case id | [`CaseView`] |
//! | `h:` | case id ‖ position ‖ index | the event (JSON) |
//! | `i:` | fire time (ms, BE) ‖ case id ‖ clock | [`IndexEntry`]: the watchdog's deadline index |
//! | `l:u:` | unit ‖ 0 ‖ case id | a case the unit takes part in |
//! | `l:s:` | kind ‖ 0 ‖ status ‖ 0 ‖ case id | cases by kind and status |
//! | `l:o:` | case id | an overdue case |
//! | `a:` | alert id | [`AlertView`] |
//! | `ao:` | alert id | an open (unacknowledged) alert |
//! | `t:` | dimension ‖ 0 ‖ unit ‖ 0 ‖ date | [`StatsCell`] |
//! | `d:` | position | [`DeadLetter`] |
//!
//! Alert delivery keeps its own state in a second tree that is not part of the views (it is
//! not derived from the log, and a rebuild leaves it alone).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{AlertView, CaseView, DeadLetter, IndexEntry, StatsCell, StatsDimension};
use crate::domain::{Event, YearSchedule};

/// A raw key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

pub const CHECKPOINT_KEY: &[u8] = b"m:checkpoint";
const CALENDAR_PREFIX: &[u8] = b"m:calendar:";

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("views storage: {0}")]
    Storage(String),
    #[error("views hold an undecodable value under {key}: {message}")]
    Corrupt { key: String, message: String },
}

fn storage(e: sled::Error) -> ViewError {
    ViewError::Storage(e.to_string())
}

/// Handle on the views database. Cheap to clone.
#[derive(Clone)]
pub struct Views {
    db: sled::Db,
    tree: sled::Tree,
    delivery: sled::Tree,
}

impl Views {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ViewError> {
        let path = path.as_ref();
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| ViewError::Storage(format!("cannot open views at {}: {e}", path.display())))?;
        let tree = db.open_tree("views").map_err(storage)?;
        let delivery = db.open_tree("delivery").map_err(storage)?;
        Ok(Views { db, tree, delivery })
    }

    pub async fn flush(&self) -> Result<(), ViewError> {
        self.db.flush_async().await.map_err(storage)?;
        Ok(())
    }

    /// Drops every view (not the delivery state).
    pub fn clear(&self) -> Result<(), ViewError> {
        self.tree.clear().map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    pub fn checkpoint(&self) -> Result<u64, ViewError> {
        Ok(self.tree.get(CHECKPOINT_KEY).map_err(storage)?.map_or(0, |v| u64_from(&v)))
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.tree.get(key).map_err(storage)?.map(|v| v.to_vec()))
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
        self.tree.apply_batch(batch).map_err(storage)
    }

    pub fn case(&self, case_id: Uuid) -> Result<Option<CaseView>, ViewError> {
        self.get_json(&case_key(case_id))
    }

    /// The case's events, in order.
    pub fn history(&self, case_id: Uuid) -> Result<Vec<Event>, ViewError> {
        self.scan_json(&prefixed(b"h:", case_id.as_bytes()))
    }

    /// Published calendar years, in year order.
    pub fn published_calendars(&self) -> Result<Vec<YearSchedule>, ViewError> {
        self.scan_json(CALENDAR_PREFIX)
    }

    /// The earliest entry of the deadline index that fires after `now`.
    pub fn earliest_alert_after(&self, now: DateTime<Utc>) -> Result<Option<IndexEntry>, ViewError> {
        let start = index_time_key(now.timestamp_millis().saturating_add(1));
        match self.tree.range(start..prefix_end(b"i:")).next() {
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
        for item in self.tree.range(b"i:".to_vec()..end).take(max) {
            let (key, value) = item.map_err(storage)?;
            out.push(decode(&key, &value)?);
        }
        Ok(out)
    }

    /// How many clocks the index holds.
    pub fn armed_count(&self) -> usize {
        self.tree.scan_prefix(b"i:").count()
    }

    pub fn alert(&self, alert_id: Uuid) -> Result<Option<AlertView>, ViewError> {
        self.get_json(&prefixed(b"a:", alert_id.as_bytes()))
    }

    /// Alerts, newest first; only unacknowledged ones when `open_only`.
    pub fn alerts(&self, open_only: bool, max: usize) -> Result<Vec<AlertView>, ViewError> {
        let mut out = Vec::new();
        let prefix: &[u8] = if open_only { b"ao:" } else { b"a:" };
        for item in self.tree.scan_prefix(prefix).rev().take(max) {
            let (key, value) = item.map_err(storage)?;
            let id = &key[prefix.len()..];
            let view =
                if open_only { self.get_json::<AlertView>(&prefixed(b"a:", id))? } else { Some(decode(&key, &value)?) };
            out.extend(view);
        }
        Ok(out)
    }

    /// Case ids under a list prefix, newest opened first, after `cursor` (a list suffix from
    /// an earlier page); returns the ids and the cursor for the next page.
    pub fn list(
        &self,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        max: usize,
    ) -> Result<(Vec<Uuid>, Option<Vec<u8>>), ViewError> {
        let end = match cursor {
            Some(c) => prefixed(prefix, c),
            None => prefix_end(prefix),
        };
        let mut ids = Vec::new();
        let mut last_suffix = None;
        for item in self.tree.range(prefix.to_vec()..end).rev().take(max) {
            let (key, _) = item.map_err(storage)?;
            let suffix = &key[prefix.len()..];
            if let Some(id) = suffix.get(8..24).and_then(|b| Uuid::from_slice(b).ok()) {
                ids.push(id);
                last_suffix = Some(suffix.to_vec());
            }
        }
        let next = if ids.len() == max { last_suffix } else { None };
        Ok((ids, next))
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
        for item in self.tree.scan_prefix(&prefix) {
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
        for item in self.tree.scan_prefix(b"d:").take(max) {
            let (key, value) = item.map_err(storage)?;
            out.push(decode(&key, &value)?);
        }
        Ok(out)
    }

    /// How many alerts of a stage have been recorded.
    pub fn alert_count(&self, stage: crate::domain::event::AlertStage) -> u64 {
        self.get_raw(&alert_count_key(stage)).ok().flatten().map_or(0, |v| u64_from(&v))
    }

    pub fn dead_letter_count(&self) -> usize {
        self.tree.scan_prefix(b"d:").count()
    }

    /// SHA-256 over every view key and value, in key order: equal digests, equal views.
    pub fn digest(&self) -> Result<String, ViewError> {
        let mut hasher = Sha256::new();
        for item in self.tree.iter() {
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
        Ok(self.delivery.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    pub fn delivery_put(&self, key: &[u8], value: &[u8]) -> Result<(), ViewError> {
        self.delivery.insert(key, value).map_err(storage)?;
        self.delivery.flush().map_err(storage)?;
        Ok(())
    }

    pub fn delivery_remove(&self, key: &[u8]) -> Result<(), ViewError> {
        self.delivery.remove(key).map_err(storage)?;
        self.delivery.flush().map_err(storage)?;
        Ok(())
    }

    /// Delivery entries under a prefix, in key order, at most `max`.
    pub fn delivery_scan(&self, prefix: &[u8], max: usize) -> Result<Vec<KeyValue>, ViewError> {
        self.delivery
            .scan_prefix(prefix)
            .take(max)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
            .collect()
    }

    // ----------------------------------------------------------------- helpers

    fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ViewError> {
        match self.tree.get(key).map_err(storage)? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn scan_json<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, ViewError> {
        self.tree
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
pub const VIEW_CACHE_MAX: usize = 50_000;

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

    pub fn put_json<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        let bytes = serde_json::to_vec(value).expect("view values serialise (plain data)");
        self.put(key, bytes);
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    pub fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ViewError> {
        match self.get(key)? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
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
        for item in self.views.tree.scan_prefix(prefix) {
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
        Ok(self
            .merged(prefix)?
            .keys()
            .filter_map(|k| k.get(prefix.len() + 8..prefix.len() + 24))
            .filter_map(|b| Uuid::from_slice(b).ok())
            .collect())
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

pub fn case_key(case_id: Uuid) -> Vec<u8> {
    prefixed(b"c:", case_id.as_bytes())
}

pub fn calendar_key(year: i32) -> Vec<u8> {
    // Offset so that years sort by value in big-endian bytes.
    prefixed(CALENDAR_PREFIX, &((year as i64 + (1 << 31)) as u32).to_be_bytes())
}

pub fn history_key(case_id: Uuid, position: u64, index: u16) -> Vec<u8> {
    [b"h:".as_slice(), case_id.as_bytes(), &position.to_be_bytes(), &index.to_be_bytes()].concat()
}

fn index_time_key(millis: i64) -> Vec<u8> {
    // Flip the sign bit so negative times sort before positive ones.
    prefixed(b"i:", &((millis as u64) ^ (1 << 63)).to_be_bytes())
}

pub fn index_key(entry: &IndexEntry) -> Vec<u8> {
    [
        index_time_key(entry.fire_at.timestamp_millis()).as_slice(),
        entry.case_id.as_bytes(),
        entry.clock.to_string().as_bytes(),
    ]
    .concat()
}

/// The part of a list key that orders it: opening time (ms, BE, sign-flipped) and case id.
pub fn list_suffix(opened_at: DateTime<Utc>, case_id: Uuid) -> Vec<u8> {
    let millis = (opened_at.timestamp_millis() as u64) ^ (1 << 63);
    [millis.to_be_bytes().as_slice(), case_id.as_bytes()].concat()
}

/// Every case, by opening time.
pub fn all_list_prefix() -> Vec<u8> {
    b"l:a:".to_vec()
}

pub fn unit_list_prefix(unit: &str) -> Vec<u8> {
    [b"l:u:".as_slice(), unit.as_bytes(), &[0]].concat()
}

/// Prefix of the status list of a kind, or of one status of it.
pub fn status_list_prefix(kind: &str, status: Option<&str>) -> Vec<u8> {
    match status {
        Some(s) => [b"l:s:".as_slice(), kind.as_bytes(), &[0], s.as_bytes(), &[0]].concat(),
        None => [b"l:k:".as_slice(), kind.as_bytes(), &[0]].concat(),
    }
}

pub fn overdue_list_prefix() -> Vec<u8> {
    b"l:o:".to_vec()
}

/// Every list key a case belongs to.
pub fn list_keys(
    kind: &str,
    status: &str,
    units: &[String],
    overdue: bool,
    opened_at: DateTime<Utc>,
    case_id: Uuid,
) -> Vec<Vec<u8>> {
    let suffix = list_suffix(opened_at, case_id);
    let mut prefixes = vec![all_list_prefix(), status_list_prefix(kind, None), status_list_prefix(kind, Some(status))];
    prefixes.extend(units.iter().map(|u| unit_list_prefix(u)));
    if overdue {
        prefixes.push(overdue_list_prefix());
    }
    prefixes.into_iter().map(|p| [p.as_slice(), suffix.as_slice()].concat()).collect()
}

pub fn alert_count_key(stage: crate::domain::event::AlertStage) -> Vec<u8> {
    prefixed(b"m:alerts:", stage.as_str().as_bytes())
}

pub fn alert_key(alert_id: Uuid) -> Vec<u8> {
    prefixed(b"a:", alert_id.as_bytes())
}

pub fn open_alert_key(alert_id: Uuid) -> Vec<u8> {
    prefixed(b"ao:", alert_id.as_bytes())
}

pub fn stats_key(dimension: StatsDimension, unit: &str, date: &str) -> Vec<u8> {
    [b"t:".as_slice(), dimension.as_str().as_bytes(), &[0], unit.as_bytes(), &[0], date.as_bytes()].concat()
}

pub fn dead_letter_key(position: u64) -> Vec<u8> {
    prefixed(b"d:", &position.to_be_bytes())
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    [prefix, rest].concat()
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn u64_from(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8.min(bytes.len())]);
    u64::from_be_bytes(b)
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, ViewError> {
    serde_json::from_slice(value)
        .map_err(|e| ViewError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), message: e.to_string() })
}
