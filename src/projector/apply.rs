//! Applying records to the views: one batch of records into one [`Overlay`] of writes.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::codec;
use super::keys::{
    alert_count_key, alert_key, attachment_key, calendar_key, dead_letter_key, follow_up_key, index_key, list_keys,
    open_alert_key, stats_key, status_list_prefix, ARMED_COUNT_KEY, DEAD_LETTER_COUNT_KEY, FILES_COUNT_KEY,
    FILE_BYTES_KEY, OPEN_ALERT_COUNT_KEY,
};
use super::model::{
    alert_view_of, contributions, AlertView, CaseView, DeadLetter, IndexEntry, LinkedDuplicate, StatsCell,
    StatsDimension,
};
use super::views::{Overlay, ViewError};
use crate::domain::calendar::HolidayRange;
use crate::domain::event::{EventBody, SCHEMA_VERSION};
use crate::domain::{evolve, Calendar, Event, SlaPolicy, YearSchedule};
use crate::log::StoredRecord;

/// Largest payload kept in a dead letter, in bytes.
const DEAD_LETTER_PAYLOAD_MAX: usize = 64 * 1024;

/// What the projector needs to derive views: the policy and the calendar so far.
#[derive(Clone)]
pub struct Context {
    pub policy: SlaPolicy,
    pub calendar: Calendar,
    /// Calendar publications applied so far, so the projector knows when to hand out the
    /// calendar again.
    pub publications: u64,
}

/// The outcome of applying one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Events(usize),
    /// The record was set aside in the dead-letter views, for this reason.
    DeadLetter(String),
}

/// Where records are applied: one batch's [`Overlay`] on the stored views, or a
/// [`super::fold::Fold`] of the whole log into fresh views. Both give the same views.
pub trait ViewTarget {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError>;
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    fn remove(&mut self, key: Vec<u8>);
    /// What storing a changed case needs of it as it was: the view itself where derived keys
    /// are swapped one by one, nothing for a fold (it derives them once, from the final view).
    type Before;
    /// The case as applied so far (a fresh, empty view if it does not exist yet), to be changed
    /// and stored with [`ViewTarget::store_changed`].
    fn case_to_change(&mut self, case_id: Uuid) -> Result<(Self::Before, CaseView), ViewError>;
    /// Stores a case changed since [`ViewTarget::case_to_change`], with what is derived from it
    /// (index entries, list memberships, statistics).
    fn store_changed(&mut self, before: Self::Before, after: CaseView) -> Result<(), ViewError>;
    /// Every case that may have a running clock: open ones, and any with a pending alert.
    fn cases_with_clocks(&mut self) -> Result<BTreeSet<Uuid>, ViewError>;
    /// An alert view raised or acknowledged by the record being applied.
    fn alert(&mut self, alert: AlertView);

    fn put_json<T: serde::Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.put(key, codec::encode(value));
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ViewError> {
        match self.get(key)? {
            Some(v) => super::views::decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Adds `delta` to the counter under `key`. A counter at zero is no key at all, so that
    /// views folded at once and views projected record by record hold the same keys.
    fn add_counter(&mut self, key: Vec<u8>, delta: i64) -> Result<(), ViewError> {
        let current = match self.get(&key)? {
            Some(v) => super::keys::u64_from(&v).map_err(|message| super::views::corrupt(&key, message))?,
            None => 0,
        };
        let next = current.checked_add_signed(delta).ok_or_else(|| {
            super::views::corrupt(
                &key,
                format!("counter {current} would go to {}", i128::from(current) + i128::from(delta)),
            )
        })?;
        match next {
            0 => self.remove(key),
            n => self.put(key, n.to_be_bytes().to_vec()),
        }
        Ok(())
    }
}

impl ViewTarget for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Overlay::get(self, key)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        Overlay::put(self, key, value);
    }

    fn remove(&mut self, key: Vec<u8>) {
        Overlay::remove(self, key);
    }

    type Before = CaseView;

    fn case_to_change(&mut self, case_id: Uuid) -> Result<(CaseView, CaseView), ViewError> {
        let before = Overlay::case(self, case_id)?;
        Ok((before.clone(), before))
    }

    fn store_changed(&mut self, before: CaseView, after: CaseView) -> Result<(), ViewError> {
        replace_derived(self, &before, &after)?;
        self.set_case(after);
        Ok(())
    }

    fn cases_with_clocks(&mut self) -> Result<BTreeSet<Uuid>, ViewError> {
        let mut cases: BTreeSet<Uuid> = self.index_entries()?.into_iter().map(|e| e.case_id).collect();
        for kind in ["whistle", "feedback"] {
            cases.extend(self.list_case_ids(&status_list_prefix(kind, "open"))?);
        }
        Ok(cases)
    }

    fn alert(&mut self, alert: AlertView) {
        self.alerts.push(alert);
    }
}

