//! Crash safety of the projector, as a user would meet it: `whistle project --follow` is
//! killed with SIGKILL at random points while it projects a few thousand events record by
//! record, restarted, killed again; the views it leaves equal a fresh `whistle rebuild`, byte
//! for byte (by digest). Killed while it folds the whole log into empty views, it leaves them
//! empty or whole, never in between.

#[path = "support/nats_server.rs"]
mod nats_server;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use whistle::projector::views::Views;
use whistle::service::LogHandle;

const EVENTS: usize = 6_000;
/// Events projected before the rest is appended: fewer records than a fold takes
/// ([`whistle::projector::FOLD_RECORDS_MIN`]), so that the rest is projected record by record.
const FIRST_EVENTS: usize = 500;
const KILLS: usize = 6;

fn whistle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_whistle")).args(args).output().expect("whistle runs")
}

fn spawn_follow(data: &Path, nats: &[&str]) -> Child {
    let mut args = vec!["project", "--follow", "--data", data.to_str().unwrap()];
    args.extend_from_slice(nats);
    Command::new(env!("CARGO_BIN_EXE_whistle")).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

fn sigkill(child: &mut Child) {
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    child.wait().unwrap();
}

fn checkpoint(data: &Path) -> u64 {
    Views::open(data.join("views")).unwrap().checkpoint().unwrap()
}

fn digest(data: &Path) -> String {
    let out = whistle(&["views", "digest", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn start() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-03-02T08:00:00+08:00").unwrap().with_timezone(&chrono::Utc)
}

/// The first part of the traffic: too few records to fold, so that the views are projected
/// record by record from there on.
async fn first_part(log: &dyn whistle::log::EventLog, seed: u64, lanes: usize) {
    whistle::sim::fill(log, seed, lanes, FIRST_EVENTS, start()).await.unwrap();
    assert!(log.head().await.unwrap() < whistle::projector::FOLD_RECORDS_MIN);
}

/// The rest, which the kills interrupt; returns the log's head.
async fn second_part(log: &dyn whistle::log::EventLog, seed: u64, lanes: usize) -> u64 {
    whistle::sim::fill(log, seed + 1, lanes, EVENTS - FIRST_EVENTS, start() + chrono::Duration::days(1)).await.unwrap();
    log.head().await.unwrap()
}

fn project_once(data: &Path, nats: &[&str]) {
    let mut args = vec!["project", "--data", data.to_str().unwrap()];
    args.extend_from_slice(nats);
    let out = whistle(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(checkpoint(data) > 0);
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Kills and restarts the follower until it has caught up, then compares with a rebuild.
fn kill_restart_compare(data: &Path, fresh: &Path, head: u64, nats: &[&str]) {
    // WHISTLE_SEED replays a run; every run prints the seed it used.
    let mut seed = std::env::var("WHISTLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(std::process::id() as u64 ^ 0x5DEE_CE66);
    eprintln!("kill schedule seed: {seed} (set WHISTLE_SEED={seed} to replay)");
    let mut interrupted = Vec::new();
    for _ in 0..KILLS {
        next(&mut seed);
        let mut child = spawn_follow(data, nats);
        std::thread::sleep(Duration::from_millis(150 + seed % 900));
        sigkill(&mut child);
        interrupted.push(checkpoint(data));
    }
    assert!(
        interrupted.iter().any(|c| *c > 0 && *c < head),
        "no kill landed mid-projection (checkpoints {interrupted:?} of {head}); the test proved nothing"
    );
    let mut args = vec!["project", "--data", data.to_str().unwrap()];
    args.extend_from_slice(nats);
    let out = whistle(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint(data), head);

    // Killed while folding the whole log into empty views: they are empty or whole.
    let mut folds = Vec::new();
    for _ in 0..KILLS {
        let mut child = spawn_follow(fresh, nats);
        std::thread::sleep(Duration::from_millis(20 + next(&mut seed) % 400));
        sigkill(&mut child);
        let reached = checkpoint(fresh);
        assert!(reached == 0 || reached == head, "a fold killed at checkpoint {reached} of {head}");
        if reached == head {
            assert_eq!(digest(fresh), digest(data), "a fold equals projecting record by record");
            std::fs::remove_dir_all(fresh.join("views")).unwrap();
        }
        folds.push(reached);
    }
    eprintln!("folds killed at {folds:?}");

    let mut args = vec!["rebuild", "--data", fresh.to_str().unwrap()];
    args.extend_from_slice(nats);
    let out = whistle(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&format!("rebuild: {head}/{head} records (100%)")), "progress shown: {stderr}");
    let rebuilt = stdout.trim().rsplit(' ').next().unwrap().to_owned();
    assert_eq!(rebuilt, digest(fresh), "rebuild prints the digest of what it built");
    assert_eq!(digest(data), rebuilt, "views after {KILLS} SIGKILLs (at checkpoints {interrupted:?}) equal a rebuild");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_projector_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let handle = LogHandle::open(&data, None).await.unwrap();
    first_part(handle.log().as_ref(), 7, 8).await;
    handle.close().await.unwrap();
    project_once(&data, &[]);
    let handle = LogHandle::open(&data, None).await.unwrap();
    let head = second_part(handle.log().as_ref(), 7, 8).await;
    handle.close().await.unwrap();
    // The rebuild reads a copy of the same log.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(fresh.join("log")).unwrap();
    for entry in walk(&data.join("log")) {
        let target = fresh.join("log").join(entry.strip_prefix(data.join("log")).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, target).unwrap();
    }
    let checked = data.clone();
    tokio::task::spawn_blocking(move || kill_restart_compare(&data, &fresh, head, &[])).await.unwrap();
    // `whistle check` reads every record and recounts what the views' counters count.
    let check = whistle(&["check", "--data", checked.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_projector_survives_sigkill() {
    let server = nats_server::NatsServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let options = whistle::log::nats::NatsOptions::new(url.clone());
    let handle = LogHandle::open(dir.path(), Some(&options)).await.unwrap();
    let data = dir.path().join("data");
    first_part(handle.log().as_ref(), 11, 16).await;
    project_once(&data, &["--nats", &url]);
    let head = second_part(handle.log().as_ref(), 11, 16).await;
    let fresh = dir.path().join("fresh");
    tokio::task::spawn_blocking(move || kill_restart_compare(&data, &fresh, head, &["--nats", &url])).await.unwrap();
    drop(server);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
