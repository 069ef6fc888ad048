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

pub struct BenchOptions {
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
}

impl Sizes {
    fn of(quick: bool) -> Sizes {
        if quick {
            Sizes {
                http: Duration::from_secs(5),
                armed: 10_000,
                due: 50,
                due_window: Duration::from_secs(8),
                scale_small: 2_000,
                scale_large: 20_000,
            }
        } else {
            Sizes {
                http: Duration::from_secs(20),
                armed: 1_000_000,
                due: 300,
                due_window: Duration::from_secs(30),
                scale_small: 10_000,
                scale_large: 1_000_000,
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
    // Commands first: on NATS the stream is shared by every section, and a service started
    // later would first have to project everything appended before it.
    keep(&mut rows, commands("embedded", None, sizes.http).await?, &options.json)?;
    if let Some(nats) = &options.nats {
        keep(&mut rows, commands("nats", Some(nats), sizes.http).await?, &options.json)?;
    }
    keep(&mut rows, projection_and_rebuild("embedded", None, options.events).await?, &options.json)?;
    if let Some(nats) = &options.nats {
        keep(&mut rows, projection_and_rebuild("nats", Some(nats), options.events).await?, &options.json)?;
    }
    keep(&mut rows, alert_latency(&sizes).await?, &options.json)?;
    keep(&mut rows, scale(&sizes).await?, &options.json)?;
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
    // The whole log is drained and projected: on NATS it may hold earlier sections' records.
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

    say(&format!("{backend}: projecting {records} records into empty views"));
    let views = Views::open(scratch.0.join("views")).map_err(|e| e.to_string())?;
    let mut projector =
        Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).map_err(|e| e.to_string())?;
    let projected = Instant::now();
    let totals = projector.catch_up(log.as_ref(), false, |_, _| {}).await.map_err(|e| e.to_string())?;
    views.flush().await.map_err(|e| e.to_string())?;
    let projection_seconds = projected.elapsed().as_secs_f64();
    let projection_rate = totals.records as f64 / projection_seconds;

    say(&format!("{backend}: rebuild"));
    let rebuilt = Instant::now();
    crate::projector::rebuild(views, log.as_ref(), SlaPolicy::default(), Calendar::official(), |_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    let rebuild_seconds = rebuilt.elapsed().as_secs_f64();
    drop(log);
    drop(projector);
    handle.close().await.map_err(|e| e.to_string())?;
    Ok(vec![
        Row::new("fill", backend, format!("{stored} events appended by {FILL_LANES} lanes"), fill_rate, "events/s"),
        Row::new(
            "projection",
            backend,
            format!("{records} records ({} events)", totals.events),
            projection_rate,
            "records/s",
        )
        .against(drain_rate),
        Row::new("rebuild", backend, format!("{records} records"), rebuild_seconds, "s"),
    ])
}

// ----------------------------------------------------------------------------- commands

async fn commands(backend: &'static str, nats: Option<&NatsOptions>, duration: Duration) -> Result<Vec<Row>, String> {
    let scratch = Scratch::new(&format!("commands-{backend}"))?;
    let port = free_port()?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let options = crate::serve::ServeOptions {
        data: scratch.0.join("data"),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        nats: nats.cloned(),
        config: None,
        policy: SlaPolicy::default(),
        clock: Arc::new(SystemClock),
        stop: Some(stop),
        cache_bytes: crate::projector::views::VIEWS_CACHE_BYTES_DEFAULT,
    };
    let server = tokio::spawn(crate::serve::serve(options));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().map_err(|e| e.to_string())?;
    wait_ready(&http, &base).await?;
    let tokens = crate::demo::read_tokens(&crate::serve::DataFiles::of(&scratch.0.join("data")).demo_tokens)?;
    let township = tokens.get("东坝镇").cloned().ok_or("no township token")?;
    let department = tokens.get("住建局").cloned().ok_or("no department token")?;
    say(&format!("{backend}: {CLIENTS} HTTP clients for {duration:?}"));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + duration;
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|c| {
        let (http, base, township, department, done, failed) =
            (http.clone(), base.clone(), township.clone(), department.clone(), done.clone(), failed.clone());
        async move {
            let mut n = 0u64;
            while tokio::time::Instant::now() < deadline {
                n += 1;
                let body = serde_json::json!({ "title": format!("压测 {c}-{n}"), "description": "基准测试", "departments": ["住建局"] });
                let raised = http.post(format!("{base}/v1/whistles")).bearer_auth(&township).json(&body).send().await;
                let Ok(raised) = raised else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if !raised.status().is_success() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                done.fetch_add(1, Ordering::Relaxed);
                let id = raised.json::<serde_json::Value>().await.ok().and_then(|v| v["case"]["id"].as_str().map(str::to_owned));
                let Some(id) = id else { continue };
                match http.post(format!("{base}/v1/whistles/{id}/ack")).bearer_auth(&department).send().await {
                    Ok(r) if r.status().is_success() => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    futures::future::join_all(clients).await;
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = server.await;
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
    let measure = format!("raise + 报到 over HTTP, {CLIENTS} clients, {} failed", failed.load(Ordering::Relaxed));
    Ok(vec![Row::new("commands", backend, measure, rate, "commands/s").against(baseline)])
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

async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<(), String> {
    for _ in 0..6_000 {
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
    let due = &due;
    let lanes = (0..FILL_LANES).map(|lane| async move {
        for i in (lane..count).step_by(FILL_LANES) {
            let at = due(i) - chrono::Duration::hours(24);
            let case_id = Uuid::now_v7();
            let cmd = Command::new(
                Uuid::now_v7(),
                case_id,
                Actor::new(Role::Township, "东坝镇"),
                raise_body(&format!("事项 {i}")),
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

async fn alert_latency(sizes: &Sizes) -> Result<Vec<Row>, String> {
    let scratch = Scratch::new("alerts")?;
    let handle = open(&scratch.0, None).await?;
    let log = handle.log();
    let far = Utc::now() + chrono::Duration::days(3);
    say(&format!("alerts: arming {} clocks that are not due", sizes.armed));
    raise_open(log.as_ref(), sizes.armed, |i| far + chrono::Duration::seconds(i as i64)).await?;
    let views = Views::open(scratch.0.join("views")).map_err(|e| e.to_string())?;
    let node = Node::start(log.clone(), views.clone(), Arc::new(SystemClock), NodeConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let caught = Instant::now();
    node.caught_up_to(log.head().await.map_err(|e| e.to_string())?).await;
    say(&format!(
        "alerts: {} armed clocks projected in {:.1}s",
        views.armed_count().unwrap_or(0),
        caught.elapsed().as_secs_f64()
    ));

    say("alerts: idle CPU for 3s");
    let cpu_before = cpu_seconds();
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cpu = (cpu_seconds() - cpu_before) / idle_started.elapsed().as_secs_f64() * 100.0;

    let mut alerts = log.watch_alerts("whistle.alert.breach.").await.map_err(|e| e.to_string())?;
    let first_due = Utc::now() + chrono::Duration::seconds(3);
    let step = sizes.due_window / sizes.due as u32;
    say(&format!("alerts: {} deadlines passing over {:?}", sizes.due, sizes.due_window));
    raise_open(log.as_ref(), sizes.due, |i| {
        first_due + chrono::Duration::from_std(step * i as u32).unwrap_or_default()
    })
    .await?;
    let mut latencies = Vec::with_capacity(sizes.due);
    let deadline = tokio::time::Instant::now() + sizes.due_window + Duration::from_secs(30);
    while latencies.len() < sizes.due {
        let Ok(Some((_, payload))) = tokio::time::timeout_at(deadline, alerts.next()).await else { break };
        let received = SystemClock.now();
        let notice: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        let due = notice["due_at"].as_str().and_then(|d| DateTime::parse_from_rfc3339(d).ok());
        if let Some(due) = due {
            latencies.push((received - due.with_timezone(&Utc)).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    node.stop().await;
    drop(log);
    handle.close().await.map_err(|e| e.to_string())?;
    latencies.sort_by(f64::total_cmp);
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    let label = format!("{} armed clocks, {} of {} alerts arrived", sizes.armed, latencies.len(), sizes.due);
    Ok(vec![
        Row::new("alert latency", "embedded", format!("p50, {label}"), pct(0.5), "ms"),
        Row::new("alert latency", "embedded", "p99", pct(0.99), "ms"),
        Row::new("alert latency", "embedded", "max", latencies.last().copied().unwrap_or(f64::NAN), "ms"),
        Row::new("idle CPU", "embedded", format!("{} armed clocks, none due", sizes.armed), idle_cpu, "% of a core"),
    ])
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
