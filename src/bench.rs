//! `whistle bench`: measures the service against raw baselines on the same machine, in the
//! same run, and prints a table (and writes JSON). Numbers, never assertions.
//!
//! Sections: projection (projector vs. a raw drain of the same log), rebuild, commands over
//! HTTP with 64 clients (vs. raw appends: sled batches with one flush, or JetStream publishes
//! with as many in flight), alert latency with many armed clocks (and idle CPU), and scale
//! (projection rate with few vs. many open cases, peak RSS).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::domain::command::{Command, CommandBody};
use crate::domain::event::{Actor, Role, Urgency};
use crate::domain::{decide, Calendar, SlaPolicy, State};
use crate::log::nats::NatsOptions;
use crate::log::{Commit, EventLog};
use crate::projector::views::Views;
use crate::projector::Projector;
use crate::service::{LogHandle, Node, NodeConfig};

/// Concurrent HTTP clients, and appends in flight for the raw baselines.
pub const CLIENTS: usize = 64;
/// Concurrent lanes used to pre-fill logs.
const FILL_LANES: usize = 64;
/// The alert section raises its deadlines this long before the first falls due. Each raise
/// also sends its department a notice, claimed on the claim stream that then carries the
/// breaches: with 3 s, and each claim its own synced write, those claims sometimes outlasted the
/// lead and the first breaches waited behind them (p99 up to 350 ms, in runs of both back ends).
/// Delivery now claims a burst together, but on NATS each claim is still its own fsynced
/// publish. The section measures breaches, not that backlog (docs/performance.md).
const DUE_LEAD: Duration = Duration::from_secs(15);

/// The bench's sections, to run some of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Commands over HTTP, cached and uncached.
    Commands,
    /// Fill, projection, rebuild and the views' bytes.
    Projection,
    /// A lone service's RSS, alert latency and idle CPU.
    Alerts,
    /// Projection with few vs. many open cases.
    Scale,
    /// The per-case export of many cases: a lone service's peak RSS while it writes it.
    Export,
}

pub struct BenchOptions {
    /// Sections to run; all when empty.
    pub sections: Vec<Section>,
    pub quick: bool,
    /// Events for the projection and rebuild sections.
    pub events: usize,
    pub nats: Option<NatsOptions>,
    pub json: PathBuf,
}

struct Sizes {
    http: Duration,
    armed: usize,
    due: usize,
    due_window: Duration,
    scale_small: usize,
    scale_large: usize,
    export_cases: usize,
}

