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
pub mod model;
pub mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{broadcast, watch, Notify};

use crate::domain::{Calendar, SlaPolicy};
use crate::log::{EventLog, LogError, StoredRecord};
use apply::{apply_record, Applied, Context};
use model::AlertView;
use views::{Overlay, ViewCache, ViewError, Views};

/// Most records applied in one batch (one atomic write).
pub const BATCH_RECORDS_MAX: usize = 512;
/// Pause before subscribing again after the log stream failed.
const RESUBSCRIBE_BACKOFF: Duration = Duration::from_millis(500);

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
    totals: Totals,
    alerts: broadcast::Sender<AlertView>,
    /// Records after this position are live; alerts from records up to it are replay and are
    /// not broadcast.
    live_after: u64,
}

/// Alert views buffered for slow live-stream listeners; one further behind misses some and
/// catches up from the alerts view.
pub const LIVE_ALERTS_BUFFER: usize = 1_024;

impl Projector {
    /// A projector over `views`, with the calendar shipped in this build plus every year
    /// published in the log so far.
    pub fn new(views: Views, policy: SlaPolicy, base_calendar: Calendar) -> Result<Self, ProjectorError> {
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
            ctx: Context { policy, calendar },
            checkpoint,
            applied: Arc::new(Notify::new()),
            totals: Totals::default(),
            alerts,
            live_after: start,
        })
    }

    pub fn progress(&self) -> Progress {
        Progress { checkpoint: self.checkpoint.subscribe(), applied: self.applied.clone() }
    }

    /// Alerts raised or acknowledged by live records, as they are projected.
    pub fn alerts(&self) -> broadcast::Receiver<AlertView> {
        self.alerts.subscribe()
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
        for record in records {
            match apply_record(&mut self.ctx, &mut overlay, record)? {
                Applied::Events(n) => totals.events += n as u64,
                Applied::DeadLetter(reason) if strict => {
                    return Err(ProjectorError::Poison {
                        position: record.position,
                        subject: record.subject.clone(),
                        reason,
                    });
                }
                Applied::DeadLetter(reason) => {
                    tracing::error!(position = record.position, subject = %record.subject, "dead letter: {reason}");
                    totals.dead_letters += 1;
                }
            }
            totals.records += 1;
        }
        let live_alerts: Vec<AlertView> =
            std::mem::take(&mut overlay.alerts).into_iter().filter(|a| a.position > self.live_after).collect();
        let (writes, values) = overlay.finish(last.position);
        self.views.apply(&writes)?;
        self.cache.absorb(values);
        for alert in live_alerts {
            // No listener is not an error.
            let _ = self.alerts.send(alert);
        }
        self.totals = totals;
        self.checkpoint.send_replace(last.position);
        self.applied.notify_waiters();
        Ok(last.position)
    }

    /// Follows the log until `stop` turns true, resubscribing after log failures.
    pub async fn run(&mut self, log: Arc<dyn EventLog>, mut stop: watch::Receiver<bool>) -> Result<(), ProjectorError> {
        while !*stop.borrow() {
            let from = self.views.checkpoint()? + 1;
            let stream = match log.subscribe(from).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("projector cannot subscribe to the log: {e}");
                    tokio::select! { _ = tokio::time::sleep(RESUBSCRIBE_BACKOFF) => continue, _ = stop.changed() => break }
                }
            };
            let mut batches = stream.ready_chunks(BATCH_RECORDS_MAX);
            loop {
                let batch = tokio::select! {
                    b = batches.next() => b,
                    _ = stop.changed() => return Ok(()),
                };
                let Some(batch) = batch else { break };
                let (records, failure) = split_ok(batch);
                self.apply_batch(&records, false)?;
                if let Some(e) = failure {
                    tracing::warn!("log stream failed, resubscribing: {e}");
                    break;
                }
            }
            tokio::time::sleep(RESUBSCRIBE_BACKOFF).await;
        }
        Ok(())
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
        let mut batches = log.subscribe(checkpoint + 1).await?.ready_chunks(BATCH_RECORDS_MAX);
        while checkpoint < head {
            let Some(batch) = batches.next().await else { break };
            let (mut records, failure) = split_ok(batch);
            records.retain(|r| r.position <= head);
            checkpoint = self.apply_batch(&records, strict)?;
            on_batch(checkpoint, head);
            if let Some(e) = failure {
                return Err(e.into());
            }
        }
        Ok(self.totals)
    }
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

/// Drops the views and projects the whole log again, stopping at the first poison record.
pub async fn rebuild(
    views: Views,
    log: &dyn EventLog,
    policy: SlaPolicy,
    calendar: Calendar,
    on_batch: impl FnMut(u64, u64),
) -> Result<(Totals, String), ProjectorError> {
    views.clear()?;
    let mut projector = Projector::new(views, policy, calendar)?;
    let started = Instant::now();
    let totals = projector.catch_up(log, true, on_batch).await?;
    projector.views.flush().await?;
    tracing::info!(records = totals.records, seconds = started.elapsed().as_secs_f64(), "rebuild finished");
    Ok((totals, projector.views.digest()?))
}