/// Whether a case belongs in [`ViewTarget::cases_with_clocks`]: it has a pending alert, or it is
/// in an open status list. Decided from the keys derived from it, as the overlay decides it.
pub fn may_have_running_clock(view: &CaseView) -> bool {
    let open = [status_list_prefix("whistle", "open"), status_list_prefix("feedback", "open")];
    derived_keys(view).keys().any(|k| k.starts_with(b"i:") || open.iter().any(|p| k.starts_with(p)))
}

/// Applies one record. A record that cannot be used becomes a dead letter.
pub fn apply_record<T: ViewTarget>(
    ctx: &mut Context,
    overlay: &mut T,
    record: &StoredRecord,
) -> Result<Applied, ViewError> {
    let commit = match record.decode().and_then(|c| check_events(&c.events).map(|()| c)) {
        Ok(commit) => commit,
        Err(reason) => {
            overlay.put_json(dead_letter_key(record.position), &dead_letter(record, &reason));
            overlay.add_counter(DEAD_LETTER_COUNT_KEY.to_vec(), 1)?;
            return Ok(Applied::DeadLetter(reason));
        }
    };
    let (before, mut view) = overlay.case_to_change(commit.case_id)?;
    let mut links = Vec::new();
    for event in &commit.events {
        match &event.body {
            EventBody::MarkedDuplicate { original } => links.push((*original, true)),
            EventBody::DuplicateUnlinked {} => links.extend(view.state.duplicate_of().map(|o| (o, false))),
            _ => {}
        }
        let running_before: Vec<_> =
            view.state.clocks().map(|c| c.iter().map(|(k, r)| (k.clone(), r.clone())).collect()).unwrap_or_default();
        view.state = evolve(std::mem::take(&mut view.state), event);
        if !running_before.is_empty() {
            view.settle(&running_before, event, &ctx.policy, &ctx.calendar);
        }
        if let EventBody::CalendarPublished { year, notice, holidays, workdays } = &event.body {
            publish_calendar(ctx, overlay, *year, notice, holidays, workdays)?;
        }
        if let EventBody::AttachmentAdded { size, sha256, .. } = &event.body {
            overlay.put(attachment_key(sha256), Vec::new());
            overlay.add_counter(FILES_COUNT_KEY.to_vec(), 1)?;
            overlay.add_counter(FILE_BYTES_KEY.to_vec(), i64::try_from(*size).unwrap_or(i64::MAX))?;
        }
    }
    view.last_position = record.position;
    view.rearm(&ctx.policy, &ctx.calendar);
    write_alerts(overlay, &view, &commit.events, record.position)?;
    for (original, linked) in links {
        follow_original(overlay, &view, original, linked)?;
    }
    overlay.store_changed(before, view)?;
    Ok(Applied::Events(commit.events.len()))
}

/// Records (or removes) a duplicate on its original's view, in the same batch: the unit that
/// raised the duplicate then follows the original (sees it, lists it, hears its notices). The
/// original's log position is left alone: it is the expected position of its own next append.
fn follow_original<T: ViewTarget>(
    overlay: &mut T,
    duplicate: &CaseView,
    original: Uuid,
    linked: bool,
) -> Result<(), ViewError> {
    let (before, mut after) = overlay.case_to_change(original)?;
    if !after.state.exists() {
        return Ok(());
    }
    after.duplicates.retain(|d| d.case_id != duplicate.case_id);
    if linked {
        after.duplicates.push(LinkedDuplicate { case_id: duplicate.case_id, unit: duplicate.raising_unit() });
    }
    overlay.store_changed(before, after)
}

/// Checks what serde cannot: a known schema version, at least one event.
fn check_events(events: &[Event]) -> Result<(), String> {
    if events.is_empty() {
        return Err("commit has no events".into());
    }
    match events.iter().find(|e| e.schema_version != SCHEMA_VERSION) {
        Some(e) => Err(format!(
            "event {} has schema version {}, this build reads {SCHEMA_VERSION}",
            e.event_id, e.schema_version
        )),
        None => Ok(()),
    }
}

fn dead_letter(record: &StoredRecord, reason: &str) -> DeadLetter {
    let kept = &record.payload[..record.payload.len().min(DEAD_LETTER_PAYLOAD_MAX)];
    DeadLetter {
        position: record.position,
        subject: record.subject.clone(),
        reason: reason.to_owned(),
        payload: String::from_utf8_lossy(kept).into_owned(),
        payload_bytes: record.payload.len(),
    }
}

