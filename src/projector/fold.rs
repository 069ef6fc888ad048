//! Folding a whole log into fresh views at once: a rebuild, or a first start over a long log.
//!
//! Projecting record by record writes a case, its list memberships, its index entries and its
//! statistics again for every record that touches it, through sled. When the views start
//! empty none of that has to be stored before the end: the fold keeps every case in memory
//! (recently touched ones decoded, the others packed in the views' own encoding), applies each
//! record with the same [`apply_record`](super::apply::apply_record), and derives list
//! memberships, index entries and statistics once per case, from its final state. What it
//! holds is then written, sorted, into a fresh database that takes the views' place in one
//! step ([`super::views::Views::install`]): the views are either what they were or the whole
//! fold, never part of it, and they equal what projecting record by record gives, key for key.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::apply::{derived_keys, may_have_running_clock, summed_contributions, ViewTarget};
use super::codec;
use super::keys::{case_key, stats_key, ARMED_COUNT_KEY, CHECKPOINT_KEY, FORMAT_KEY};
use super::model::{AlertView, CaseView, StatsCell};
use super::views::{decode, fold_threads, ViewError, VIEWS_FORMAT};

/// Case views kept decoded, per generation: when a generation fills, the cases of the one
/// before it that no record touched since are packed, and decoded again when one is touched.
/// ~4 kB each decoded, ~250 bytes packed.
const GENERATION_CASES: usize = 32_768;

enum Slot {
    /// Decoded, last touched in this generation (boxed: a slot is as small as a packed one).
    Decoded(Box<CaseView>, u64),
    Packed(Vec<u8>),
}

impl Slot {
    /// The case's view, decoded if it is packed.
    fn view(&self, case_id: Uuid) -> Result<CaseView, ViewError> {
        match self {
            Slot::Decoded(view, _) => Ok(view.as_ref().clone()),
            Slot::Packed(bytes) => decode(&case_key(case_id), bytes),
        }
    }

    /// The case's view and its encoded bytes, each made from the other as needed.
    fn into_view_and_bytes(self, case_id: Uuid) -> Result<(CaseView, Vec<u8>), ViewError> {
        match self {
            Slot::Decoded(view, _) => {
                let bytes = codec::encode(&view);
                Ok((*view, bytes))
            }
            Slot::Packed(bytes) => Ok((decode(&case_key(case_id), &bytes)?, bytes)),
        }
    }
}

/// The views of a log folded so far, in memory.
pub struct Fold {
    cases: HashMap<Uuid, Slot>,
    /// Cases touched in the current generation, and in the one before.
    young: Vec<Uuid>,
    old: Vec<Uuid>,
    generation: u64,
    /// Every other key written (alerts, counters, calendars, dead letters, files); `None` is a
    /// key removed again.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Alerts raised or acknowledged by records after `live_after`, in order.
    pub alerts: Vec<AlertView>,
    live_after: u64,
    position: u64,
}

/// The sorted keys and values of folded views, ready to be installed.
pub struct Folded {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub cases: usize,
}

impl Fold {
    /// An empty fold; alerts of records after `live_after` are kept for live listeners.
    pub fn new(live_after: u64) -> Self {
        Fold {
            cases: HashMap::new(),
            young: Vec::new(),
            old: Vec::new(),
            generation: 0,
            writes: BTreeMap::new(),
            alerts: Vec::new(),
            live_after,
            position: 0,
        }
    }

    /// Cases folded so far.
    pub fn cases(&self) -> usize {
        self.cases.len()
    }

    /// Marks the record being applied (for which alerts are live).
    pub fn at(&mut self, position: u64) {
        self.position = position;
    }

    /// Starts a generation: packs the cases of the one before last that were not touched since.
    fn next_generation(&mut self) {
        for case_id in std::mem::replace(&mut self.old, std::mem::take(&mut self.young)) {
            if let Some(slot) = self.cases.get_mut(&case_id) {
                if let Slot::Decoded(view, generation) = slot {
                    if *generation < self.generation {
                        *slot = Slot::Packed(codec::encode(view));
                    }
                }
            }
        }
        self.generation += 1;
    }