impl Sizes {
    fn of(quick: bool) -> Sizes {
        if quick {
            Sizes {
                http: Duration::from_secs(5),
                armed: 10_000,
                due: 200,
                due_window: Duration::from_secs(8),
                scale_small: 2_000,
                scale_large: 20_000,
                export_cases: 10_000,
            }
        } else {
            Sizes {
                http: Duration::from_secs(20),
                armed: 1_000_000,
                due: 1_000,
                due_window: Duration::from_secs(40),
                scale_small: 10_000,
                scale_large: 1_000_000,
                export_cases: 100_000,
            }
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub section: &'static str,
    pub backend: &'static str,
    pub measure: String,
    pub value: f64,
    pub unit: &'static str,
    pub baseline: Option<f64>,
    pub ratio: Option<f64>,
}

impl Row {
    fn new(
        section: &'static str,
        backend: &'static str,
        measure: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Row {
        Row { section, backend, measure: measure.into(), value, unit, baseline: None, ratio: None }
    }

    fn against(mut self, baseline: f64) -> Row {
        self.baseline = Some(baseline);
        self.ratio = (baseline > 0.0).then(|| self.value / baseline);
        self
    }
}

/// A scratch folder removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Scratch, String> {
        let path = std::env::temp_dir().join(format!("whistle-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn say(text: &str) {
    eprintln!("bench: {} {text}", Utc::now().format("%H:%M:%S"));
}

pub async fn run(options: BenchOptions) -> Result<Vec<Row>, String> {
    let sizes = Sizes::of(options.quick);
    let mut rows = Vec::new();
    print_header();
    let runs = |section| options.sections.is_empty() || options.sections.contains(&section);
    if let Some(nats) = &options.nats {
        check_nats_server(nats).await?;
    }
    if runs(Section::Commands) {
        keep(&mut rows, commands("embedded", None, sizes.http).await?, &options.json)?;
        if let Some(nats) = fresh_streams(&options.nats).await? {
            keep(&mut rows, commands("nats", Some(nats), sizes.http).await?, &options.json)?;
        }
    }
    if runs(Section::Projection) {
        keep(&mut rows, projection_and_rebuild("embedded", None, options.events).await?, &options.json)?;
        if let Some(nats) = fresh_streams(&options.nats).await? {
            keep(&mut rows, projection_and_rebuild("nats", Some(nats), options.events).await?, &options.json)?;
        }
    }
    if runs(Section::Alerts) {
        keep(&mut rows, alert_latency("embedded", None, &sizes).await?, &options.json)?;
        if let Some(nats) = fresh_streams(&options.nats).await? {
            keep(&mut rows, alert_latency("nats", Some(nats), &sizes).await?, &options.json)?;
        }
    }
    if runs(Section::Scale) {
        keep(&mut rows, scale(&sizes).await?, &options.json)?;
    }
    if runs(Section::Export) {
        keep(&mut rows, export(&sizes).await?, &options.json)?;
    }
    eprintln!("bench: wrote {}", options.json.display());
    Ok(rows)
}

/// Prints a section's rows and rewrites the JSON, so a long run keeps what it measured.
fn keep(rows: &mut Vec<Row>, new: Vec<Row>, json: &Path) -> Result<(), String> {
    for row in &new {
        print_row(row);
    }
    rows.extend(new);
    let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
    std::fs::write(json, text).map_err(|e| format!("cannot write {}: {e}", json.display()))
}

/// The bench removes this service's streams between its sections: it runs only on a server
/// that holds none with messages (never on one in use).
pub async fn check_nats_server(nats: &NatsOptions) -> Result<(), String> {
    let used = crate::log::nats::streams_in_use(nats).await.map_err(|e| e.to_string())?;
    if used.is_empty() {
        return Ok(());
    }
    let used: Vec<String> =
        used.iter().map(|(name, n)| format!("{name} ({n} message{})", if *n == 1 { "" } else { "s" })).collect();
    Err(format!(
        "the bench needs a NATS server without this service's streams, and {} holds {}: start one on a fresh store",
        nats.url,
        used.join(", ")
    ))
}

/// The NATS server, if there is one, with the streams of the sections before removed: each
/// section starts from an empty server, as on the embedded log (a fresh folder each), instead of
/// on the records, open clocks and delivery consumer earlier sections left.
async fn fresh_streams(nats: &Option<NatsOptions>) -> Result<Option<&NatsOptions>, String> {
    let Some(options) = nats else { return Ok(None) };
    crate::log::nats::remove_streams(options).await.map_err(|e| e.to_string())?;
    Ok(Some(options))
}

async fn open(dir: &Path, nats: Option<&NatsOptions>) -> Result<LogHandle, String> {
    LogHandle::open(dir, nats).await.map_err(|e| e.to_string())
}

// ----------------------------------------------------------------------------- projection

async fn projection_and_rebuild(
    backend: &'static str,
    nats: Option<&NatsOptions>,
    events: usize,
) -> Result<Vec<Row>, String> {
    let scratch = Scratch::new(&format!("projection-{backend}"))?;
    let handle = open(&scratch.0, nats).await?;
    let log = handle.log();
    say(&format!("{backend}: appending {events} realistic events"));
    let filled = Instant::now();
    let stored = crate::sim::fill(log.as_ref(), 7, FILL_LANES, events, Utc::now()).await.map_err(|e| e.to_string())?;
    let fill_rate = stored as f64 / filled.elapsed().as_secs_f64();
    let records = log.head().await.map_err(|e| e.to_string())?;

    say(&format!("{backend}: raw drain of {records} records"));
    let drained = Instant::now();
    let mut stream = log.subscribe(1).await.map_err(|e| e.to_string())?;
    let mut seen = 0u64;
    while seen < records {
        match stream.next().await {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    drop(stream);
    let drain_rate = seen as f64 / drained.elapsed().as_secs_f64();

    say(&format!("{backend}: projecting {records} records record by record (a backlog behind a checkpoint)"));
    let one_by_one = Views::open(scratch.0.join("views-one-by-one")).map_err(|e| e.to_string())?;
    let mut projector =
        Projector::new(one_by_one.clone(), SlaPolicy::default(), Calendar::official()).map_err(|e| e.to_string())?;
    let first = log.subscribe(1).await.map_err(|e| e.to_string())?.next().await;
    let first = first.ok_or("the log is empty")?.map_err(|e| e.to_string())?;
    let stepped = Instant::now();
    // Views past their first record are never folded: the rest is projected in batches.
    projector.apply_batch(&[first], false).map_err(|e| e.to_string())?;
    let stepped_totals = projector.catch_up(log.as_ref(), false, |_, _| {}).await.map_err(|e| e.to_string())?;
    one_by_one.flush().await.map_err(|e| e.to_string())?;
    let stepped_rate = stepped_totals.records as f64 / stepped.elapsed().as_secs_f64();
    let stepped_mb = one_by_one.size_on_disk().map_err(|e| e.to_string())? as f64 / 1e6;
    let stepped_digest = one_by_one.digest().map_err(|e| e.to_string())?;
    drop(projector);
    drop(one_by_one);
    std::fs::remove_dir_all(scratch.0.join("views-one-by-one")).map_err(|e| e.to_string())?;

    say(&format!("{backend}: folding {records} records into empty views"));
    let views = Views::open(scratch.0.join("views")).map_err(|e| e.to_string())?;
    let mut projector =
        Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).map_err(|e| e.to_string())?;
    let projected = Instant::now();
    let totals = projector.catch_up(log.as_ref(), false, |_, _| {}).await.map_err(|e| e.to_string())?;
    views.flush().await.map_err(|e| e.to_string())?;
    let projection_seconds = projected.elapsed().as_secs_f64();
    let projection_rate = totals.records as f64 / projection_seconds;
    if views.digest().map_err(|e| e.to_string())? != stepped_digest {
        return Err(format!("{backend}: the fold and projecting record by record gave different views"));
    }

    let mb = |bytes: u64| bytes as f64 / 1e6;
    let log_mb = mb(log.stored_bytes().await.map_err(|e| e.to_string())?.unwrap_or(0));
    let projected_mb = mb(views.size_on_disk().map_err(|e| e.to_string())?);

    say(&format!("{backend}: rebuild"));
    let rebuilt = Instant::now();
    crate::projector::rebuild(views.clone(), log.as_ref(), SlaPolicy::default(), Calendar::official(), |_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    let rebuild_seconds = rebuilt.elapsed().as_secs_f64();
    let rebuilt_mb = mb(views.size_on_disk().map_err(|e| e.to_string())?);
    say(&format!("{backend}: rebuild again"));
    crate::projector::rebuild(views.clone(), log.as_ref(), SlaPolicy::default(), Calendar::official(), |_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    let rebuilt_again_mb = mb(views.size_on_disk().map_err(|e| e.to_string())?);
    drop(log);
    drop(projector);
    handle.close().await.map_err(|e| e.to_string())?;
    Ok(vec![
        Row::new("fill", backend, format!("{stored} events appended by {FILL_LANES} lanes"), fill_rate, "events/s"),
        Row::new(
            "projection",
            backend,
            format!("{records} records ({} events) into empty views (a fold); baseline: ordered drain", totals.events),
            projection_rate,
            "records/s",
        )
        .against(drain_rate),
        Row::new(
            "projection",
            backend,
            format!("{records} records record by record (a backlog behind a checkpoint); baseline: ordered drain"),
            stepped_rate,
            "records/s",
        )
        .against(drain_rate),
        Row::new(
            "rebuild",
            backend,
            format!("{records} records in {rebuild_seconds:.1}s; baseline: ordered drain"),
            records as f64 / rebuild_seconds,
            "records/s",
        )
        .against(drain_rate),
        Row::new(
            "views",
            backend,
            "on disk after projecting record by record; baseline: the log's bytes",
            stepped_mb,
            "MB",
        )
        .against(log_mb),
        Row::new(
            "views",
            backend,
            "on disk after a fold into empty views; baseline: the log's bytes",
            projected_mb,
            "MB",
        )
        .against(log_mb),
        Row::new("views", backend, "on disk after a rebuild; baseline: the log's bytes", rebuilt_mb, "MB")
            .against(log_mb),
        Row::new("views", backend, "on disk after a second rebuild; baseline: after the first", rebuilt_again_mb, "MB")
            .against(rebuilt_mb),
    ])
}

// ----------------------------------------------------------------------------- commands

async fn commands(backend: &'static str, nats: Option<&NatsOptions>, duration: Duration) -> Result<Vec<Row>, String> {
    let scratch = Scratch::new(&format!("commands-{backend}"))?;
    let data = scratch.0.join("data");
    let http = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().map_err(|e| e.to_string())?;
    let server = InProcessServe::start(&data, nats, &http).await?;
    let tokens = crate::demo::read_tokens(&crate::serve::DataFiles::of(&data).demo_tokens)?;
    let token = |unit: &str| tokens.get(unit).cloned().ok_or(format!("no token for {unit}"));
    let (township, housing, urban) = (token("东坝镇")?, token("住建局")?, token("城管局")?);
    say(&format!("{backend}: {CLIENTS} HTTP clients for {duration:?}, raise + 报到 (cases the service just wrote)"));
    let raised = std::sync::Mutex::new(Vec::new());
    let base = &server.base;
    let cached = Tally::default();
    let (cached_rate, cached_failed) = drive(duration, &cached, |c, tally, deadline| {
        let (http, township, housing, raised) = (&http, &township, &housing, &raised);
        async move {
            let mut n = 0u64;
            while tokio::time::Instant::now() < deadline {
                n += 1;
                let body = serde_json::json!({ "title": format!("压测 {c}-{n}"), "description": "基准测试", "departments": ["住建局", "城管局"] });
                let answer = http.post(format!("{base}/v1/whistles")).bearer_auth(township).json(&body).send().await;
                let Some(answer) = tally.count(answer) else { continue };
                let id = answer.json::<serde_json::Value>().await.ok().and_then(|v| v["case"]["id"].as_str().map(str::to_owned));
                let Some(id) = id else { continue };
                tally.count(http.post(format!("{base}/v1/whistles/{id}/ack")).bearer_auth(housing).send().await);
                raised.lock().expect("raised cases").push(id);
            }
        }
    })
    .await;
    server.stop().await;

    // A new service on the same data knows none of these cases: every 报到 reads its case.
    let server = InProcessServe::start(&data, nats, &http).await?;
    let cases = raised.into_inner().expect("raised cases");
    say(&format!("{backend}: {CLIENTS} HTTP clients, 报到 on {} cases written before a restart", cases.len()));
    let next = AtomicU64::new(0);
    let base = &server.base;
    let uncached = Tally::default();
    let (uncached_rate, uncached_failed) = drive(duration, &uncached, |_, tally, deadline| {
        let (http, urban, cases, next) = (&http, &urban, &cases, &next);
        async move {
            while tokio::time::Instant::now() < deadline {
                let Some(id) = cases.get(next.fetch_add(1, Ordering::Relaxed) as usize) else { break };
                tally.count(http.post(format!("{base}/v1/whistles/{id}/ack")).bearer_auth(urban).send().await);
            }
        }
    })
    .await;
    server.stop().await;

    let payload = sample_commit_bytes();
    say(&format!("{backend}: raw baseline, {payload}-byte records, {CLIENTS} in flight"));
    let baseline = match nats {
        Some(options) => crate::log::nats::baseline_publish_rate(options, CLIENTS, payload, duration)
            .await
            .map_err(|e| e.to_string())?,
        None => {
            let path = scratch.0.join("baseline");
            tokio::task::spawn_blocking(move || {
                crate::log::embedded::baseline_write_rate(&path, CLIENTS, payload, duration)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        }
    };
    Ok(vec![
        Row::new(
            "commands",
            backend,
            format!("raise + 报到 over HTTP, {CLIENTS} clients, cached cases, {cached_failed} failed"),
            cached_rate,
            "commands/s",
        )
        .against(baseline),
        Row::new(
            "commands",
            backend,
            format!("报到 over HTTP, {CLIENTS} clients, cases written before a restart, {uncached_failed} failed"),
            uncached_rate,
            "commands/s",
        )
        .against(baseline),
    ])
}

/// Answers that succeeded (2xx) and those that did not.
#[derive(Default)]
struct Tally {
    done: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    /// Counts an answer; the answer when it succeeded.
    fn count(&self, answer: reqwest::Result<reqwest::Response>) -> Option<reqwest::Response> {
        match answer {
            Ok(r) if r.status().is_success() => {
                self.done.fetch_add(1, Ordering::Relaxed);
                Some(r)
            }
            _ => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Runs [`CLIENTS`] clients (each given its number, `tally` and the deadline) until `duration`
/// has passed or they stop; returns successful answers per second and failures.
async fn drive<'a, F, Fut>(duration: Duration, tally: &'a Tally, client: F) -> (f64, u64)
where
    F: Fn(usize, &'a Tally, tokio::time::Instant) -> Fut,
    Fut: std::future::Future<Output = ()> + 'a,
{
    let deadline = tokio::time::Instant::now() + duration;
    let started = Instant::now();
    futures::future::join_all((0..CLIENTS).map(|c| client(c, tally, deadline))).await;
    let rate = tally.done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    (rate, tally.failed.load(Ordering::Relaxed))
}

/// `whistle serve` inside the bench process, on a free port.
struct InProcessServe {
    base: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl InProcessServe {
    async fn start(data: &Path, nats: Option<&NatsOptions>, http: &reqwest::Client) -> Result<InProcessServe, String> {
        let port = free_port()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let options = crate::serve::ServeOptions {
            data: data.to_path_buf(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            nats: nats.cloned(),
            config: None,
            policy: SlaPolicy::default(),
            clock: Arc::new(SystemClock),
            stop: Some(stopped),
            cache_bytes: crate::projector::views::VIEWS_CACHE_BYTES_DEFAULT,
        };
        let mut task = tokio::spawn(async move { crate::serve::serve(options).await.map_err(|e| e.to_string()) });
        let base = format!("http://127.0.0.1:{port}");
        tokio::select! {
            ready = wait_ready(http, &base) => ready?,
            ended = &mut task => return Err(format!("whistle serve ended before it was ready: {}", match ended {
                Ok(Ok(())) => "without an error".to_owned(),
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            })),
        }
        Ok(InProcessServe { base, stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn sample_commit_bytes() -> usize {
    let case_id = Uuid::now_v7();
    let cmd = Command::new(Uuid::now_v7(), case_id, Actor::new(Role::Township, "东坝镇"), raise_body("压测 1-1"));
    let events = decide(&State::Empty, &cmd, Utc::now()).unwrap_or_default();
    Commit { command_id: cmd.command_id, case_id, events }.encode().map_or(300, |b| b.len())
}

fn raise_body(title: &str) -> CommandBody {
    CommandBody::RaiseWhistle {
        title: title.into(),
        description: "基准测试".into(),
        departments: vec!["住建局".into()],
        category: None,
        location: None,
        urgency: Urgency::Normal,
    }
}

/// Waits for `/readyz` (up to an hour: a service may first project millions of records).
async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<(), String> {
    for _ in 0..72_000 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{base} did not become ready"))
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

// ----------------------------------------------------------------------------- open cases

/// Raises `count` whistles whose 报到 clocks fall due at `due(i)` (events are dated 24 h
/// earlier), from `FILL_LANES` concurrent lanes.
async fn raise_open(
    log: &dyn EventLog,
    count: usize,
    due: impl Fn(usize) -> DateTime<Utc> + Sync,
) -> Result<(), String> {
    raise_open_with(log, count, &["住建局"], Urgency::Normal, due).await
}

/// [`raise_open`], summoning `departments`, of `urgency`.
async fn raise_open_with(
    log: &dyn EventLog,
    count: usize,
    departments: &[&str],
    urgency: Urgency,
    due: impl Fn(usize) -> DateTime<Utc> + Sync,
) -> Result<(), String> {
    let due = &due;
    let lanes = (0..FILL_LANES).map(|lane| async move {
        for i in (lane..count).step_by(FILL_LANES) {
            let at = due(i) - chrono::Duration::hours(24);
            let case_id = Uuid::now_v7();
            let cmd = Command::new(
                Uuid::now_v7(),
                case_id,
                Actor::new(Role::Township, "东坝镇"),
                CommandBody::RaiseWhistle {
                    title: format!("事项 {i}"),
                    description: "基准测试".into(),
                    departments: departments.iter().map(|d| (*d).to_owned()).collect(),
                    category: None,
                    location: None,
                    urgency,
                },
            );
            let events = decide(&State::Empty, &cmd, at).map_err(|e| e.to_string())?;
            let commit = Commit { command_id: cmd.command_id, case_id, events };
            log.append(&commit, 0).await.map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    });
    futures::future::join_all(lanes).await.into_iter().collect()
}

// ----------------------------------------------------------------------------- alert latency

async fn alert_latency(backend: &'static str, nats: Option<&NatsOptions>, sizes: &Sizes) -> Result<Vec<Row>, String> {
    let scratch = Scratch::new(&format!("alerts-{backend}"))?;
    let handle = open(&scratch.0, nats).await?;
    let far = Utc::now() + chrono::Duration::days(3);
    say(&format!("alerts {backend}: arming {} clocks that are not due", sizes.armed));
    raise_open(handle.log().as_ref(), sizes.armed, |i| far + chrono::Duration::seconds(i as i64)).await?;
    let log_bytes = handle.log().stored_bytes().await.map_err(|e| e.to_string())?.unwrap_or(0);
    // The embedded log is one process's: the lone service takes it while it runs.
    handle.close().await.map_err(|e| e.to_string())?;
    let mut rows = lone_serve(backend, &scratch.0, nats, sizes.armed, log_bytes).await?;
    let handle = open(&scratch.0, nats).await?;
    let log = handle.log();
    let views = Views::open(scratch.0.join("views")).map_err(|e| e.to_string())?;
    let (hook_url, mut hooked, hook_server) = webhook_receiver().await?;
    let alerts = crate::alerts::AlertConfig {
        webhooks: vec![crate::alerts::WebhookConfig {
            name: "bench".into(),
            url: hook_url,
            format: crate::alerts::WebhookFormat::Generic,
            stages: vec!["breach".into()],
            units: vec![],
            attempts: None,
        }],
        ..Default::default()
    };
    let node =
        Node::start(log.clone(), views.clone(), Arc::new(SystemClock), NodeConfig { alerts, ..NodeConfig::default() })
            .await
            .map_err(|e| e.to_string())?;
    let caught = Instant::now();
    node.caught_up_to(log.head().await.map_err(|e| e.to_string())?).await;
    say(&format!(
        "alerts {backend}: {} armed clocks projected in {:.1}s",
        views.armed_count().unwrap_or(0),
        caught.elapsed().as_secs_f64()
    ));

    // What the lone serve and the arming left unwritten (gigabytes of views and log) is written
    // back first, so that the window's syncs do not share the disk with that writeback.
    let settled = Instant::now();
    let folder = scratch.0.clone();
    tokio::task::spawn_blocking(move || write_back(&folder)).await.map_err(|e| e.to_string())??;
    say(&format!(
        "alerts {backend}: earlier writes on the disk in {:.1}s; idle CPU for 3s",
        settled.elapsed().as_secs_f64()
    ));
    let cpu_before = cpu_seconds();
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cpu = (cpu_seconds() - cpu_before) / idle_started.elapsed().as_secs_f64() * 100.0;

    let mut alerts = log.watch_alerts("whistle.alert.breach.").await.map_err(|e| e.to_string())?;
    let first_due = Utc::now() + chrono::Duration::from_std(DUE_LEAD).unwrap_or_default();
    let step = sizes.due_window / sizes.due as u32;
    say(&format!("alerts {backend}: {} deadlines passing over {:?}", sizes.due, sizes.due_window));
    // Urgent, so that their breaches go to the webhook at any hour, not at the next working
    // morning; the subject takes every breach at once either way.
    raise_open_with(log.as_ref(), sizes.due, &["住建局"], Urgency::Urgent, |i| {
        first_due + chrono::Duration::from_std(step * i as u32).unwrap_or_default()
    })
    .await?;
    let mut latencies = Vec::with_capacity(sizes.due);
    let deadline = tokio::time::Instant::now() + sizes.due_window + Duration::from_secs(30);
    while latencies.len() < sizes.due {
        let Ok(Some((_, payload))) = tokio::time::timeout_at(deadline, alerts.next()).await else { break };
        let received = SystemClock.now();
        let notice: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        latencies.extend(late_ms(&notice, received));
    }
    let mut webhook_latencies = Vec::with_capacity(sizes.due);
    while webhook_latencies.len() < sizes.due {
        let Ok(Some((received, notice))) = tokio::time::timeout_at(deadline, hooked.recv()).await else { break };
        webhook_latencies.extend(late_ms(&notice, received));
    }
    node.stop().await;
    hook_server.abort();
    drop(log);
    handle.close().await.map_err(|e| e.to_string())?;
    webhook_latencies.sort_by(f64::total_cmp);
    say(&format!("alerts {backend}: the disk's own sync latency for {:?}", sizes.due_window / 2));
    let probe = scratch.0.join("sync-probe");
    let window = sizes.due_window / 2;
    let syncs = tokio::task::spawn_blocking(move || sync_latencies(&probe, window))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("probing the disk: {e}"))?;
    latencies.sort_by(f64::total_cmp);
    let label = format!("{} armed clocks, {} of {} alerts arrived", sizes.armed, latencies.len(), sizes.due);
    rows.extend(latency_rows("alert latency", backend, &label, &latencies));
    let label = format!(
        "deadline to a generic webhook on 127.0.0.1, {} of {} breaches arrived",
        webhook_latencies.len(),
        sizes.due
    );
    rows.extend(latency_rows("alert webhook", backend, &label, &webhook_latencies));
    rows.extend([
        Row::new("idle CPU", backend, format!("{} armed clocks, none due", sizes.armed), idle_cpu, "% of a core"),
        Row::new(
            "disk sync",
            backend,
            format!(
                "p99 of {} fdatasyncs of 512 bytes beside the data, one per {SYNC_PROBE_PERIOD:?}, right after (p50 {:.2}, max {:.1} ms)",
                syncs.len(),
                percentile(&syncs, 0.5),
                syncs.last().copied().unwrap_or(f64::NAN)
            ),
            percentile(&syncs, 0.99),
            "ms",
        ),
    ]);
    Ok(rows)
}

/// Breach notices as a webhook (on 127.0.0.1) receives them: its URL, each body with when it
/// arrived, and the server's task.
type Hooked = tokio::sync::mpsc::UnboundedReceiver<(DateTime<Utc>, serde_json::Value)>;
async fn webhook_receiver() -> Result<(String, Hooked, tokio::task::JoinHandle<()>), String> {
    let (arrived, hooked) = tokio::sync::mpsc::unbounded_channel();
    let hook = move |axum::Json(body): axum::Json<serde_json::Value>| {
        let arrived = arrived.clone();
        async move {
            let _ = arrived.send((SystemClock.now(), body));
            axum::http::StatusCode::OK
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(hook));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}/hook", listener.local_addr().map_err(|e| e.to_string())?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, hooked, server))
}

/// How often the disk probe syncs.
const SYNC_PROBE_PERIOD: Duration = Duration::from_millis(20);

/// Writes back every dirty page of the file system that holds `folder` (`syncfs`).
fn write_back(folder: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(folder).map_err(|e| format!("cannot open {}: {e}", folder.display()))?;
    // SAFETY: syncfs takes a file descriptor this function holds open.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(format!("syncfs {}: {}", folder.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The latencies (ms, sorted) of small appends each followed by `fdatasync`, in a file at
/// `path`, for `window`: what every acknowledged command and every delivery claim waits for on
/// this disk, so the alert latency's tail can be read against the disk's own.
fn sync_latencies(path: &Path, window: Duration) -> std::io::Result<Vec<f64>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(path)?;
    let started = Instant::now();
    let mut out = Vec::new();
    let mut offset = 0;
    while started.elapsed() < window {
        let at = Instant::now();
        file.write_all_at(&[0x5a; 512], offset)?;
        file.sync_data()?;
        out.push(at.elapsed().as_secs_f64() * 1000.0);
        offset += 512;
        std::thread::sleep(SYNC_PROBE_PERIOD);
    }
    drop(file);
    std::fs::remove_file(path)?;
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// How late (ms) a notice received at `received` came after its deadline, if it names one.
fn late_ms(notice: &serde_json::Value, received: DateTime<Utc>) -> Option<f64> {
    let due = DateTime::parse_from_rfc3339(notice["due_at"].as_str()?).ok()?;
    Some((received - due.with_timezone(&Utc)).num_microseconds().unwrap_or(0) as f64 / 1000.0)
}

/// p50 (with `label`), p99 and max of sorted latencies.
fn latency_rows(section: &'static str, backend: &'static str, label: &str, sorted: &[f64]) -> [Row; 3] {
    [
        Row::new(section, backend, format!("p50, {label}"), percentile(sorted, 0.5), "ms"),
        Row::new(section, backend, format!("p99 of {} samples", sorted.len()), percentile(sorted, 0.99), "ms"),
        Row::new(section, backend, "max", sorted.last().copied().unwrap_or(f64::NAN), "ms"),
    ]
}

/// The `p` quantile of sorted values (NaN when there are none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

/// A lone `whistle serve` (its own process) projecting a log of `armed` open cases (`log_bytes`
/// on disk; on NATS the whole stream it projects) from empty views: how long until ready, its
/// RSS then, and the views' bytes on disk against the log's.
async fn lone_serve(
    backend: &'static str,
    data: &Path,
    nats: Option<&NatsOptions>,
    armed: usize,
    log_bytes: u64,
) -> Result<Vec<Row>, String> {
    say(&format!("lone serve {backend}: projecting {armed} open cases in its own process"));
    let started = Instant::now();
    let serve = LoneServe::start(data, nats).await?;
    let ready_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, peak) = serve.memory();
    serve.stop().await;
    let views_mb = folder_bytes(&data.join("views")) as f64 / 1e6;
    let cache_mib = crate::projector::views::VIEWS_CACHE_BYTES_DEFAULT / (1024 * 1024);
    Ok(vec![
        Row::new(
            "lone serve",
            backend,
            format!("RSS once ready, {armed} open cases with armed clocks (peak {peak:.0} MiB; --cache {cache_mib})"),
            rss,
            "MiB",
        ),
        Row::new("lone serve", backend, format!("from empty views to ready, {armed} records"), ready_seconds, "s"),
        Row::new("lone serve", backend, "views on disk once ready; baseline: the log's bytes", views_mb, "MB")
            .against(log_bytes as f64 / 1e6),
    ])
}

/// `whistle serve` in its own process, on a free port, ready.
struct LoneServe {
    child: tokio::process::Child,
    pid: u32,
    base: String,
}

impl LoneServe {
    async fn start(data: &Path, nats: Option<&NatsOptions>) -> Result<LoneServe, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let port = free_port()?;
        let mut command = tokio::process::Command::new(exe);
        command.arg("serve").arg("--data").arg(data).arg("--listen").arg(format!("127.0.0.1:{port}"));
        if let Some(options) = nats {
            command.arg("--nats").arg(&options.url);
        }
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| format!("cannot start whistle serve: {e}"))?;
        let pid = child.id().ok_or("whistle serve exited at once")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        tokio::select! {
            ready = wait_ready(&http, &base) => ready?,
            exited = child.wait() => return Err(format!("whistle serve ended before it was ready: {exited:?}")),
        }
        Ok(LoneServe { child, pid, base })
    }

    /// `VmRSS` and `VmHWM` (the peak), in MiB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }

    async fn stop(mut self) {
        // SAFETY: sends SIGTERM to the child this process started and still owns.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
    }
}

// ----------------------------------------------------------------------------- export

/// The per-case export of `export_cases` whistles (two departments each) from a lone service
/// that has projected them already (restarted, so its peak RSS is the export's, not the
/// projection's): peak RSS while writing Excel and CSV, rows per second, bytes.
async fn export(sizes: &Sizes) -> Result<Vec<Row>, String> {
    let scratch = Scratch::new("export")?;
    let data = scratch.0.join("data");
    let cases = sizes.export_cases;
    say(&format!("export: {cases} whistles of two departments"));
    {
        let handle = open(&data, None).await?;
        let due = Utc::now() + chrono::Duration::hours(24);
        raise_open_with(handle.log().as_ref(), cases, &["住建局", "城管局"], Urgency::Normal, |_| due).await?;
        handle.close().await.map_err(|e| e.to_string())?;
    }
    LoneServe::start(&data, None).await?.stop().await;
    let tokens = crate::demo::read_tokens(&crate::serve::DataFiles::of(&data).demo_tokens)?;
    let supervisor = tokens.get("区委督查室").cloned().ok_or("no supervisor token")?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3600)).build().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    // A fresh process per format: the peak is the export's alone.
    for format in ["xlsx", "csv"] {
        let serve = LoneServe::start(&data, None).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss_before, _) = serve.memory();
        let started = Instant::now();
        let mut answer = http
            .get(format!("{}/v1/cases/export?format={format}", serve.base))
            .bearer_auth(&supervisor)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("export answered {}", answer.status()));
        }
        let mut bytes = 0usize;
        while let Some(chunk) = answer.chunk().await.map_err(|e| e.to_string())? {
            bytes += chunk.len();
        }
        let seconds = started.elapsed().as_secs_f64();
        let (_, peak) = serve.memory();
        let parts = (cases * 2) as f64;
        rows.extend([
            Row::new(
                "export",
                "embedded",
                format!("RSS the {format} export of {cases} cases added to the service's (peak minus before; target < 100 MB)"),
                peak - rss_before,
                "MiB",
            ),
            Row::new(
                "export",
                "embedded",
                format!("peak RSS of a lone serve through the {format} export of {cases} cases (RSS before: {rss_before:.0} MiB)"),
                peak,
                "MiB",
            ),
            Row::new("export", "embedded", format!("{format} export rows ({:.1} MB)", bytes as f64 / 1e6), parts / seconds, "rows/s"),
        ]);
        serve.stop().await;
    }
    Ok(rows)
}

/// Bytes of the files under a folder.
fn folder_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => folder_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

// ----------------------------------------------------------------------------- scale

async fn scale(sizes: &Sizes) -> Result<Vec<Row>, String> {
    let mut rates = Vec::new();
    for open_cases in [sizes.scale_small, sizes.scale_large] {
        let scratch = Scratch::new(&format!("scale-{open_cases}"))?;
        let handle = open(&scratch.0, None).await?;
        let log = handle.log();
        say(&format!("scale: {open_cases} open cases"));
        let far = Utc::now() + chrono::Duration::days(3);
        raise_open(log.as_ref(), open_cases, |i| far + chrono::Duration::seconds(i as i64)).await?;
        let views = Views::open(scratch.0.join("views")).map_err(|e| e.to_string())?;
        let mut projector =
            Projector::new(views, SlaPolicy::default(), Calendar::official()).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let totals = projector.catch_up(log.as_ref(), false, |_, _| {}).await.map_err(|e| e.to_string())?;
        rates.push((open_cases, totals.records as f64 / started.elapsed().as_secs_f64()));
        drop(projector);
        drop(log);
        handle.close().await.map_err(|e| e.to_string())?;
    }
    let (small, small_rate) = rates[0];
    let (large, large_rate) = rates[1];
    Ok(vec![
        Row::new("scale", "embedded", format!("projection with {small} open cases"), small_rate, "records/s"),
        Row::new(
            "scale",
            "embedded",
            format!("projection with {large} open cases (ratio: vs {small})"),
            large_rate,
            "records/s",
        )
        .against(small_rate),
        Row::new("scale", "embedded", "peak RSS of the whole run", peak_rss_mib(), "MiB"),
    ])
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn print_header() {
    println!(
        "{:<14} {:<9} {:>14} {:<12} {:>14} {:>7}  measure",
        "section", "backend", "value", "unit", "baseline", "ratio"
    );
}

fn print_row(r: &Row) {
    let baseline = r.baseline.map_or(String::new(), |b| format!("{b:.1}"));
    let ratio = r.ratio.map_or(String::new(), |x| format!("{x:.2}"));
    println!(
        "{:<14} {:<9} {:>14.1} {:<12} {:>14} {:>7}  {}",
        r.section, r.backend, r.value, r.unit, baseline, ratio, r.measure
    );
}
