//! The projector: folds the log into sled views, in order, from its checkpoint.
//!
//! It reads records from checkpoint + 1 in bounded batches; each batch's view changes, deadline
//! index and new checkpoint are written in one atomic sled batch. No acks: after a crash it
//! resumes from the checkpoint, and since every view is a function of the records before it,
//! the views equal a fresh rebuild.
//!
//! Records that cannot be used (undecodable, unknown type or schema version, written by some
//! other program) go to the dead-letter views and projection goes on; an explicit rebuild
//! stops at the first one instead.

pub mod apply;
pub mod codec;
pub mod fold;
pub mod keys;
pub mod model;
pub mod stats;
pub mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::sync::{broadcast, watch, Notify};

use crate::domain::{Calendar, SlaPolicy};
use crate::log::{EventLog, LogError, StoredRecord};
use apply::{apply_record, Applied, Context, ViewTarget};
use fold::Fold;
use model::AlertView;
use views::{Overlay, ViewCache, ViewError, Views};

/// Most records applied in one batch (one atomic write). A batch takes every record the log
/// has ready, up to this: one record when live, larger batches while catching up, so that a
/// statistics cell or a case touched by several records of a backlog is written once.
pub const BATCH_RECORDS_MAX: usize = 1_024;
/// Pause before subscribing again after the log stream failed.
const RESUBSCRIBE_BACKOFF: Duration = Duration::from_millis(500);
/// How long a silent subscription goes before the projector asks the log whether it is behind.
const STALL_CHECK_PERIOD: Duration = Duration::from_secs(1);
/// Batches between two looks at whether the views are worth compacting.
const COMPACT_CHECK_BATCHES: u64 = 64;
/// Views are compacted only while the projector is at least this many records behind the log.
const COMPACT_BACKLOG_MIN: u64 = 10_000;
/// Empty views are filled by a fold of the log ([`fold`]) when it holds at least this many
/// records; fewer are projected record by record.
pub const FOLD_RECORDS_MIN: u64 = 1_000;
/// A fold stops taking records once it holds this many cases (~2 kB each at its peak) and
/// installs what it has; the rest of the log is projected record by record. This bounds the
/// memory a first start over a very long log needs.
pub const FOLD_CASES_MAX: usize = 262_144;
/// After projecting a backlog of at least this many records record by record (a start behind
/// the log, a resubscription after an outage), the views are reopened once the projector reaches
/// where the log was: what sled keeps in memory of pages written many times over is then given
/// back (docs/performance.md, lone serve).
pub const REOPEN_BACKLOG_MIN: u64 = 50_000;
/// Pause before trying failed views again.
const VIEWS_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Tells a silent subscription that has stopped delivering from one whose next record is on
/// its way: after a NATS server restart a subscription can wait a long while before it notices
/// its consumer is gone. A record appended a moment ago is in the log's head before the
/// subscription delivers it, so one look that finds the head past the checkpoint proves
/// nothing; the subscription is stalled when a record seen in the log one look earlier has
/// still not been applied.
#[derive(Debug, Default)]
struct StallWatch {
    /// The log's head at the last look, if it was past the checkpoint then.
    behind: Option<u64>,
}

