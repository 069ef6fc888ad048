//! Alert delivery: from alert events to the people and systems that act on them.
//!
//! Channels:
//! - the subject `whistle.alert.<stage>.<level>.<unit>` (NATS core; an in-process broadcast on the
//!   embedded log), for other systems, at once;
//! - webhooks from config (generic JSON, WeCom and DingTalk group-robot markdown), with
//!   retries, backoff and a bounded queue. These reach people, so non-urgent alerts wait for
//!   working hours: an alert outside them is held and sent at the start of the next working
//!   day, escalations included. Urgent whistles and operator notices go at once;
//! - the in-process broadcast the HTTP layer serves as Server-Sent Events (fed by the
//!   projector, see [`crate::projector::Projector::alerts`]).
//!
//! Delivery reads the log through a durable claim of its own (its own checkpoint): a new
//! service starts after the current head, so history is never delivered, and with several
//! instances each alert goes to one of them. A record can still reach two instances (an
//! acknowledgement lost in a node failure), so each delivery is claimed in the log first
//! (`EventLog::claim_delivery`): only the claimant sends it, once. The subjects are claimed once
//! per record (every notice it carries), each webhook once per notice.

pub mod notice;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};

use crate::clock::Clock;
use crate::domain::calendar::beijing;
use crate::domain::Calendar;
use crate::log::{EventLog, StoredRecord};
use crate::projector::keys::{held_key, held_release, sent_key, HELD_PREFIX};
use crate::projector::model::{alert_view_of, AlertView, CaseView};
use crate::projector::views::Views;
pub use notice::{AlertNotice, WebhookFormat};

/// The durable claim delivery reads the log through.
pub const CONSUMER_NAME: &str = "whistle-alert-delivery";
/// Webhook sends waiting at once, per webhook; a full queue makes delivery wait.
pub const WEBHOOK_QUEUE_MAX: usize = 1_024;
/// Records delivery takes together when more than one is ready: their notices' claims are
/// stored in one write, so a burst of notices does not hold up a breach behind it.
const CLAIM_BATCH_MAX: usize = 64;
/// Claimed batches whose outbox entries wait to be written while the claim loop goes on.
const OUTBOX_PENDING_MAX: usize = 16;
/// Attempts per webhook send, unless the webhook says otherwise.
pub const WEBHOOK_ATTEMPTS_MAX: u32 = 8;
/// First pause between webhook attempts; doubles up to [`WEBHOOK_BACKOFF_MAX`].
const WEBHOOK_BACKOFF_FIRST: Duration = Duration::from_millis(200);
const WEBHOOK_BACKOFF_MAX: Duration = Duration::from_secs(60);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long delivery waits for the projector to record an alert before sending what it has.
const PROJECTION_WAIT: Duration = Duration::from_secs(10);
/// How often held notices the outbox could not store are offered to it again.
const UNSTORED_RETRY: Duration = Duration::from_secs(10);
/// Attempts to find an alert's case (views, then the log) before sending it with what the
/// event alone says.
const ALERT_VIEW_ATTEMPTS_MAX: u32 = 12;
/// Pause before claiming again after the log stream failed.
const RECLAIM_BACKOFF: Duration = Duration::from_millis(500);
/// How often delivery asks the log whether it accepts writes.
const LOG_HEALTH_PERIOD: Duration = Duration::from_secs(2);
/// Attempts at a delivery claim the log could not store (a full disk): about 30 minutes.
const CLAIM_NOT_STORED_ATTEMPTS_MAX: u32 = 190;

/// Where alerts go besides the subject and the live stream.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Working hours (Beijing time) for people-facing channels.
    #[serde(default)]
    pub working_hours: WorkingHours,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Stages to send (`warning`, `breach`, `escalation`, `operator`, `report`); empty: the
    /// three SLA stages and the 通报.
    #[serde(default)]
    pub stages: Vec<String>,
    /// Units whose messages to send; empty: all. A department, township or office takes the
    /// alerts of its clocks and its notices; a supervisor takes the SLA alerts that reach it
    /// (its level, above the case's township).
    #[serde(default)]
    pub units: Vec<String>,
    /// Attempts per message before giving up (and telling operators); default 8, about 25 s
    /// of backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// Kinds of supervisors' and operators' messages a webhook can name in `stages`.
pub const ALERT_KINDS: [&str; 5] = ["warning", "breach", "escalation", "operator", "report"];

/// Every kind of message a webhook can name in `stages`: [`ALERT_KINDS`], then the notices to
/// units.
pub fn message_kinds() -> impl Iterator<Item = &'static str> {
    ALERT_KINDS.into_iter().chain(notice::UNIT_NOTICE_KINDS)
}

impl WebhookConfig {
    /// Whether this webhook takes messages of `kind` (for some unit).
    pub fn wants_kind(&self, kind: &str) -> bool {
        let named = |s: &str| self.stages.iter().any(|x| x == s);
        if notice::UNIT_NOTICE_KINDS.contains(&kind) {
            named(kind)
        } else if self.stages.is_empty() {
            kind != "operator"
        } else {
            named(kind) || (kind == "warning" && named("reminder"))
        }
    }

    /// Whether this webhook takes `notice`. Notices to units (summons, reminder, …) go only to
    /// webhooks that name their kind; `reminder` also takes the SLA warning of the unit's clocks.
    pub fn wants(&self, notice: &AlertNotice) -> bool {
        self.wants_kind(&notice.stage)
            && (self.units.is_empty()
                || self.units.contains(&notice.unit)
                || notice.supervisors.iter().any(|s| self.units.contains(s)))
    }
}

/// What delivery is configured with.
#[derive(Clone, Debug, Default)]
pub struct DeliverySettings {
    /// Webhooks and working hours (org.toml `[alerts]`).
    pub alerts: AlertConfig,
    /// The dashboard's address, for links in 通报 messages.
    pub report_link: Option<String>,
    pub units: NoticeUnits,
    /// The SLA policy, to arm the clocks of a case read from the log.
    pub policy: crate::domain::SlaPolicy,
}