    /// Derives every case's keys and statistics from its final view and returns every key
    /// and value of the views, sorted, with the checkpoint at `checkpoint`.
    pub fn finish(self, checkpoint: u64) -> Result<Folded, ViewError> {
        let cases = self.cases.len();
        let slots: Vec<(Uuid, Slot)> = self.cases.into_iter().collect();
        let threads = fold_threads();
        let parts: Vec<Derived> = std::thread::scope(|scope| {
            let mut rest = slots;
            let mut handles = Vec::new();
            let part = rest.len().div_ceil(threads).max(1);
            while !rest.is_empty() {
                let tail = rest.split_off(part.min(rest.len()));
                let chunk = std::mem::replace(&mut rest, tail);
                handles.push(scope.spawn(move || derive(chunk)));
            }
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| ViewError::Storage("a fold thread panicked".into()))?)
                .collect::<Result<_, _>>()
        })?;
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> =
            Vec::with_capacity(parts.iter().map(|p| p.entries.len()).sum::<usize>() + self.writes.len() + 4);
        let mut stats: HashMap<Vec<u8>, StatsCell> = HashMap::new();
        let mut armed: u64 = 0;
        for part in parts {
            entries.extend(part.entries);
            armed += part.armed;
            for (key, cell) in part.stats {
                stats.entry(key).or_default().add(&cell, 1);
            }
        }
        entries.extend(stats.into_iter().filter(|(_, cell)| !cell.is_empty()).map(|(k, c)| (k, codec::encode(&c))));
        if armed > 0 {
            entries.push((ARMED_COUNT_KEY.to_vec(), armed.to_be_bytes().to_vec()));
        }
        entries.extend(self.writes.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        entries.push((FORMAT_KEY.to_vec(), VIEWS_FORMAT.to_be_bytes().to_vec()));
        entries.push((CHECKPOINT_KEY.to_vec(), checkpoint.to_be_bytes().to_vec()));
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ViewError::Storage(format!(
                "the fold derived the key {} twice",
                String::from_utf8_lossy(&pair[0].0)
            )));
        }
        Ok(Folded { entries, cases })
    }
}

/// What part of the cases comes to: their keys and values, statistics, armed clocks.
struct Derived {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    stats: HashMap<Vec<u8>, StatsCell>,
    armed: u64,
}

/// Each case's view, index entries and list memberships, and the sum of their statistics.
fn derive(slots: Vec<(Uuid, Slot)>) -> Result<Derived, ViewError> {
    let mut out = Derived { entries: Vec::with_capacity(slots.len() * 8), stats: HashMap::new(), armed: 0 };
    for (case_id, slot) in slots {
        let (view, bytes) = slot.into_view_and_bytes(case_id)?;
        for (derived, entry) in derived_keys(&view) {
            out.armed += u64::from(entry.is_some());
            out.entries.push((derived, entry.map(|e| codec::encode(&e)).unwrap_or_default()));
        }
        for ((dimension, unit, date), cell) in summed_contributions(&view) {
            out.stats.entry(stats_key(dimension, &unit, &date)).or_default().add(&cell, 1);
        }
        out.entries.push((case_key(case_id), bytes));
    }
    Ok(out)
}

impl ViewTarget for Fold {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.writes.get(key).cloned().flatten())
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    fn case(&mut self, case_id: Uuid) -> Result<CaseView, ViewError> {
        match self.cases.get(&case_id) {
            Some(slot) => slot.view(case_id),
            None => Ok(CaseView::new(case_id)),
        }
    }

    fn store_case(&mut self, _before: &CaseView, after: CaseView) -> Result<(), ViewError> {
        let case_id = after.case_id;
        let generation = self.generation;
        if !matches!(self.cases.insert(case_id, Slot::Decoded(Box::new(after), generation)), Some(Slot::Decoded(_, g)) if g == generation)
        {
            self.young.push(case_id);
            if self.young.len() >= GENERATION_CASES {
                self.next_generation();
            }
        }
        Ok(())
    }

    fn cases_with_clocks(&mut self) -> Result<BTreeSet<Uuid>, ViewError> {
        let mut out = BTreeSet::new();
        for (case_id, slot) in &self.cases {
            if may_have_running_clock(&slot.view(*case_id)?) {
                out.insert(*case_id);
            }
        }
        Ok(out)
    }

    fn alert(&mut self, alert: AlertView) {
        if self.position > self.live_after {
            self.alerts.push(alert);
        }
    }
}

extern "C" {
    /// mimalloc (the global allocator): frees what the calling thread's heap holds of blocks
    /// freed by other threads, and gives unused memory back to the system.
    fn mi_collect(force: bool);
}

/// Gives the memory a fold used back to the system: its blocks were allocated and freed on
/// several threads, and the allocator keeps such memory until asked.
pub fn release_freed_memory() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time.
    unsafe { mi_collect(true) }
}