impl StallWatch {
    /// One look: the log's head (`None` when the log did not answer) and the checkpoint now.
    fn stalled(&mut self, head: Option<u64>, checkpoint: u64) -> bool {
        if self.behind.is_some_and(|seen| checkpoint < seen) {
            return true;
        }
        self.behind = head.filter(|&head| head > checkpoint);
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Views(#[from] ViewError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("record {position} on {subject} cannot be projected: {reason}")]
    Poison { position: u64, subject: String, reason: String },
}

/// What the projector tells the rest of the service.
#[derive(Clone)]
pub struct Progress {
    /// The last applied position.
    pub checkpoint: watch::Receiver<u64>,
    /// Woken after every batch, so the watchdog can look at the deadline index again.
    pub applied: Arc<Notify>,
    /// Why the views cannot be written, while they cannot (a full disk, a damaged file).
    pub failure: watch::Receiver<Option<String>>,
    /// The working-day calendar as projected so far: the years shipped in this build plus every
    /// year published in the log. The projector is its one owner; every reader (command
    /// answers, queries, alert delivery's quiet hours) borrows it from here, so a year published
    /// while serving reaches all of them.
    pub calendar: watch::Receiver<Arc<Calendar>>,
}

/// Running totals, for metrics and progress displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub records: u64,
    pub events: u64,
    pub dead_letters: u64,
}

pub struct Projector {
    views: Views,
    cache: ViewCache,
    ctx: Context,
    checkpoint: watch::Sender<u64>,
    applied: Arc<Notify>,
    failure: watch::Sender<Option<String>>,
    calendar: watch::Sender<Arc<Calendar>>,
    totals: Totals,
    alerts: broadcast::Sender<AlertView>,
    /// Records after this position are live; alerts from records up to it are replay and are
    /// not broadcast.
    live_after: u64,
    /// Batches applied since the last look at the views' size.
    batches_since_compact_check: u64,
    /// Most cases a fold holds ([`FOLD_CASES_MAX`]).
    fold_cases_max: usize,
    /// Cases a fold keeps decoded per generation ([`fold::GENERATION_CASES`]).
    fold_generation_cases: usize,
    /// Smallest backlog after which the views are reopened ([`REOPEN_BACKLOG_MIN`]).
    reopen_backlog_min: u64,
}

/// Alert views buffered for slow live-stream listeners; one further behind misses some and
/// catches up from the alerts view.
pub const LIVE_ALERTS_BUFFER: usize = 1_024;

impl Projector {
    /// A projector over `views`, with the calendar shipped in this build plus every year
    /// published in the log so far.
    pub fn new(views: Views, policy: SlaPolicy, base_calendar: Calendar) -> Result<Self, ProjectorError> {
        let outdated = views.outdated()?;
        if outdated {
            tracing::warn!("the views were written by another version: rebuilding them from the log");
        }
        // Views with nothing applied yet start from a fresh copy, unless they are one already
        // (a rebuild has just made one).
        if outdated || (views.checkpoint()? == 0 && !views.is_fresh()?) {
            views.reset()?;
        }
        let mut calendar = base_calendar;
        for schedule in views.published_calendars()? {
            calendar.load(&schedule);
        }
        let start = views.checkpoint()?;
        let (checkpoint, _) = watch::channel(start);
        let (alerts, _) = broadcast::channel(LIVE_ALERTS_BUFFER);
        Ok(Projector {
            views,
            cache: ViewCache::default(),
            calendar: watch::channel(Arc::new(calendar.clone())).0,
            ctx: Context { policy, calendar, publications: 0 },
            checkpoint,
            applied: Arc::new(Notify::new()),
            failure: watch::channel(None).0,
            totals: Totals::default(),
            alerts,
            live_after: start,
            batches_since_compact_check: 0,
            fold_cases_max: FOLD_CASES_MAX,
            fold_generation_cases: fold::GENERATION_CASES,
            reopen_backlog_min: REOPEN_BACKLOG_MIN,
        })
    }

    pub fn progress(&self) -> Progress {
        Progress {
            checkpoint: self.checkpoint.subscribe(),
            applied: self.applied.clone(),
            failure: self.failure.subscribe(),
            calendar: self.calendar.subscribe(),
        }
    }

    /// Alerts raised or acknowledged by live records, as they are projected.
    pub fn alerts(&self) -> broadcast::Receiver<AlertView> {
        self.alerts.subscribe()
    }

    /// Sets the most cases a fold holds before it installs what it has (for tests of a fold
    /// that stops early).
    pub fn set_fold_cases_max(&mut self, cases: usize) {
        self.fold_cases_max = cases.max(1);
    }

    /// Sets how many cases a fold keeps decoded per generation before it packs those left
    /// untouched (for tests that pack many times over a small log).
    pub fn set_fold_generation_cases(&mut self, cases: usize) {
        self.fold_generation_cases = cases.max(1);
    }

    /// Sets the smallest backlog after which the views are reopened (for tests on short logs).
    pub fn set_reopen_backlog_min(&mut self, records: u64) {
        self.reopen_backlog_min = records.max(1);
    }

    /// Treats records up to `position` as replay: their alerts are not broadcast.
    pub fn set_live_after(&mut self, position: u64) {
        self.live_after = position;
    }

