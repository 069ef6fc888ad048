//! `whistle serve` as a child process on a free port: start, find demo tokens, stop with
//! SIGTERM or SIGKILL, start again on the same data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ServeProcess {
    child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    args: Vec<String>,
    starts: u32,
}

impl ServeProcess {
    /// Starts `whistle serve --data DATA` plus `extra` arguments, and waits until it listens.
    pub fn start(data: &Path, extra: &[&str]) -> ServeProcess {
        let mut serve = ServeProcess {
            child: None,
            port: super::nats_server::free_port(),
            data: data.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
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
        let child = Command::new(env!("CARGO_BIN_EXE_whistle"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--data"])
            .arg(&self.data)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
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

impl Drop for ServeProcess {
    /// A failed test must not leave a server running.
    fn drop(&mut self) {
        self.kill();
    }
}
