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
use std::sync::{mpsc, Arc};

use uuid::Uuid;

use super::apply::{derived_keys, may_have_running_clock, summed_contributions, ViewTarget};
use super::codec;
use super::keys::{case_key, stats_key, ARMED_COUNT_KEY, CHECKPOINT_KEY, FORMAT_KEY};
use super::model::{AlertView, CaseView, StatsCell};
use super::views::{decode, fold_threads, ViewError, VIEWS_FORMAT};

/// Case views kept decoded, per generation: when a generation fills, the cases of the one
/// before it that no record touched since are packed, and decoded again when one is touched.
/// ~4 kB each decoded, ~250 bytes packed.
pub const GENERATION_CASES: usize = 32_768;

enum Slot {
    /// Decoded, last touched in this generation (shared only with the packer while it packs it).
    Decoded(Arc<CaseView>, u64),
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
                let bytes = codec::encode(view.as_ref());
                Ok((Arc::unwrap_or_clone(view), bytes))
            }
            Slot::Packed(bytes) => Ok((decode(&case_key(case_id), &bytes)?, bytes)),
        }
    }
}

/// Cases to pack, and the same cases packed.
type ToPack = Vec<(Uuid, Arc<CaseView>)>;
type PackedCases = Vec<(Uuid, Arc<CaseView>, Vec<u8>)>;

/// Packs the cases a generation left untouched on a thread of its own, while the fold goes on
/// applying records: packing is a third of what folding costs a thread. What comes back is
/// swapped in for the cases no record touched meanwhile (a touched case holds a new view).
struct Packer {
    to: mpsc::Sender<ToPack>,
    from: mpsc::Receiver<PackedCases>,
    thread: std::thread::JoinHandle<()>,
    /// Batches handed over whose packing has not been swapped in yet.
    pending: usize,
}

impl Packer {
    fn start() -> Option<Packer> {
        let (to, work) = mpsc::channel::<ToPack>();
        let (done, from) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fold-packer".into())
            .spawn(move || {
                for cases in work {
                    if done.send(pack(cases)).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Packer { to, from, thread, pending: 0 })
    }
}

/// Each case's view packed in the views' own encoding.
fn pack(cases: ToPack) -> PackedCases {
    let packed = cases.into_iter().map(|(case_id, view)| {
        let bytes = codec::encode(view.as_ref());
        (case_id, view, bytes)
    });
    packed.collect()
}

/// The views of a log folded so far, in memory.
pub struct Fold {
    cases: HashMap<Uuid, Slot>,
    /// Cases touched in the current generation, and in the one before.
    young: Vec<Uuid>,
    old: Vec<Uuid>,
    generation: u64,
    /// Cases a generation holds ([`GENERATION_CASES`]).
    generation_cases: usize,
    /// Started at the first generation's end; `None` before, or when no thread could be had
    /// (the fold then packs on its own thread).
    packer: Option<Packer>,
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
            generation_cases: GENERATION_CASES,
            packer: None,
            writes: BTreeMap::new(),
            alerts: Vec::new(),
            live_after,
            position: 0,
        }
    }

    /// A generation of `cases` cases instead of [`GENERATION_CASES`] (for tests of packing).
    pub fn with_generation_cases(mut self, cases: usize) -> Self {
        self.generation_cases = cases.max(1);
        self
    }

    /// Cases folded so far.
    pub fn cases(&self) -> usize {
        self.cases.len()
    }

    /// Marks the record being applied (for which alerts are live).
    pub fn at(&mut self, position: u64) {
        self.position = position;
        self.swap_in_packed(false);
    }

    /// Starts a generation: packs the cases of the one before last that were not touched
    /// since, on the packer's thread. At most one generation's packing is under way: the one
    /// before is waited for first, which bounds what the fold holds decoded.
    fn next_generation(&mut self) {
        self.swap_in_packed(true);
        let generation = self.generation;
        let mut to_pack: ToPack = Vec::new();
        for case_id in std::mem::replace(&mut self.old, std::mem::take(&mut self.young)) {
            if let Some(Slot::Decoded(view, touched)) = self.cases.get(&case_id) {
                if *touched < generation {
                    to_pack.push((case_id, Arc::clone(view)));
                }
            }
        }
        self.generation += 1;
        if self.packer.is_none() {
            self.packer = Packer::start();
        }
        let to_pack = match &mut self.packer {
            Some(packer) => match packer.to.send(to_pack) {
                Ok(()) => {
                    packer.pending += 1;
                    return;
                }
                Err(mpsc::SendError(to_pack)) => to_pack,
            },
            None => to_pack,
        };
        // No packer: packed here.
        self.swap(pack(to_pack));
    }

    /// Swaps in what the packer has packed; with `wait`, waits until it has packed everything
    /// handed to it.
    fn swap_in_packed(&mut self, wait: bool) {
        let Some(packer) = &mut self.packer else { return };
        let mut batches = Vec::new();
        while packer.pending > 0 {
            let batch = if wait { packer.from.recv().ok() } else { packer.from.try_recv().ok() };
            let Some(batch) = batch else { break };
            packer.pending -= 1;
            batches.push(batch);
        }
        for batch in batches {
            self.swap(batch);
        }
    }

    /// Packs the cases of `packed` that still hold the view that was packed.
    fn swap(&mut self, packed: PackedCases) {
        for (case_id, view, bytes) in packed {
            if let Some(slot) = self.cases.get_mut(&case_id) {
                if matches!(slot, Slot::Decoded(current, _) if Arc::ptr_eq(current, &view)) {
                    *slot = Slot::Packed(bytes);
                }
            }
        }
    }

    /// Keeps a case's new view, decoded, in the current generation.
    fn keep(&mut self, after: CaseView) {
        let case_id = after.case_id;
        let generation = self.generation;
        if !matches!(self.cases.insert(case_id, Slot::Decoded(Arc::new(after), generation)), Some(Slot::Decoded(_, g)) if g == generation)
        {
            self.young.push(case_id);
            if self.young.len() >= self.generation_cases {
                self.next_generation();
            }
        }
    }

    /// Derives every case's keys and statistics from its final view and returns every key
    /// and value of the views, sorted, with the checkpoint at `checkpoint`.
    pub fn finish(mut self, checkpoint: u64) -> Result<Folded, ViewError> {
        self.swap_in_packed(true);
        if let Some(packer) = self.packer.take() {
            drop(packer.to);
            packer.thread.join().map_err(|_| ViewError::Storage("the fold's packer panicked".into()))?;
        }
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

    type Before = ();

    fn case_to_change(&mut self, case_id: Uuid) -> Result<((), CaseView), ViewError> {
        let view = match self.cases.get(&case_id) {
            Some(slot) => slot.view(case_id)?,
            None => CaseView::new(case_id),
        };
        Ok(((), view))
    }

    fn store_changed(&mut self, (): (), after: CaseView) -> Result<(), ViewError> {
        self.keep(after);
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
