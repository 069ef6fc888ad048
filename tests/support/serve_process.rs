//! `whistle serve` as a child process: start on a port the system picks (read back from the
//! service's own announcement, so no other process can take it in between), find demo tokens,
//! stop with SIGTERM or SIGKILL, start again on the same port and data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ServeProcess {
    child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    args: Vec<String>,
    /// A program the service runs under (e.g. strace and its options), if any.
    wrapper: Vec<String>,
    starts: u32,
}

impl ServeProcess {
    /// Starts `whistle serve --data DATA` plus `extra` arguments, and waits until it listens.
    pub fn start(data: &Path, extra: &[&str]) -> ServeProcess {
        ServeProcess::start_under(&[], data, extra)
    }

    /// Starts the service under `wrapper` (a program and its arguments, the service's command
    /// line appended).
    pub fn start_under(wrapper: &[&str], data: &Path, extra: &[&str]) -> ServeProcess {
        let mut serve = ServeProcess {
            child: None,
            port: 0,
            data: data.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        serve.launch();
        serve
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join(format!("serve-{}.log", self.starts))).unwrap_or_default()
    }

    fn launch(&mut self) {
        self.starts += 1;
        std::fs::create_dir_all(&self.data).unwrap();
        let log = std::fs::File::create(self.data.join(format!("serve-{}.log", self.starts))).unwrap();
        let program = env!("CARGO_BIN_EXE_whistle").to_owned();
        let mut command = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = command
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--data"])
            .arg(&self.data)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.port == 0 {
            self.port = announced_port(&self.log()).unwrap_or(0);
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("serve exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "serve did not announce its port: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("serve exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "serve did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The demo token of a unit (written on first start).
    pub fn token(&self, unit: &str) -> String {
        let text = std::fs::read_to_string(self.data.join("demo-tokens.txt")).unwrap();
        text.lines()
            .find_map(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                (parts.len() == 3 && parts[1] == unit).then(|| parts[2].to_owned())
            })
            .unwrap_or_else(|| panic!("no demo token for {unit}"))
    }

    fn signal(&mut self, signal: i32) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        child.wait().ok()
    }

    /// The pid of the child process (of the wrapper, when there is one).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `limit` for the child to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.launch();
    }
}

/// The port in "whistle serving on http://127.0.0.1:PORT/".
fn announced_port(log: &str) -> Option<u16> {
    let rest = log.split("whistle serving on http://127.0.0.1:").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

impl Drop for ServeProcess {
    /// A failed test must not leave a server running.
    fn drop(&mut self) {
        self.kill();
    }
}

/// Adds a token for `unit` in `role` to a data folder's token file (as `whistle token add`
/// does), for a service started with `--config`, which writes no demo tokens.
pub fn add_token(data: &Path, config: &Path, role: &str, unit: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_whistle"))
        .args(["token", "add", "--role", role, "--unit", unit, "--data"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Sends a request and reads its JSON answer (the test fails on a transport error or a body
/// that is not JSON).
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}