/// The units notices name that the log's events do not: the office and the coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeUnits {
    pub office: String,
    pub coordinator: String,
    /// Which supervisors an alert reaches.
    pub supervision: Supervision,
}

impl Default for NoticeUnits {
    fn default() -> Self {
        NoticeUnits {
            office: "市减负办".into(), coordinator: "市委编办".into(), supervision: Supervision::default()
        }
    }
}

/// Who supervises which township: the organisation's districts and supervisors (org.toml).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Supervision {
    /// Township → its district.
    pub districts: std::collections::BTreeMap<String, String>,
    pub supervisors: Vec<crate::api::auth::Supervisor>,
}

impl Supervision {
    /// The supervisors of `level` above a case of `township` (none: a case of the whole city,
    /// such as feedback): those of its district and those of the whole city.
    pub fn told(&self, township: Option<&str>, level: u8) -> Vec<String> {
        let district = township.and_then(|t| self.districts.get(t));
        self.supervisors
            .iter()
            .filter(|s| s.level == level && (s.district.is_none() || s.district.as_ref() == district))
            .map(|s| s.unit.clone())
            .collect()
    }
}

/// When to remind (催办) the unit owing a non-urgent clock whose deadline falls outside working
/// hours: two hours before the end of the last working period before the deadline (not before
/// that period starts). `None` when the deadline falls inside working hours (the warning does).
pub fn reminder_at(due: DateTime<Utc>, calendar: &Calendar, hours: WorkingHours) -> Option<DateTime<Utc>> {
    let mut day = due.with_timezone(&beijing()).date_naive();
    // Bounded: no published schedule has more than a few weeks without a working day.
    for _ in 0..60 {
        if calendar.day(day).working {
            let (start, end) = (at_beijing(day, hours.start)?, at_beijing(day, hours.end)?);
            if start < due {
                if due <= end {
                    return None;
                }
                return Some((end - chrono::Duration::hours(REMIND_BEFORE_END_HOURS)).max(start));
            }
        }
        day = day.pred_opt()?;
    }
    None
}

/// Notices that ask a unit to answer a clock (each carries the clock and its deadline): they get
/// a reminder before an out-of-hours deadline, and are dropped if answered while held.
const ASKING_KINDS: [&str; 3] = ["summons", "dispute", "feedback"];

/// How long before the end of the working day the out-of-hours reminder goes.
const REMIND_BEFORE_END_HOURS: i64 = 2;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Default for WorkingHours {
    fn default() -> Self {
        WorkingHours {
            start: NaiveTime::from_hms_opt(9, 0, 0).expect("09:00 is a time"),
            end: NaiveTime::from_hms_opt(18, 0, 0).expect("18:00 is a time"),
        }
    }
}

/// When a people-facing alert raised at `now` may be sent: now within working hours on a
/// working day, else the start of the next working period.
pub fn release_at(now: DateTime<Utc>, calendar: &Calendar, hours: WorkingHours) -> DateTime<Utc> {
    let local = now.with_timezone(&beijing());
    let date = local.date_naive();
    let time = local.time();
    if calendar.day(date).working {
        if time >= hours.start && time < hours.end {
            return now;
        }
        if time < hours.start {
            return at_beijing(date, hours.start).unwrap_or(now);
        }
    }
    let mut next = date;
    // Bounded: no published schedule has more than a few weeks without a working day.
    for _ in 0..60 {
        next = next.succ_opt().unwrap_or(next);
        if calendar.day(next).working {
            return at_beijing(next, hours.start).unwrap_or(now);
        }
    }
    now
}

fn at_beijing(date: chrono::NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    date.and_time(time).and_local_timezone(beijing()).single().map(|t| t.with_timezone(&Utc))
}

/// Delivery counters, for metrics.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub published: AtomicU64,
    pub webhook_sent: AtomicU64,
    pub webhook_failed: AtomicU64,
    pub held: AtomicU64,
    /// Messages by (kind, channel, outcome): channel `subject` or a webhook's name; outcome
    /// `sent`, `failed`, `held` or `dropped` (held, then no longer asking for anything).
    pub by_kind: std::sync::Mutex<std::collections::BTreeMap<(String, String, &'static str), u64>>,
}

impl DeliveryStats {
    fn count(&self, kind: &str, channel: &str, outcome: &'static str) {
        let mut counts = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((kind.to_owned(), channel.to_owned(), outcome)).or_default() += 1;
    }