    pub fn views(&self) -> &Views {
        &self.views
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The calendar as projected so far (shipped years plus published ones).
    pub fn calendar(&self) -> &Calendar {
        &self.ctx.calendar
    }

    /// Applies one batch of records atomically. In strict mode a dead letter is an error and
    /// nothing of the batch is written.
    pub fn apply_batch(&mut self, records: &[StoredRecord], strict: bool) -> Result<u64, ProjectorError> {
        let Some(last) = records.last() else { return Ok(*self.checkpoint.borrow()) };
        let mut overlay = Overlay::new(&self.views, &self.cache);
        let mut totals = self.totals;
        let publications = self.ctx.publications;
        for record in records {
            apply_counted(&mut self.ctx, &mut overlay, record, strict, &mut totals)?;
        }
        let live_alerts: Vec<AlertView> =
            std::mem::take(&mut overlay.alerts).into_iter().filter(|a| a.position > self.live_after).collect();
        let (writes, values) = overlay.finish(last.position);
        self.views.apply(&writes)?;
        self.cache.absorb(values);
        self.totals = totals;
        self.announce(last.position, publications, live_alerts);
        Ok(last.position)
    }

    /// Tells the rest of the service that the views now reach `position`.
    fn announce(&mut self, position: u64, publications_before: u64, live_alerts: Vec<AlertView>) {
        if self.ctx.publications != publications_before {
            self.calendar.send_replace(Arc::new(self.ctx.calendar.clone()));
        }
        for alert in live_alerts {
            // No listener is not an error.
            let _ = self.alerts.send(alert);
        }
        // After a reopen the views may restart below what was already announced: the
        // checkpoint others wait on never goes back.
        self.checkpoint.send_if_modified(|c| {
            let moved = position > *c;
            *c = (*c).max(position);
            moved
        });
        self.applied.notify_waiters();
    }

    /// Fills empty views with a fold of the log up to `head` ([`fold`]): every record applied
    /// in memory, then the whole views written at once in place of the empty ones (up to
    /// [`FOLD_CASES_MAX`] cases: the records after are left to record-by-record projection). Returns
    /// false, with the views untouched, when `stop` turned true first. After a log failure the
    /// records folded before it are installed and the failure returned.
    async fn fold(
        &mut self,
        log: &dyn EventLog,
        head: u64,
        strict: bool,
        stop: Option<&watch::Receiver<bool>>,
        on_batch: &mut impl FnMut(u64, u64),
    ) -> Result<bool, ProjectorError> {
        let started = Instant::now();
        let mut ctx = self.ctx.clone();
        let mut fold = Fold::new(self.live_after).with_generation_cases(self.fold_generation_cases);
        let mut totals = self.totals;
        let mut last = 0;
        let mut failure = None;
        let mut batches = log.subscribe(1).await?.ready_chunks(BATCH_RECORDS_MAX);
        while last < head {
            if stop.is_some_and(|s| *s.borrow()) {
                return Ok(false);
            }
            let Some(batch) = next_batch(&mut batches).await else { break };
            let (records, failed) = split_ok(batch);
            for record in records.iter().take_while(|r| r.position <= head) {
                fold.at(record.position);
                apply_counted(&mut ctx, &mut fold, record, strict, &mut totals)?;
                last = record.position;
            }
            on_batch(last, head);
            if failed.is_some() {
                failure = failed;
                break;
            }
            if fold.cases() >= self.fold_cases_max {
                tracing::info!(
                    cases = fold.cases(),
                    position = last,
                    "the fold is full: the rest is projected record by record"
                );
                break;
            }
        }
        if last > 0 {
            let live_alerts = std::mem::take(&mut fold.alerts);
            let views = self.views.clone();
            let folded_at = started.elapsed();
            let installed = tokio::task::spawn_blocking(move || {
                let folded = fold.finish(last)?;
                let installed = views.install(&folded.entries).map(|c| (c, folded.entries.len(), folded.cases));
                drop(folded);
                // Once on this thread and once on the projector's: each heap keeps what other
                // threads freed of its blocks until it is asked.
                fold::release_freed_memory();
                installed
            })
            .await
            .map_err(|e| ViewError::Storage(format!("fold task failed: {e}")))??;
            fold::release_freed_memory();
            let (compaction, keys, cases) = installed;
            tracing::info!(
                records = totals.records - self.totals.records,
                cases,
                keys,
                bytes = compaction.bytes_after,
                fold_seconds = folded_at.as_secs_f64(),
                seconds = started.elapsed().as_secs_f64(),
                "views folded from the log"
            );
            let publications = self.ctx.publications;
            self.ctx = ctx;
            self.totals = totals;
            self.cache = ViewCache::default();
            self.announce(last, publications, live_alerts);
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(true),
        }
    }

    /// Follows the log until `stop` turns true, resubscribing after log failures and reopening
    /// the views after write failures, so that it goes on by itself once the cause is gone.
    pub async fn run(&mut self, log: Arc<dyn EventLog>, mut stop: watch::Receiver<bool>) -> Result<(), ProjectorError> {
        while !*stop.borrow() {
            let pause = match self.follow(log.as_ref(), &mut stop).await {
                Ok(()) => RESUBSCRIBE_BACKOFF,
                Err(ProjectorError::Views(e)) => self.recover_views(e).await,
                Err(e) => return Err(e),
            };
            tokio::select! { _ = tokio::time::sleep(pause) => {}, _ = stop.changed() => {} }
        }
        Ok(())
    }

    /// Applies records as they come until the stream ends or fails (Ok) or the views fail.
    async fn follow(&mut self, log: &dyn EventLog, stop: &mut watch::Receiver<bool>) -> Result<(), ProjectorError> {
        if self.views.checkpoint()? == 0 {
            match log.head().await {
                Ok(head) if head >= FOLD_RECORDS_MIN => {
                    match self.fold(log, head, false, Some(stop), &mut |_, _| {}).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(()),
                        Err(ProjectorError::Log(e)) => {
                            tracing::warn!("log stream failed while folding, resubscribing: {e}");
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("projector cannot read the log's head: {e}");
                    return Ok(());
                }
            }
        }
        let from = self.views.checkpoint()? + 1;
        // Where the log is now, if it is a backlog worth reopening the views after.
        let mut reopen_at = match log.head().await {
            Ok(head) if head.saturating_sub(from - 1) >= self.reopen_backlog_min => Some(head),
            _ => None,
        };
        let stream = match log.subscribe(from).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("projector cannot subscribe to the log: {e}");
                return Ok(());
            }
        };
        let mut batches = stream.ready_chunks(BATCH_RECORDS_MAX);
        let mut stall_check = tokio::time::interval(STALL_CHECK_PERIOD);
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_record = Instant::now();
        let mut stall = StallWatch::default();
        loop {
            let batch = tokio::select! {
                b = next_batch(&mut batches) => b,
                _ = stop.changed() => return Ok(()),
                _ = stall_check.tick() => {
                    if last_record.elapsed() >= STALL_CHECK_PERIOD {
                        let head = log.head().await.ok();
                        if stall.stalled(head, *self.checkpoint.borrow()) {
                            tracing::warn!("the log has records the subscription did not deliver: resubscribing");
                            return Ok(());
                        }
                    }
                    continue;
                }
            };
            stall = StallWatch::default();
            let Some(batch) = batch else { return Ok(()) };
            let (records, failure) = split_ok(batch);
            let checkpoint = self.apply_batch(&records, false)?;
            if reopen_at.is_some_and(|head| checkpoint >= head) {
                reopen_at = None;
                self.reopen_after_backlog(from).await?;
            }
            if self.compact_check_due() {
                // Asked only now: on NATS the head is a round trip.
                let head = log.head().await.unwrap_or(0);
                self.compact_if_worthwhile(head).await?;
            }
            // Counted after the batch: a long batch or a compaction is not a silent subscription.
            last_record = Instant::now();
            if self.failure.borrow().is_some() {
                self.failure.send_replace(None);
                tracing::info!("views are written again");
            }
            if let Some(e) = failure {
                tracing::warn!("log stream failed, resubscribing: {e}");
                return Ok(());
            }
        }
    }