/// Swaps a case's old index entries, list memberships and statistics for its new ones,
/// writing only what changed.
fn replace_derived(overlay: &mut Overlay, before: &CaseView, after: &CaseView) -> Result<(), ViewError> {
    let old_keys = derived_keys(before);
    let new_keys = derived_keys(after);
    let mut armed: i64 = 0;
    for (key, entry) in old_keys.iter().filter(|(k, _)| !new_keys.contains_key(*k)) {
        armed -= i64::from(entry.is_some());
        overlay.remove(key.clone());
    }
    for (key, entry) in &new_keys {
        if !old_keys.contains_key(key) {
            armed += i64::from(entry.is_some());
        }
        if old_keys.get(key) != Some(entry) {
            match entry {
                Some(entry) => overlay.put_json(key.clone(), entry),
                None => overlay.put(key.clone(), Vec::new()),
            }
        }
    }
    if armed != 0 {
        overlay.add_counter(ARMED_COUNT_KEY.to_vec(), armed)?;
    }
    let old_cells = summed_contributions(before);
    let new_cells = summed_contributions(after);
    for (cell_key, cell) in &old_cells {
        if new_cells.get(cell_key) != Some(cell) {
            let (dimension, unit, date) = cell_key;
            overlay.add_stats(stats_key(*dimension, unit, date), cell, -1)?;
        }
    }
    for (cell_key, cell) in &new_cells {
        if old_cells.get(cell_key) != Some(cell) {
            let (dimension, unit, date) = cell_key;
            overlay.add_stats(stats_key(*dimension, unit, date), cell, 1)?;
        }
    }
    Ok(())
}

pub type CellKey = (StatsDimension, String, String);

/// A case's statistics contributions, one cell per key.
pub fn summed_contributions(view: &CaseView) -> BTreeMap<CellKey, StatsCell> {
    let mut cells: BTreeMap<CellKey, StatsCell> = BTreeMap::new();
    for (key, cell) in contributions(view) {
        cells.entry(key).or_default().add(&cell, 1);
    }
    cells
}

/// Keys a case view owns besides its own record: index entries (with their values) and list
/// memberships (empty values).
pub fn derived_keys(view: &CaseView) -> BTreeMap<Vec<u8>, Option<IndexEntry>> {
    let mut keys: BTreeMap<Vec<u8>, Option<IndexEntry>> =
        view.pending_alerts().into_iter().map(|entry| (index_key(&entry), Some(entry))).collect();
    if let (Some(kind), Some(status)) = (view.kind(), view.status()) {
        if let Some(opened_at) = view.opened_at() {
            let overdue = !view.overdue().is_empty();
            keys.extend(
                list_keys(kind, status, &view.units(), overdue, opened_at, view.case_id).into_iter().map(|k| (k, None)),
            );
        }
    }
    if let crate::domain::State::Feedback(case) = &view.state {
        if let Some(hash) = case.kind.follow_up_code_sha256.as_deref() {
            keys.insert(follow_up_key(hash, view.case_id), None);
        }
    }
    keys
}

/// Alert views for the SLA events and acknowledgements of this commit.
fn write_alerts<T: ViewTarget>(
    overlay: &mut T,
    view: &CaseView,
    events: &[Event],
    position: u64,
) -> Result<(), ViewError> {
    for event in events {
        match &event.body {
            EventBody::SlaWarned { .. } | EventBody::SlaBreached { .. } | EventBody::SlaEscalated { .. } => {
                let Some(alert) = alert_view_of(view, event, position) else { continue };
                if overlay.get(&alert_key(alert.alert_id))?.is_none() {
                    overlay.add_counter(alert_count_key(alert.stage), 1)?;
                    overlay.add_counter(OPEN_ALERT_COUNT_KEY.to_vec(), 1)?;
                }
                overlay.put_json(alert_key(alert.alert_id), &alert);
                overlay.put(open_alert_key(alert.alert_id), Vec::new());
                overlay.alert(alert);
            }
            EventBody::AlertAcknowledged { alert_id } => {
                let key = alert_key(*alert_id);
                if let Some(mut stored) = overlay.get_json::<AlertView>(&key)? {
                    if stored.acknowledged_at.is_none() {
                        overlay.add_counter(OPEN_ALERT_COUNT_KEY.to_vec(), -1)?;
                    }
                    stored.acknowledged_by = Some(event.actor.clone());
                    stored.acknowledged_at = Some(event.at);
                    overlay.put_json(key, &stored);
                    overlay.remove(open_alert_key(*alert_id));
                    overlay.alert(stored);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Loads a published year into the calendar and recomputes every case with armed clocks.
fn publish_calendar<T: ViewTarget>(
    ctx: &mut Context,
    overlay: &mut T,
    year: i32,
    notice: &str,
    holidays: &[HolidayRange],
    workdays: &[chrono::NaiveDate],
) -> Result<(), ViewError> {
    let schedule =
        YearSchedule { year, notice: notice.to_owned(), holidays: holidays.to_vec(), workdays: workdays.to_vec() };
    ctx.calendar.load(&schedule);
    ctx.publications += 1;
    overlay.put_json(calendar_key(year), &schedule);
    for case_id in overlay.cases_with_clocks()? {
        let (before, mut view) = overlay.case_to_change(case_id)?;
        if view.rearm(&ctx.policy, &ctx.calendar) {
            overlay.store_changed(before, view)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_events_is_a_dead_letter() {
        assert_eq!(check_events(&[]), Err("commit has no events".into()));
    }
}