    /// A copy of the counts by (kind, channel, outcome).
    pub fn by_kind(&self) -> Vec<((String, String, &'static str), u64)> {
        self.by_kind.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Messages a minute a WeCom or DingTalk group robot takes; it refuses more.
pub const ROBOT_MESSAGES_PER_MINUTE: usize = 20;

/// Spaces the sends to one group robot: the one that would be the 21st within a minute waits
/// for the minute, rather than being refused and retried until it is given up.
struct Pace {
    window: Duration,
    max: usize,
    /// When the sends of the last window went, oldest first.
    sent: std::collections::VecDeque<std::time::Instant>,
}

impl Pace {
    fn new(max: usize, window: Duration) -> Pace {
        Pace { window, max: max.max(1), sent: std::collections::VecDeque::new() }
    }

    /// The robots' limit for their formats; none for a generic webhook.
    fn for_format(format: WebhookFormat) -> Option<Pace> {
        (format != WebhookFormat::Generic).then(|| Pace::new(ROBOT_MESSAGES_PER_MINUTE, Duration::from_secs(60)))
    }

    /// How long to wait before the next send at `now`, if at all.
    fn wait(&mut self, now: std::time::Instant) -> Option<Duration> {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            self.sent.pop_front();
        }
        if self.sent.len() < self.max {
            return None;
        }
        self.sent.front().map(|oldest| (*oldest + self.window).saturating_duration_since(now))
    }

    fn record(&mut self, at: std::time::Instant) {
        self.sent.push_back(at);
    }

    /// Waits until a message may go.
    async fn until_free(&mut self, webhook: &str) {
        while let Some(wait) = self.wait(std::time::Instant::now()) {
            tracing::info!(%webhook, "group robot at its limit of {ROBOT_MESSAGES_PER_MINUTE} a minute: waiting {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Makes `next` no later than `at`.
fn sooner(next: &mut Option<DateTime<Utc>>, at: DateTime<Utc>) {
    *next = Some(next.map_or(at, |n| n.min(at)));
}

/// What the release loop did with a held notice.
enum Released {
    /// Already on its webhook's queue: left alone.
    InFlight,
    /// Not due before this time: left for then.
    Later(DateTime<Utc>),
    /// On its webhook's queue; its entry stays until the send loop is done with it.
    Queued,
    /// Its webhook's queue is full: left for a later look.
    QueueFull,
    /// Sent elsewhere, held again under a new time, or no longer owed: its entry goes.
    Done,
    Stopping,
}

struct Job {
    /// The webhook's index in the configuration, and so its queue's.
    webhook: usize,
    notice: AlertNotice,
    /// Whether the delivery is claimed in the log first (once across instances). Notices about
    /// the log itself cannot be: the log is what fails.
    claim_first: bool,
    /// The job's entry in the outbox (the held-notice keys, due now): removed once the job is
    /// done, so a job not done when the instance stopped is queued again on its next start.
    outbox: Option<Vec<u8>>,
}

/// A webhook send or hold decided for a claimed record: an outbox entry, written before the
/// record is acknowledged.
struct Outgoing {
    webhook: usize,
    notice: AlertNotice,
    /// When it goes: the moment it was decided, for a send due now; else the working moment it
    /// is held for.
    release: DateTime<Utc>,
    held: bool,
}

/// What delivery decided for claimed records: their outbox entries, and the acknowledgements
/// that wait until those are stored.
struct Decided {
    outgoing: Vec<Outgoing>,
    acks: Vec<(u64, crate::log::Acker)>,
}

/// One queue per webhook, each with a send loop of its own: a webhook that is down or slow
/// (retrying for half a minute) holds up only its own messages.
type Queues = Vec<mpsc::Sender<Job>>;

/// Whether a notice goes to people at once, whatever the hour: urgent whistles and operator
/// notices. Escalations of non-urgent cases wait like breaches: no night or weekend demands for
/// matters that are not urgent.
fn at_once(notice: &AlertNotice) -> bool {
    notice.urgent || notice.stage == "operator"
}

/// Puts a job on its webhook's queue, waiting while that queue is full; false once the queue
/// is closed (delivery is stopping).
async fn enqueue(queues: &[mpsc::Sender<Job>], job: Job) -> bool {
    match queues.get(job.webhook) {
        Some(queue) => queue.send(job).await.is_ok(),
        None => true,
    }
}

/// Delivers alerts. Run [`Delivery::run`] once per service instance.
pub struct Delivery {
    log: Arc<dyn EventLog>,
    views: Views,
    clock: Arc<dyn Clock>,
    /// The live calendar (the projector owns it): quiet hours follow years published later.
    calendar: watch::Receiver<Arc<Calendar>>,
    config: AlertConfig,
    checkpoint: watch::Receiver<u64>,
    http: reqwest::Client,
    held_changed: Notify,
    /// The dashboard's address, for links in 通报 messages.
    report_link: Option<String>,
    units: NoticeUnits,
    policy: crate::domain::SlaPolicy,
    /// True once delivery claims from the log: records stored after that are delivered.
    claiming: watch::Sender<bool>,
    /// Outbox entries queued and not yet done: the release loop does not queue them again.
    in_flight: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
    /// Held notices the outbox could not store (its disk full or failing), by outbox key: the
    /// release loop offers them to the outbox again and, while it still refuses, releases them
    /// from here when their time comes.
    unstored: std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    pub stats: DeliveryStats,
}

impl Delivery {
    pub fn new(
        log: Arc<dyn EventLog>,
        views: Views,
        clock: Arc<dyn Clock>,
        calendar: watch::Receiver<Arc<Calendar>>,
        checkpoint: watch::Receiver<u64>,
        settings: DeliverySettings,
    ) -> Result<Self, reqwest::Error> {
        let DeliverySettings { alerts: config, report_link, units, policy } = settings;
        let http = reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build()?;
        Ok(Delivery {
            log,
            views,
            clock,
            calendar,
            config,
            checkpoint,
            http,
            held_changed: Notify::new(),
            report_link,
            units,
            policy,
            claiming: watch::channel(false).0,
            in_flight: Default::default(),
            unstored: Default::default(),
            stats: DeliveryStats::default(),
        })
    }

    /// Waits until delivery claims from the log (a new service delivers only what is stored
    /// after that).
    pub async fn claiming(&self) {
        let mut claiming = self.claiming.subscribe();
        let _ = claiming.wait_for(|c| *c).await;
    }

    /// Runs until `stop` turns true: claims, holds, and sends.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let (queues, receivers): (Queues, Vec<_>) =
            self.config.webhooks.iter().map(|_| mpsc::channel(WEBHOOK_QUEUE_MAX)).unzip();
        // The send loops' ways into the other queues must not keep them open once every other
        // sender is gone: weak ones.
        let weak: Vec<_> = queues.iter().map(mpsc::Sender::downgrade).collect();
        let senders: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(webhook, queue)| tokio::spawn(self.clone().send_loop(webhook, queue, weak.clone())))
            .collect();
        let releaser = tokio::spawn(self.clone().release_loop(queues.clone(), stop.clone()));
        let health = tokio::spawn(self.clone().log_health_loop(queues.clone(), stop.clone()));
        let (decided, undecided) = mpsc::channel(OUTBOX_PENDING_MAX);
        let outbox = tokio::spawn(self.clone().outbox_loop(undecided, queues));
        self.claim_loop(decided, stop).await;
        // What the claim loop decided is stored and acknowledged before the queues close.
        let _ = outbox.await;
        releaser.abort();
        health.abort();
        // The queues close when the claim loop and the releaser are gone; what was queued
        // is still sent.
        for sender in senders {
            let _ = sender.await;
        }
    }

    async fn claim_loop(&self, decided: mpsc::Sender<Decided>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let mut claims = match self.log.claim(CONSUMER_NAME).await {
                Ok(c) => {
                    self.claiming.send_replace(true);
                    c
                }
                Err(e) => {
                    tracing::warn!("alert delivery cannot claim: {e}");
                    tokio::select! { _ = tokio::time::sleep(RECLAIM_BACKOFF) => continue, _ = stop.changed() => return }
                }
            };
            loop {
                let mut item = tokio::select! { i = claims.next() => i, _ = stop.changed() => return };
                // What else is ready now joins it, so a burst is claimed in a few writes.
                let mut batch = Vec::new();
                let ended = loop {
                    match item {
                        Some(Ok(claimed)) => batch.push(claimed),
                        Some(Err(e)) => break Some(e.to_string()),
                        None => break Some("the log closed it".into()),
                    }
                    if batch.len() >= CLAIM_BATCH_MAX {
                        break None;
                    }
                    match claims.next().now_or_never() {
                        Some(next) => item = next,
                        None => break None,
                    }
                };
                self.deliver_records(batch, &decided).await;
                if let Some(reason) = ended {
                    tracing::warn!("alert claim stream ended: {reason}");
                    break;
                }
            }
            tokio::time::sleep(RECLAIM_BACKOFF).await;
        }
    }

    /// Tells operators, at once and on every channel that takes operator notices, when the log
    /// stops accepting writes (a full disk) and when it accepts them again. These notices are
    /// not claimed in the log (it cannot be written), so each instance sends its own.
    async fn log_health_loop(self: Arc<Self>, queues: Queues, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        while !*stop.borrow() {
            let failure = self.log.write_failure();
            if failure.is_some() != failing {
                failing = failure.is_some();
                let notice = AlertNotice::log_health(failure.as_deref(), self.clock.now());
                tracing::warn!("{}", notice.text);
                self.publish_unclaimed(&notice).await;
                for (webhook, config) in self.config.webhooks.iter().enumerate() {
                    if config.wants(&notice) {
                        let job = Job { webhook, notice: notice.clone(), claim_first: false, outbox: None };
                        if !enqueue(&queues, job).await {
                            return;
                        }
                    }
                }
            }
            tokio::select! { _ = tokio::time::sleep(LOG_HEALTH_PERIOD) => {}, _ = stop.changed() => {} }
        }
    }

    /// Publishes a notice on its subject, without claiming it first.
    async fn publish_unclaimed(&self, notice: &AlertNotice) {
        let subject = notice.subject();
        let payload = bytes::Bytes::from(serde_json::to_vec(notice).expect("notices serialise (plain data)"));
        match self.log.publish_alert(&subject, payload).await {
            Ok(()) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.stats.count(&notice.stage, "subject", "sent");
            }
            Err(e) => tracing::warn!(%subject, "alert not published: {e}"),
        }
    }

    /// Sends the alerts claimed records carry to every channel: finds their notices, claims the
    /// notices' subjects together and publishes them, and decides their webhook sends and holds,
    /// which the outbox loop stores before it acknowledges the records — an instance that stops
    /// before that gets them again, and the claims make sure nothing goes out twice. The next
    /// records do not wait for that write to reach the disk.
    async fn deliver_records(&self, batch: Vec<crate::log::Claimed>, decided: &mpsc::Sender<Decided>) {
        let (records, acks): (Vec<StoredRecord>, Vec<_>) = batch.into_iter().map(|c| (c.record, c.ack)).unzip();
        let mut carried = Vec::new();
        for record in &records {
            let (key, notices) = self.notices_of(record).await;
            if !notices.is_empty() {
                carried.push((key, notices));
            }
        }
        let keys: Vec<String> = carried.iter().map(|(key, _)| key.clone()).collect();
        let won = self.claim_all(&keys).await;
        let mut outgoing = Vec::new();
        for ((_, notices), won) in carried.into_iter().zip(won) {
            for notice in notices {
                if won {
                    self.publish_unclaimed(&notice).await;
                }
                self.dispatch(notice, &mut outgoing);
            }
        }
        let acks = records.iter().map(|r| r.position).zip(acks).collect();
        if decided.send(Decided { outgoing, acks }).await.is_err() {
            tracing::warn!("alert delivery is stopping: claimed records left for the next start");
        }
    }

    /// Stores what the claim loop decided — every batch waiting, in one write and one flush —
    /// then acknowledges the records. A record whose acknowledgement failed may be handed to
    /// another instance too; the per-delivery claims make sure only one sends each alert.
    async fn outbox_loop(self: Arc<Self>, mut undecided: mpsc::Receiver<Decided>, queues: Queues) {
        while let Some(Decided { mut outgoing, mut acks }) = undecided.recv().await {
            while let Ok(more) = undecided.try_recv() {
                outgoing.extend(more.outgoing);
                acks.extend(more.acks);
            }
            self.store_outgoing(outgoing, &queues).await;
            let acked = futures::future::join_all(
                acks.into_iter().map(|(position, ack)| async move { (position, ack.ack().await) }),
            )
            .await;
            for (position, acked) in acked {
                if let Err(e) = acked {
                    tracing::warn!(position, "claim not acknowledged: {e}");
                }
            }
        }
    }

    /// Puts webhook sends and holds in the outbox, in one write (off the runtime's threads: a
    /// flush can take a slow disk's while), for the release loop to queue. When the outbox
    /// cannot be written (the views' disk is full), queues the sends due now directly.
    async fn store_outgoing(&self, outgoing: Vec<Outgoing>, queues: &[mpsc::Sender<Job>]) {
        if outgoing.is_empty() {
            return;
        }
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            outgoing.iter().map(|o| self.held_entry(o.webhook, &o.notice, o.release)).collect();
        let views = self.views.clone();
        let written = tokio::task::spawn_blocking(move || views.delivery_put_all(&entries))
            .await
            .unwrap_or_else(|e| Err(crate::projector::views::ViewError::Storage(format!("outbox write failed: {e}"))));
        match written {
            Ok(()) => {
                for o in outgoing.iter().filter(|o| o.held) {
                    self.count_held(o.webhook, &o.notice, o.release);
                }
                self.held_changed.notify_waiters();
            }
            Err(e) => {
                tracing::error!("cannot store webhook sends in the outbox, keeping them in memory until it can: {e}");
                for Outgoing { webhook, notice, release, held } in outgoing {
                    if held {
                        let (key, value) = self.held_entry(webhook, &notice, release);
                        self.keep_unstored(key, value);
                        self.count_held(webhook, &notice, release);
                    } else if !enqueue(queues, Job { webhook, notice, claim_first: true, outbox: None }).await {
                        return;
                    }
                }
                self.held_changed.notify_waiters();
            }
        }
    }

    /// The alerts and notices one record carries, and the key their publication on the subjects
    /// is claimed under: one per record (its command id and position: unique even across a log
    /// started afresh), so a whistle summoning five departments costs one claim, not five.
    async fn notices_of(&self, record: &StoredRecord) -> (String, Vec<AlertNotice>) {
        match record.decode() {
            Ok(commit) => {
                let mut out = Vec::new();
                for event in &commit.events {
                    if event.body.alert_stage().is_some() {
                        self.wait_projected(record.position).await;
                        let view = self.alert_view(event, record.position).await;
                        let mut notice = AlertNotice::from_event(event, view.as_ref(), record.position);
                        // Only a whistle's township places it in a district; feedback is the city's.
                        let township =
                            notice.township.as_deref().filter(|_| notice.case_kind.as_deref() == Some("whistle"));
                        notice.supervisors = self.units.supervision.told(township, notice.level);
                        out.push(notice);
                    } else if let Some(notice) =
                        AlertNotice::report(event, record.position, self.report_link.as_deref())
                    {
                        out.push(notice);
                    } else if AlertNotice::may_notify_units(event) {
                        if let Some(view) = self.case_view(event, record.position).await {
                            let (office, coordinator) = (&self.units.office, &self.units.coordinator);
                            out.extend(AlertNotice::for_units(event, &view, record.position, office, coordinator));
                        }
                    }
                }
                (format!("subject/record/{}/{}", commit.command_id, record.position), out)
            }
            Err(reason) => {
                let notice = AlertNotice::dead_letter(record, &reason, self.clock.now());
                (format!("subject/{}", notice.alert_id), vec![notice])
            }
        }
    }

    /// The alert as the views record it; while the projector lags, as the case in the log
    /// shows it. Whether the alert is urgent (sent at once, not held for working hours) must
    /// not depend on how far the projector has got.
    async fn alert_view(&self, event: &crate::domain::Event, position: u64) -> Option<AlertView> {
        let mut backoff = Duration::from_millis(200);
        for _ in 0..ALERT_VIEW_ATTEMPTS_MAX {
            if let Ok(Some(view)) = self.views.alert(event.event_id) {
                return Some(view);
            }
            match self.case_from_log(event.case_id, position).await {
                Ok(case) => return alert_view_of(&case, event, position),
                Err(e) => tracing::warn!(case_id = %event.case_id, "cannot read the case of an alert: {e}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        None
    }

    /// The case of an event as the views show it once they have reached the event (as the log
    /// shows it while the projector lags).
    async fn case_view(&self, event: &crate::domain::Event, position: u64) -> Option<CaseView> {
        self.wait_projected(position).await;
        if let Ok(Some(view)) = self.views.case(event.case_id) {
            if view.last_position >= position {
                return Some(view);
            }
        }
        match self.case_from_log(event.case_id, position).await {
            Ok(view) => Some(view),
            Err(e) => {
                tracing::warn!(case_id = %event.case_id, "cannot read the case of a notice: {e}");
                None
            }
        }
    }

    /// A case as the log shows it up to `position` (for when the projector has not reached it),
    /// its clocks armed by the service's policy.
    async fn case_from_log(&self, case_id: uuid::Uuid, position: u64) -> Result<CaseView, crate::log::LogError> {
        let records = self.log.read_case(case_id).await?;
        let records: Vec<StoredRecord> = records.into_iter().filter(|r| r.position <= position).collect();
        let mut case = CaseView::new(case_id);
        case.state = crate::execute::replay(&records);
        case.rearm(&self.policy, &self.calendar.borrow());
        Ok(case)
    }

    async fn wait_projected(&self, position: u64) {
        let mut checkpoint = self.checkpoint.clone();
        let reached = tokio::time::timeout(PROJECTION_WAIT, checkpoint.wait_for(|c| *c >= position)).await;
        if reached.is_err() {
            tracing::warn!(position, "the projector has not reached this alert yet; reading its case from the log");
        }
    }

    /// Decides for each webhook that takes the notice whether it goes now or waits for working
    /// hours (and when to remind of it), adding each to `outgoing`.
    fn dispatch(&self, notice: AlertNotice, outgoing: &mut Vec<Outgoing>) {
        let now = self.clock.now();
        for (index, webhook) in self.config.webhooks.iter().enumerate() {
            if !webhook.wants(&notice) || self.was_sent(&webhook.name, &notice) {
                continue;
            }
            let release = if at_once(&notice) {
                now
            } else {
                release_at(now, &self.calendar.borrow(), self.config.working_hours)
            };
            outgoing.push(Outgoing { webhook: index, notice: notice.clone(), release, held: release > now });
        }
        self.schedule_reminder(&notice, now, outgoing);
    }

    /// For a summons (or another notice of a clock) whose non-urgent deadline falls outside
    /// working hours: holds a reminder for the last working hours before it, for every webhook
    /// that takes reminders of that unit. Dropped at its time if the clock has been answered.
    fn schedule_reminder(&self, notice: &AlertNotice, now: DateTime<Utc>, outgoing: &mut Vec<Outgoing>) {
        if notice.urgent || !ASKING_KINDS.contains(&notice.stage.as_str()) {
            return;
        }
        let Some(reminder) = notice.reminder_of() else { return };
        let Some(due) = notice.due_at else { return };
        let Some(at) = reminder_at(due, &self.calendar.borrow(), self.config.working_hours) else { return };
        if at <= now {
            return;
        }
        for (index, webhook) in self.config.webhooks.iter().enumerate() {
            if webhook.wants(&reminder) && !self.was_sent(&webhook.name, &reminder) {
                outgoing.push(Outgoing { webhook: index, notice: reminder.clone(), release: at, held: true });
            }
        }
    }

    /// Whether a held notice still asks for something: a summons, reminder or warning whose
    /// clock has been answered (or whose deadline has passed, for reminders and warnings) is
    /// not sent when its time comes.
    fn still_owed(&self, notice: &AlertNotice, now: DateTime<Utc>) -> bool {
        let reminding = matches!(notice.stage.as_str(), "reminder" | "warning");
        if !reminding && !ASKING_KINDS.contains(&notice.stage.as_str()) {
            return true;
        }
        let (Some(case_id), Some(clock), Some(due)) = (notice.case_id, notice.clock.as_ref(), notice.due_at) else {
            return true;
        };
        if reminding && due <= now {
            return false;
        }
        match self.views.case(case_id) {
            Ok(Some(view)) => view.armed.iter().any(|a| &a.clock == clock && a.due_at == due),
            // Unknown: send rather than lose it.
            _ => true,
        }
    }

    /// Counts a notice held for working hours, once it is stored.
    fn count_held(&self, webhook: usize, notice: &AlertNotice, release: DateTime<Utc>) {
        self.stats.held.fetch_add(1, Ordering::Relaxed);
        self.stats.count(&notice.stage, &self.config.webhooks[webhook].name, "held");
        tracing::info!(alert_id = %notice.alert_id, release = %release, "alert held for working hours");
    }

    /// Holds a notice that was held already until `release` (not counted twice).
    fn hold_again(&self, webhook: usize, notice: &AlertNotice, release: DateTime<Utc>) {
        let (key, value) = self.held_entry(webhook, notice, release);
        match self.views.delivery_put(&key, &value) {
            Ok(()) => {
                self.held_changed.notify_waiters();
                tracing::info!(alert_id = %notice.alert_id, release = %release, "alert held again for working hours");
            }
            Err(e) => {
                tracing::error!(
                    "cannot store alert {} held again, keeping it in memory until the outbox can: {e}",
                    notice.alert_id
                );
                self.keep_unstored(key, value);
            }
        }
    }

    /// Keeps a held notice the outbox could not store, for the release loop.
    fn keep_unstored(&self, key: Vec<u8>, value: Vec<u8>) {
        self.unstored.lock().unwrap_or_else(|p| p.into_inner()).insert(key, value);
    }

    /// Offers the held notices kept in memory to the outbox again; while it still cannot store
    /// them, queues those whose time has come from memory. Returns when to look again (`None`:
    /// nothing is kept in memory any more), or `Err` once delivery is stopping.
    async fn retry_unstored(
        &self,
        now: DateTime<Utc>,
        queues: &[mpsc::Sender<Job>],
    ) -> Result<Option<DateTime<Utc>>, ()> {
        let kept: Vec<(Vec<u8>, Vec<u8>)> = self
            .unstored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if kept.is_empty() {
            return Ok(None);
        }
        let views = self.views.clone();
        let entries = kept.clone();
        let stored = tokio::task::spawn_blocking(move || views.delivery_put_all(&entries)).await;
        if let Ok(Ok(())) = stored {
            let mut unstored = self.unstored.lock().unwrap_or_else(|p| p.into_inner());
            for (key, _) in &kept {
                unstored.remove(key);
            }
            tracing::info!(notices = kept.len(), "held notices kept in memory are stored in the outbox now");
            return Ok(None);
        }
        let mut next = Some(now + UNSTORED_RETRY);
        for (key, value) in kept {
            match self.release_if_due(&key, &value, now, queues) {
                Ok(Released::InFlight) => {}
                Ok(Released::Later(at)) => sooner(&mut next, at),
                Ok(Released::QueueFull) => sooner(&mut next, now + chrono::Duration::seconds(1)),
                // Keys this instance made are always readable.
                Ok(Released::Queued | Released::Done) | Err(_) => {
                    self.unstored.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                }
                Ok(Released::Stopping) => return Err(()),
            }
        }
        Ok(next)
    }

    /// The delivery entry that holds `notice` for `webhook` until `release` (the outbox's
    /// entries are the same, due at once); [`Delivery::release`] reads it back.
    fn held_entry(&self, webhook: usize, notice: &AlertNotice, release: DateTime<Utc>) -> (Vec<u8>, Vec<u8>) {
        let key = held_key(release, notice.position, notice.alert_id, &self.config.webhooks[webhook].name);
        (key, serde_json::to_vec(&(webhook, notice)).expect("notices serialise (plain data)"))
    }

    /// Sends held alerts when their working period starts.
    async fn release_loop(self: Arc<Self>, queues: Queues, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let changed = self.held_changed.notified();
            let now = self.clock.now();
            let Ok(mut next) = self.retry_unstored(now, &queues).await else { return };
            let mut after: Option<Vec<u8>> = None;
            'scan: loop {
                let page = self.views.delivery_scan(HELD_PREFIX, after.as_deref(), 64).unwrap_or_default();
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (key, value) in page {
                    match self.release_if_due(&key, &value, now, &queues) {
                        Err(e) => {
                            tracing::error!("dropping an unreadable held notice: {e}");
                            let _ = self.views.delivery_forget(&key);
                        }
                        Ok(Released::InFlight | Released::Queued) => {}
                        // Entries are in the order of their times: the rest are later still.
                        Ok(Released::Later(at)) => {
                            sooner(&mut next, at);
                            break 'scan;
                        }
                        // Tried again in a second; meanwhile that webhook sends what it has.
                        Ok(Released::QueueFull) => sooner(&mut next, now + chrono::Duration::seconds(1)),
                        // Not synced: an entry back after a crash is decided again, the same way
                        // (one held again is already stored under its new time).
                        Ok(Released::Done) => {
                            let _ = self.views.delivery_forget(&key);
                        }
                        Ok(Released::Stopping) => return,
                    }
                }
            }
            let sleep = crate::clock::sleep_until_if(self.clock.as_ref(), next);
            tokio::select! { _ = sleep => {}, _ = changed => {}, _ = stop.changed() => {} }
        }
    }

    /// What becomes of a held notice (or a send in the outbox) at `now`: left alone while it is
    /// queued or not yet due, released otherwise. `Err`: its key cannot be read.
    fn release_if_due(
        &self,
        key: &[u8],
        value: &[u8],
        now: DateTime<Utc>,
        queues: &[mpsc::Sender<Job>],
    ) -> Result<Released, String> {
        if self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).contains(key) {
            return Ok(Released::InFlight);
        }
        let release = held_release(key)?;
        if release > now {
            return Ok(Released::Later(release));
        }
        Ok(self.release(key, value, now, queues))
    }

    /// What becomes of a held notice (or a send in the outbox) whose time has come at `now`.
    fn release(&self, key: &[u8], value: &[u8], now: DateTime<Utc>, queues: &[mpsc::Sender<Job>]) -> Released {
        let held = serde_json::from_slice::<(usize, AlertNotice)>(value).ok();
        let Some((webhook, notice)) = held.filter(|(w, _)| *w < self.config.webhooks.len()) else {
            return Released::Done;
        };
        if !at_once(&notice) {
            if !self.still_owed(&notice, now) {
                self.stats.count(&notice.stage, &self.config.webhooks[webhook].name, "dropped");
                tracing::info!(alert_id = %notice.alert_id, stage = %notice.stage, "held notice no longer asks for anything: dropped");
                return Released::Done;
            }
            // Not a working moment now: a year published since the notice was held made it a
            // holiday, or the release time passed while nothing ran (a stop, a clock that
            // jumped). Hold it again for the working morning the live calendar gives.
            let due = release_at(now, &self.calendar.borrow(), self.config.working_hours);
            if due > now {
                self.hold_again(webhook, &notice, due);
                return Released::Done;
            }
        }
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_vec());
        let job = Job { webhook, notice, claim_first: true, outbox: Some(key.to_vec()) };
        match queues[webhook].try_send(job) {
            Ok(()) => Released::Queued,
            Err(full_or_closed) => {
                self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
                match full_or_closed {
                    mpsc::error::TrySendError::Full(_) => Released::QueueFull,
                    mpsc::error::TrySendError::Closed(_) => Released::Stopping,
                }
            }
        }
    }

    /// Sends one webhook's messages in order. Each is claimed just before it is sent (not a
    /// batch ahead), so a crash mid-queue leaves the rest unclaimed for another instance; a
    /// job's outbox entry goes once the job is done.
    async fn send_loop(
        self: Arc<Self>,
        index: usize,
        mut queue: mpsc::Receiver<Job>,
        queues: Vec<mpsc::WeakSender<Job>>,
    ) {
        let webhook = &self.config.webhooks[index];
        let mut pace = Pace::for_format(webhook.format);
        while let Some(job) = queue.recv().await {
            self.send_job(index, &job, &mut pace, &queues).await;
            if let Some(key) = &job.outbox {
                // Not synced: if the removal is lost in a crash, the job is queued again and
                // its claim (made) stops it going twice.
                if let Err(e) = self.views.delivery_forget(key) {
                    tracing::warn!("cannot clear a sent notice from the outbox: {e}");
                }
                self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
            }
        }
    }

    async fn send_job(&self, index: usize, job: &Job, pace: &mut Option<Pace>, queues: &[mpsc::WeakSender<Job>]) {
        let webhook = &self.config.webhooks[index];
        if job.claim_first && self.was_sent(&webhook.name, &job.notice) {
            return;
        }
        // Before the claim: a message claimed and then waiting out a robot's minute would be
        // lost if this instance stopped meanwhile.
        if let Some(pace) = pace.as_mut() {
            pace.until_free(&webhook.name).await;
        }
        // Another instance may have been handed the same record (a redelivery after a node
        // failure): only the one that claims the delivery sends it.
        if job.claim_first && !self.claim(&format!("webhook/{}/{}", webhook.name, job.notice.alert_id)).await {
            return;
        }
        if self.send_with_retries(webhook, &job.notice, pace).await {
            self.stats.webhook_sent.fetch_add(1, Ordering::Relaxed);
            self.stats.count(&job.notice.stage, &webhook.name, "sent");
            // Not synced: the claim is what stops a second send; this only spares asking for it.
            if let Err(e) = self.views.delivery_put_unflushed(&sent_key(&webhook.name, job.notice.alert_id), b"") {
                tracing::warn!("cannot record webhook delivery: {e}");
            }
            return;
        }
        self.stats.webhook_failed.fetch_add(1, Ordering::Relaxed);
        self.stats.count(&job.notice.stage, &webhook.name, "failed");
        tracing::error!(webhook = %webhook.name, alert_id = %job.notice.alert_id, "webhook gave up");
        // Operators hear of it on every other channel that takes operator notices (never about
        // an operator notice itself, so a broken channel cannot start a cascade).
        if job.notice.stage == "operator" {
            return;
        }
        let notice = AlertNotice::webhook_failed(&webhook.name, &job.notice, self.clock.now());
        self.publish_unclaimed(&notice).await;
        for (other, config) in self.config.webhooks.iter().enumerate() {
            if other == index || !config.wants(&notice) {
                continue;
            }
            let Some(queue) = queues.get(other).and_then(mpsc::WeakSender::upgrade) else { continue };
            // Not waited for: two webhooks failing at once, each waiting on the other's full
            // queue, would both stop sending.
            let job = Job { webhook: other, notice: notice.clone(), claim_first: false, outbox: None };
            if queue.try_send(job).is_err() {
                tracing::error!(webhook = %config.name, "queue full: operator notice not queued");
            }
        }
    }

    async fn send_with_retries(&self, webhook: &WebhookConfig, notice: &AlertNotice, pace: &mut Option<Pace>) -> bool {
        let body = notice.webhook_body(webhook.format);
        let mut backoff = WEBHOOK_BACKOFF_FIRST;
        let attempts = webhook.attempts.unwrap_or(WEBHOOK_ATTEMPTS_MAX).max(1);
        for attempt in 1..=attempts {
            if let Some(pace) = pace.as_mut() {
                pace.until_free(&webhook.name).await;
                pace.record(std::time::Instant::now());
            }
            let sent = self
                .http
                .post(&webhook.url)
                .header("Idempotency-Key", notice.alert_id.to_string())
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    // A group robot says no in the body of a 200.
                    let answer = r.bytes().await.unwrap_or_default();
                    match webhook.format.refusal(&answer) {
                        None => return true,
                        Some(why) => tracing::warn!(webhook = %webhook.name, attempt, "webhook refused: {why}"),
                    }
                }
                Ok(r) => tracing::warn!(webhook = %webhook.name, attempt, status = %r.status(), "webhook refused"),
                Err(e) => tracing::warn!(webhook = %webhook.name, attempt, "webhook failed: {e}"),
            }
            if attempt < attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(WEBHOOK_BACKOFF_MAX);
            }
        }
        false
    }

    /// Whether this instance is the one to deliver `key` (the log retries while it is briefly
    /// unavailable); when the claim cannot be made at all, nothing is sent (never twice).
    async fn claim(&self, key: &str) -> bool {
        self.claim_all(&[key.to_owned()]).await.first().copied().unwrap_or(false)
    }

    /// [`Delivery::claim`] for several keys, stored together: one answer per key, in order.
    async fn claim_all(&self, keys: &[String]) -> Vec<bool> {
        let mut won = vec![false; keys.len()];
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        let mut backoff = Duration::from_millis(500);
        for _ in 0..CLAIM_NOT_STORED_ATTEMPTS_MAX {
            if pending.is_empty() {
                return won;
            }
            let asked: Vec<String> = pending.iter().map(|&i| keys[i].clone()).collect();
            let answers = self.log.claim_deliveries(&asked).await;
            let mut again = Vec::new();
            for (&i, answer) in pending.iter().zip(answers) {
                match answer {
                    Ok(mine) => won[i] = mine,
                    // Nothing was stored (a full disk): trying again cannot send twice, and
                    // giving up would lose the alert.
                    Err(crate::log::LogError::NotStored(e)) => {
                        tracing::warn!(key = %keys[i], "delivery claim not stored, retrying: {e}");
                        again.push(i);
                    }
                    Err(e) => tracing::error!(key = %keys[i], "delivery not claimed, skipped: {e}"),
                }
            }
            pending = again;
            if !pending.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        for &i in &pending {
            tracing::error!(key = %keys[i], "delivery claim not stored after {CLAIM_NOT_STORED_ATTEMPTS_MAX} attempts, skipped");
        }
        won
    }

    fn was_sent(&self, webhook: &str, notice: &AlertNotice) -> bool {
        self.views.delivery_get(&sent_key(webhook, notice.alert_id)).ok().flatten().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_group_robot_s_twenty_first_message_in_a_minute_waits_for_the_minute() {
        let start = Instant::now();
        let mut pace = Pace::new(20, Duration::from_secs(60));
        for i in 0..20 {
            let at = start + Duration::from_secs(i);
            assert_eq!(pace.wait(at), None, "message {i}");
            pace.record(at);
        }
        let now = start + Duration::from_secs(30);
        assert_eq!(pace.wait(now), Some(Duration::from_secs(30)), "until the first is a minute old");
        assert_eq!(pace.wait(start + Duration::from_secs(60)), None, "the first has left the window");
        pace.record(start + Duration::from_secs(60));
        assert_eq!(pace.wait(start + Duration::from_secs(60)), Some(Duration::from_secs(1)));
        assert!(Pace::for_format(WebhookFormat::Generic).is_none());
        assert!(
            Pace::for_format(WebhookFormat::Wecom).is_some() && Pace::for_format(WebhookFormat::Dingtalk).is_some()
        );
    }

    #[test]
    fn a_group_robot_refuses_in_the_body_of_a_200() {
        let refused = br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#;
        assert_eq!(WebhookFormat::Wecom.refusal(refused).as_deref(), Some("errcode 45009: api freq out of limit"));
        let keyword = br#"{"errcode":310000,"errmsg":"keywords not in content"}"#;
        assert!(WebhookFormat::Dingtalk.refusal(keyword).unwrap().contains("310000"));
        assert_eq!(WebhookFormat::Wecom.refusal(br#"{"errcode":0,"errmsg":"ok"}"#), None);
        assert_eq!(WebhookFormat::Generic.refusal(refused), None, "a generic webhook answers with its status");
        assert_eq!(WebhookFormat::Dingtalk.refusal(b"ok"), None, "no errcode: taken");
    }
}