    /// Counts a batch; true every [`COMPACT_CHECK_BATCHES`] batches.
    fn compact_check_due(&mut self) -> bool {
        self.batches_since_compact_check += 1;
        let due = self.batches_since_compact_check >= COMPACT_CHECK_BATCHES;
        if due {
            self.batches_since_compact_check = 0;
        }
        due
    }

    /// While at least [`COMPACT_BACKLOG_MIN`] records behind `head` (catching up: after a
    /// start, an upgrade, in a rebuild), compacts the views if they have grown well past what
    /// they hold ([`Views::compact_if_worthwhile`]). Never while live: projection waits during a
    /// compaction (and the check reads every key), and alerts must not wait: views that grow
    /// while live are compacted the next time the service catches up a backlog, or offline by
    /// `whistle views compact`.
    async fn compact_if_worthwhile(&mut self, head: u64) -> Result<(), ProjectorError> {
        if head.saturating_sub(*self.checkpoint.borrow()) < COMPACT_BACKLOG_MIN {
            return Ok(());
        }
        let views = self.views.clone();
        let started = Instant::now();
        let compacted = tokio::task::spawn_blocking(move || views.compact_if_worthwhile())
            .await
            .map_err(|e| ViewError::Storage(format!("compaction task failed: {e}")))?;
        // A compaction that failed before the swap left the views as they were: go on.
        let compacted = match compacted {
            Err(e) if self.views.checkpoint().is_ok() => {
                tracing::warn!("views not compacted: {e}");
                None
            }
            other => other?,
        };
        if let Some(c) = compacted {
            tracing::info!(
                bytes_before = c.bytes_before,
                bytes_after = c.bytes_after,
                live_bytes = c.live_bytes,
                seconds = started.elapsed().as_secs_f64(),
                "views compacted"
            );
        }
        Ok(())
    }

