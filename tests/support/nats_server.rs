//! A real `nats-server` for tests: 127.0.0.1, a port the server picks itself on first start
//! (read back from its log, so nothing can take it in between), a temp store, `sync_interval:
//! always`. It can be stopped (SIGTERM), killed (SIGKILL) and restarted on the same port and
//! store. Found as $WHISTLE_NATS_SERVER, on PATH, or where `scripts/test.sh` installs it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

pub struct NatsServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    extra: String,
}

pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WHISTLE_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/nats/bin/nats-server");
    if local.exists() {
        return local;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    panic!("nats-server not found: ./scripts/test.sh installs it into .tools/nats, or set WHISTLE_NATS_SERVER");
}

/// A port nothing listens on right now (it was free a moment ago): for tests of what happens
/// when a server is not there, and for programs that cannot pick their own port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener.local_addr().expect("bound address").port()
}

/// Distinguishes servers started by one test process.
static SERVERS_STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl NatsServer {
    pub fn start() -> Self {
        NatsServer::start_prepared("", |_| {})
    }

    /// Starts with more configuration appended (e.g. an include), after `prepare` has put any
    /// files it names into the server's folder.
    pub fn start_prepared(extra: &str, prepare: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(dir.path());
        let mut server = NatsServer { port: 0, dir, child: None, starts: 0, extra: extra.to_owned() };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn config(&self) -> PathBuf {
        let store = self.dir.path().join("store");
        // -1: the server picks a free port (first start); later starts reuse the one it picked.
        let port = if self.port == 0 { "-1".to_owned() } else { self.port.to_string() };
        let name = format!(
            "whistle-test-{}-{}",
            std::process::id(),
            SERVERS_STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let text = format!(
            "listen: 127.0.0.1:{port}\nserver_name: {name}\n\
             jetstream {{\n  store_dir: \"{store}\"\n  # acknowledged writes reach the disk before the ack\n  sync_interval: always\n}}\n",
            store = store.display()
        );
        let path = self.dir.path().join("nats.conf");
        std::fs::write(&path, text + &self.extra).expect("write nats config");
        path
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("nats-{}.log", self.starts))
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "server already running");
        self.starts += 1;
        let config = self.config();
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if self.port == 0 {
                self.port = listening_port(&log).unwrap_or(0);
            }
            let listening = self.port != 0 && TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if listening && log.contains("Server is ready") {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nats-server exited with {status} while starting:\n{log}");
            }
            assert!(Instant::now() < deadline, "nats-server not ready after {READY_TIMEOUT:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn signal(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
            child.wait().expect("reap nats-server");
        }
    }

    /// Graceful stop (SIGTERM), waiting for exit.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Hard kill (SIGKILL): no chance to flush anything not yet synced.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// Starts again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn start_again(&mut self) {
        self.launch();
    }
}

/// The port in "Listening for client connections on 127.0.0.1:PORT".
fn listening_port(log: &str) -> Option<u16> {
    let rest = log.split("Listening for client connections on 127.0.0.1:").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
