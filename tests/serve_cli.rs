//! `whistle serve`, the CLI client and `whistle demo`, run as a user would run them.

#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/serve_process.rs"]
mod serve_process;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serve_process::ServeProcess;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_whistle"))
}

/// A `whistle serve` process on a free port with its own data folder.
struct Serve {
    process: ServeProcess,
    url: String,
    data: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let data = tempfile::tempdir().unwrap();
        let process = ServeProcess::start(data.path(), &[]);
        Serve { url: process.url(), process, data }
    }

    fn token(&self, unit: &str) -> String {
        self.process.token(unit)
    }

    fn client(&self, unit: &str, args: &[&str]) -> Output {
        bin().args(args).env("WHISTLE_URL", &self.url).env("WHISTLE_TOKEN", self.token(unit)).output().unwrap()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        self.process.stop().expect("serve was running")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn first_start_writes_a_demo_org_and_private_tokens_then_stops_cleanly_on_sigterm() {
    let serve = Serve::start();
    let data = serve.data.path().to_path_buf();
    let log = serve.process.log();
    assert!(log.contains("first start: wrote a demo organisation to"), "{log}");
    assert!(log.contains("demo-tokens.txt (mode 0600)"));
    use std::os::unix::fs::PermissionsExt;
    for file in ["demo-tokens.txt", "tokens.toml", "secret"] {
        let mode = std::fs::metadata(data.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let hashes = std::fs::read_to_string(data.join("tokens.toml")).unwrap();
    assert!(!hashes.contains(&serve.token("东坝镇")), "only hashes are stored");
    let status = serve.stop();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

/// Regression: with any live alert stream open (every supervisor dashboard holds one), SIGTERM
/// left the service running until the client went away, so every restart ended in SIGKILL.
#[test]
fn sigterm_stops_the_service_within_5_s_while_dashboards_hold_live_streams() {
    use std::io::{Read, Write};
    let mut serve = Serve::start();
    for n in 0..5 {
        let out = serve.client(
            "东坝镇",
            &["raise", "--title", &format!("关停 {n}"), "--description", "d", "--department", "住建局"],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let token = serve.token("区委督查室");
    let streams: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", serve.process.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let request = format!(
                "GET /v1/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            );
            s.write_all(request.as_bytes()).unwrap();
            let mut head = [0u8; 12];
            s.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200", "the stream opened");
            s
        })
        .collect();
    let pid = serve.process.pid().unwrap() as i32;
    // SAFETY: kill(2) on the service this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = serve.process.wait_exit(Duration::from_secs(5)).expect("exited within 5 s of SIGTERM");
    assert!(status.success(), "exit 0, got {status}: {}", serve.process.log());
    drop(streams);
    let data = serve.data.path().to_str().unwrap().to_owned();
    let digest = bin().args(["views", "digest", "--data", &data]).output().unwrap();
    let rebuilt = bin().args(["rebuild", "--data", &data]).output().unwrap();
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    let digest = stdout(&digest).trim().to_owned();
    assert!(
        stdout(&rebuilt).contains(&format!("views digest {digest}")),
        "views equal a rebuild: {digest} vs {}",
        stdout(&rebuilt)
    );
}

#[test]
fn the_cli_client_runs_a_whistle_and_reports_server_errors() {
    let serve = Serve::start();
    let out =
        serve.client("东坝镇", &["raise", "--title", "河道垃圾", "--description", "需协调", "--department", "住建局"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout(&out);
    let id = line.split_whitespace().next().unwrap().to_owned();
    assert!(line.contains("whistle") && line.contains("open") && line.contains("河道垃圾"), "{line}");
    let out = serve.client("住建局", &["ack", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = serve.client("住建局", &["ack", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("department 住建局 has already reported in (409)"));
    let out = serve.client("交通局", &["ack", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(404)"));
    let out = serve.client("住建局", &["handled", &id, "--summary", "已清理"]);
    assert!(stdout(&out).contains("resolved"), "{}", stdout(&out));
    let out = serve.client("东坝镇", &["confirm", &id, "--satisfaction", "satisfied", "--rate", "住建局"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEPARTMENT=RATING"));
    let out = serve.client("东坝镇", &["confirm", &id, "--satisfaction", "satisfied", "--rate", "交通局=unsatisfied"]);
    assert_eq!(out.status.code(), Some(2), "交通局 has no handled part");
    let out = serve
        .client("东坝镇", &["confirm", &id, "--satisfaction", "satisfied", "--rate", "住建局=basically_satisfied"]);
    assert!(stdout(&out).contains("confirmed"), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    let out = serve.client("区委督查室", &["cases", "list", "--kind", "whistle"]);
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
    let out = serve.client("区委督查室", &["cases", "show", &id]);
    assert!(stdout(&out).contains("whistle_confirmed"));
    let out = serve.client(
        "东坝镇",
        &["feedback", "submit", "--topic", "apps_chat_groups", "--body", "打卡群太多", "--anonymous"],
    );
    assert!(stdout(&out).contains("follow-up code (shown once"), "{}", stdout(&out));
    let fid = stdout(&out).split_whitespace().next().unwrap().to_owned();
    let out = serve.client("市减负办", &["feedback", "reply", &fid, "--body", "已收到"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = serve.client("区委督查室", &["stats", "--csv"]);
    assert!(stdout(&out).starts_with("\u{feff}部门,案件数,不计入,响应率"), "{}", stdout(&out));
    let out = serve.client("区委督查室", &["alerts", "list", "--open"]);
    assert!(out.status.success());
    let out =
        bin().args(["cases", "list"]).env("WHISTLE_URL", &serve.url).env("WHISTLE_TOKEN", "wt_wrong").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown token (401)"));
    assert!(serve.stop().success());
}

#[test]
fn token_add_prints_a_working_token_once_and_refuses_unknown_units() {
    let serve = Serve::start();
    let data = serve.data.path();
    let out =
        bin().args(["token", "add", "--role", "department", "--unit", "城管局", "--data"]).arg(data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = stdout(&out).trim().to_owned();
    assert!(token.starts_with("wt_"));
    let me =
        bin().args(["cases", "list"]).env("WHISTLE_URL", &serve.url).env("WHISTLE_TOKEN", &token).output().unwrap();
    assert!(me.status.success(), "a token added while serving works: {}", String::from_utf8_lossy(&me.stderr));
    let out = bin()
        .args(["token", "add", "--role", "department", "--unit", "不存在局", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["token", "add", "--role", "mayor", "--unit", "x", "--data"]).arg(data).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    serve.stop();
}

#[test]
fn serve_with_nats_down_is_one_clear_error_line() {
    let data = tempfile::tempdir().unwrap();
    let port = nats_server::free_port();
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--nats", &format!("nats://127.0.0.1:{port}"), "--data"])
        .arg(data.path())
        .env("WHISTLE_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> =
        err.lines().filter(|l| !l.starts_with("first start") && !l.trim_start().starts_with("and one token")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with(&format!("error: event log: cannot reach NATS at nats://127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn the_demo_plays_its_morning_and_the_missed_clock_alerts() {
    let port = nats_server::free_port();
    let out = bin()
        .args(["demo", "--exit", "--ack-clock", "4s", "--listen", &format!("127.0.0.1:{port}")])
        .env("WHISTLE_LOG", "warn")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "东坝镇 吹哨",
        "住建局 报到",
        "市减负办 回应",
        "督查提醒【超时】交通局 「报到」 主干道路灯损坏",
        "交通局 的页面收到 【召集报到】西湖街道吹哨「主干道路灯损坏」，请交通局于",
        "交通局 的页面收到【催办】「报到」将于",
        "Dashboard: http://127.0.0.1:",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert!(!Path::new(&std::env::temp_dir().join(format!("whistle-demo-{}", out.status.code().unwrap_or(0)))).exists());
}

/// Regression: on the embedded log `whistle calendar publish` failed while the service ran
/// (the log is locked), and `calendar due` only knew the shipped years.
#[test]
fn a_calendar_is_published_through_the_running_service_and_due_counts_it() {
    let serve = Serve::start();
    let data = serve.data.path().to_str().unwrap().to_owned();
    let file = serve.data.path().join("2027.toml");
    std::fs::write(
        &file,
        "year = 2027\nnotice = \"国务院办公厅关于2027年部分节假日安排的通知\"\n\
         holidays = [ { name = \"元旦\", from = \"2027-01-01\", to = \"2027-01-03\" } ]\nworkdays = []\n",
    )
    .unwrap();
    let file = file.to_str().unwrap().to_owned();
    let due = |data: Option<&str>| {
        let mut args = vec!["calendar", "due", "--from", "2026-12-31T10:00:00+08:00", "--working-days", "1"];
        if let Some(d) = data {
            args.extend(["--data", d]);
        }
        let out = bin().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        stdout(&out).trim().to_owned()
    };
    assert_eq!(due(Some(&data)), "2027-01-02T00:00:00+08:00 provisional", "before: the weekday rule");

    let direct =
        bin().args(["calendar", "publish", &file, "--data", &data]).env_remove("WHISTLE_URL").output().unwrap();
    assert_eq!(direct.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&direct.stderr).contains("publish through it with --url"), "{direct:?}");
    let out = bin()
        .args(["calendar", "publish", &file])
        .env("WHISTLE_URL", &serve.url)
        .env("WHISTLE_TOKEN", serve.token("管理员"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("published the 2027 calendar through"), "{}", stdout(&out));
    assert_eq!(due(Some(&data)), "2027-01-05T00:00:00+08:00", "元旦 2027 counted, no longer provisional");
    assert_eq!(due(None), "2027-01-02T00:00:00+08:00 provisional", "without --data: shipped years only");
    assert!(serve.stop().success());
}