    /// Reopens the views once a backlog from `from` is projected record by record: sled keeps
    /// in memory what it wrote of each page many times over (~100 MiB after a million), while
    /// views opened from disk hold each page once. Readers wait the moment it takes.
    async fn reopen_after_backlog(&mut self, from: u64) -> Result<(), ProjectorError> {
        let started = Instant::now();
        self.views.flush().await?;
        self.cache = ViewCache::default();
        let views = self.views.clone();
        tokio::task::spawn_blocking(move || views.reopen())
            .await
            .map_err(|e| ViewError::Storage(format!("views reopen task failed: {e}")))??;
        fold::release_freed_memory();
        tracing::info!(
            records = self.views.checkpoint()?.saturating_sub(from - 1),
            seconds = started.elapsed().as_secs_f64(),
            "backlog projected: views reopened to give back the memory it took"
        );
        Ok(())
    }

    /// After a failed views write: sled keeps failing until reopened, and what it held in
    /// memory of the failed batch must go, so the views are reopened from disk and projection
    /// resumes from the checkpoint that reached it. Returns how long to wait before resuming.
    async fn recover_views(&mut self, error: ViewError) -> Duration {
        let message = error.to_string();
        if self.failure.borrow().is_none() {
            tracing::error!("views cannot be written ({message}); retrying until they can");
        }
        self.failure.send_replace(Some(message));
        // Records re-applied after the reopen were live already: their alerts went out.
        self.live_after = self.live_after.max(*self.checkpoint.borrow());
        self.cache = ViewCache::default();
        let views = self.views.clone();
        match tokio::task::spawn_blocking(move || views.reopen()).await {
            Ok(Ok(())) => RESUBSCRIBE_BACKOFF,
            Ok(Err(e)) => {
                tracing::warn!("views did not reopen: {e}");
                VIEWS_RETRY_BACKOFF
            }
            Err(e) => {
                tracing::warn!("views reopen task failed: {e}");
                VIEWS_RETRY_BACKOFF
            }
        }
    }

    /// Applies everything up to the log's head as of now, then returns the totals.
    /// `strict` stops at the first record that cannot be projected. `on_batch` is called after
    /// every batch with (checkpoint, head).
    pub async fn catch_up(
        &mut self,
        log: &dyn EventLog,
        strict: bool,
        mut on_batch: impl FnMut(u64, u64),
    ) -> Result<Totals, ProjectorError> {
        let head = log.head().await?;
        let mut checkpoint = self.views.checkpoint()?;
        if checkpoint >= head {
            return Ok(self.totals);
        }
        if checkpoint == 0 && head >= FOLD_RECORDS_MIN {
            self.fold(log, head, strict, None, &mut on_batch).await?;
            checkpoint = self.views.checkpoint()?;
            if checkpoint >= head {
                return Ok(self.totals);
            }
        }
        let mut batches = log.subscribe(checkpoint + 1).await?.ready_chunks(BATCH_RECORDS_MAX);
        while checkpoint < head {
            let Some(batch) = next_batch(&mut batches).await else { break };
            let (mut records, failure) = split_ok(batch);
            records.retain(|r| r.position <= head);
            checkpoint = self.apply_batch(&records, strict)?;
            if self.compact_check_due() {
                self.compact_if_worthwhile(head).await?;
            }
            on_batch(checkpoint, head);
            if let Some(e) = failure {
                return Err(e.into());
            }
        }
        Ok(self.totals)
    }
}

type Batches = futures::stream::ReadyChunks<crate::log::RecordStream>;

/// The next batch: waits for a first chunk, then takes the chunks already ready until it holds
/// [`BATCH_RECORDS_MAX`] records (at most twice that). The runtime's cooperative budget ends a chunk after 128
/// ready items; the ready chunks after it are taken outside that budget, so a backlog is
/// applied in batches of the full size while a live record still goes alone, at once.
async fn next_batch(batches: &mut Batches) -> Option<Vec<Result<StoredRecord, LogError>>> {
    let mut batch = batches.next().await?;
    while batch.len() < BATCH_RECORDS_MAX && batch.last().is_some_and(|r| r.is_ok()) {
        match tokio::task::unconstrained(batches.next()).now_or_never() {
            Some(Some(more)) => batch.extend(more),
            _ => break,
        }
    }
    Some(batch)
}

/// Applies one record to `target`, counting it in `totals`. In strict mode a dead letter is
/// an error.
fn apply_counted<T: ViewTarget>(
    ctx: &mut Context,
    target: &mut T,
    record: &StoredRecord,
    strict: bool,
    totals: &mut Totals,
) -> Result<(), ProjectorError> {
    match apply_record(ctx, target, record)? {
        Applied::Events(n) => totals.events += n as u64,
        Applied::DeadLetter(reason) if strict => {
            return Err(ProjectorError::Poison { position: record.position, subject: record.subject.clone(), reason });
        }
        Applied::DeadLetter(reason) => {
            tracing::error!(position = record.position, subject = %record.subject, "dead letter: {reason}");
            totals.dead_letters += 1;
        }
    }
    totals.records += 1;
    Ok(())
}

/// The records of a batch up to the first error, and that error.
fn split_ok(batch: Vec<Result<StoredRecord, LogError>>) -> (Vec<StoredRecord>, Option<LogError>) {
    let mut records = Vec::with_capacity(batch.len());
    for item in batch {
        match item {
            Ok(r) => records.push(r),
            Err(e) => return (records, Some(e)),
        }
    }
    (records, None)
}

/// Drops the views and folds the whole log into fresh ones ([`fold`]), stopping at the first
/// poison record. A fresh copy: a rebuild leaves no space behind, however often it is run.
pub async fn rebuild(
    views: Views,
    log: &dyn EventLog,
    policy: SlaPolicy,
    calendar: Calendar,
    mut on_batch: impl FnMut(u64, u64),
) -> Result<(Totals, String), ProjectorError> {
    views.reset()?;
    let mut projector = Projector::new(views, policy, calendar)?;
    let started = Instant::now();
    let head = log.head().await?;
    if head > 0 {
        projector.fold(log, head, true, None, &mut on_batch).await?;
    }
    // Appended while folding.
    let totals = projector.catch_up(log, true, on_batch).await?;
    tracing::info!(records = totals.records, seconds = started.elapsed().as_secs_f64(), "rebuild finished");
    Ok((totals, projector.views.digest()?))
}

#[cfg(test)]
mod tests {
    use super::StallWatch;

    #[test]
    fn a_record_appended_just_before_a_stall_check_is_not_a_stalled_subscription() {
        let mut watch = StallWatch::default();
        // The head moved past the checkpoint a moment before the look: the record is on its way.
        assert!(!watch.stalled(Some(11), 10), "one look behind is not a stall");
        // Delivered by the next look (and more appended since): still not a stall.
        assert!(!watch.stalled(Some(12), 11));
        // Record 12, seen one look ago, still not applied: the subscription has stopped.
        assert!(watch.stalled(Some(12), 11));
        // A log that does not answer proves nothing either way.
        let mut watch = StallWatch::default();
        assert!(!watch.stalled(None, 10));
        assert!(!watch.stalled(None, 10));
        // Caught up: never stalled.
        let mut watch = StallWatch::default();
        assert!(!watch.stalled(Some(10), 10));
        assert!(!watch.stalled(Some(10), 10));
    }
}
