//! Command-line interface: argument parsing and the commands. `main.rs` is the glue.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::domain::calendar::{Calendar, WORKING_DAYS_MAX};
use crate::log::nats::NatsOptions;
use crate::projector::views::VIEWS_CACHE_MIB_DEFAULT;
use crate::service::DEFAULT_DATA_DIR;

#[derive(Parser, Debug)]
#[command(name = "whistle", version, about = "吹哨报到 and 基层意见直通车: cases, SLA clocks and supervisor alerts")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service: HTTP API, projector, watchdog and alert delivery.
    Serve(ServeArgs),
    /// Manage bearer tokens (stored only as hashes).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The organisation file: check it, and see who is told what.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Working-day calendar (official schedules, Beijing time).
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// Drop every view and project the whole log again, showing progress.
    Rebuild(StoreArgs),
    /// Check a data folder: every log record's checksum and position, and the views. Exit 0
    /// when intact, 1 naming the first damaged record. Safe while the service runs.
    Check {
        /// Data folder to check.
        #[arg(long, env = "WHISTLE_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
    },
    /// Project the log into the views up to its head (or keep following it).
    Project {
        #[command(flatten)]
        store: StoreArgs,
        /// Keep following the log instead of stopping once caught up.
        #[arg(long)]
        follow: bool,
    },
    /// Raise a whistle (client: WHISTLE_URL, WHISTLE_TOKEN).
    Raise {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        title: String,
        #[arg(long)]
        description: String,
        /// A department to summon; repeat for several.
        #[arg(long = "department", required = true)]
        departments: Vec<String>,
        #[arg(long)]
        location: Option<String>,
        #[arg(long)]
        urgent: bool,
    },
    /// Report in (报到) on a whistle, as the department the token belongs to.
    Ack {
        #[command(flatten)]
        client: ClientArgs,
        case: String,
    },
    /// Decline a summons, with a reason.
    Decline {
        #[command(flatten)]
        client: ClientArgs,
        case: String,
        #[arg(long)]
        reason: String,
    },
    /// Report your department's part of a whistle handled.
    Handled {
        #[command(flatten)]
        client: ClientArgs,
        case: String,
        #[arg(long)]
        summary: String,
    },
    /// Confirm a resolved whistle and rate it (satisfied, basically_satisfied, unsatisfied).
    Confirm {
        #[command(flatten)]
        client: ClientArgs,
        case: String,
        #[arg(long)]
        satisfaction: String,
        /// A department's own rating, as DEPARTMENT=RATING (repeatable); departments not named
        /// get the whole rating.
        #[arg(long = "rate", value_name = "DEPARTMENT=RATING")]
        rate: Vec<String>,
    },
    /// Grassroots feedback (基层意见直通车).
    Feedback {
        #[command(subcommand)]
        command: FeedbackCommand,
    },
    /// List or show cases in your scope.
    Cases {
        #[command(subcommand)]
        command: CasesCommand,
    },
    /// List, acknowledge or watch alerts.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// 响应率 / 解决率 / 满意率.
    Stats {
        #[command(flatten)]
        client: ClientArgs,
        /// department, township, topic, office or coordinator.
        #[arg(long, default_value = "department")]
        by: String,
        /// First day (YYYY-MM-DD); default: the first of this month.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Start a service on short clocks and play a scripted morning, to watch live.
    Demo {
        /// Address for the demo service.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Stop once the script has played instead of serving on.
        #[arg(long)]
        exit: bool,
        /// The demo's 报到 clock.
        #[arg(long, default_value = "45s", value_parser = crate::domain::policy::parse_duration)]
        ack_clock: std::time::Duration,
    },
    /// Measure the service against raw baselines and print a table (and write JSON).
    Bench {
        /// Small sizes: a few minutes in all.
        #[arg(long)]
        quick: bool,
        /// Events for the projection and rebuild sections (default 1,000,000; 20,000 with --quick).
        #[arg(long)]
        events: Option<usize>,
        /// Also measure on NATS JetStream at this URL (an otherwise empty server).
        #[arg(long)]
        nats: Option<String>,
        /// Where to write the results as JSON.
        #[arg(long, default_value = "bench.json")]
        json: PathBuf,
        /// Run only these sections (repeat for several); all when absent.
        #[arg(long = "section", value_enum)]
        sections: Vec<crate::bench::Section>,
    },
    /// Inspect the views.
    Views {
        #[command(subcommand)]
        command: ViewsCommand,
    },
    /// Append generated, realistic traffic to the log (for trials and benchmarks).
    Sim {
        #[command(flatten)]
        store: StoreArgs,
        /// How many events to append, at least.
        #[arg(long, default_value_t = 1_000)]
        events: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Concurrent lanes of traffic.
        #[arg(long, default_value_t = 8)]
        lanes: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Check an org.toml (exit 2 naming what is wrong) and print, per unit, which groups
    /// (webhooks) receive which messages.
    Check {
        /// The organisation file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum CalendarCommand {
    /// Print the deadline "within N working days" of an instant, in Beijing time.
    ///
    /// The date of --from is not counted; the deadline is 24:00 Beijing time of the Nth
    /// working day after it. The word `provisional` follows when a counted day lies in a year
    /// with no published schedule.
    Due {
        /// Start instant, RFC 3339 (e.g. 2026-09-18T10:00:00+08:00).
        #[arg(long, value_parser = parse_rfc3339)]
        from: DateTime<Utc>,
        /// Number of working days, at least 1.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKING_DAYS_MAX)))]
        working_days: u32,
        /// Also count the years published in this data folder's embedded log (read without
        /// taking it: works while the service runs). Without it, only the shipped years count.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Publish (or correct) a year's official schedule from a TOML file. It is recorded as an
    /// event; open deadlines that depend on that year are recomputed and stop being provisional.
    Publish {
        /// The schedule file: year, notice, holidays, workdays (see src/domain/calendars/).
        file: PathBuf,
        /// Publish through this running service (with an admin token in --token) instead of
        /// writing to the log directly; needed while a service holds the embedded log.
        #[arg(long = "url", id = "service_url", env = "WHISTLE_URL")]
        service_url: Option<String>,
        #[arg(long = "token", id = "service_token", env = "WHISTLE_TOKEN", hide_env_values = true)]
        service_token: Option<String>,
        #[command(flatten)]
        store: Box<StoreArgs>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "WHISTLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Organisation file (TOML: townships, departments, office, coordinator, supervisors,
    /// alerts); without it the data folder's org.toml, or a demo one written on first start.
    #[arg(long, env = "WHISTLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where the service is and who is calling.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[arg(long, env = "WHISTLE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, env = "WHISTLE_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Subcommand, Debug)]
pub enum FeedbackCommand {
    /// Submit feedback; --anonymous stores no identity and prints a follow-up code.
    Submit {
        #[command(flatten)]
        client: ClientArgs,
        /// documents_meetings, excessive_paperwork, apps_chat_groups, inspections_assessments,
        /// work_pushed_down or other.
        #[arg(long)]
        topic: String,
        #[arg(long)]
        body: String,
        #[arg(long)]
        anonymous: bool,
    },
    /// Reply to feedback (the office).
    Reply {
        #[command(flatten)]
        client: ClientArgs,
        case: String,
        #[arg(long)]
        body: String,
    },
    /// Resolve feedback (the office).
    Resolve {
        #[command(flatten)]
        client: ClientArgs,
        case: String,
        #[arg(long)]
        summary: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CasesCommand {
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        overdue: bool,
        #[arg(long)]
        unit: Option<String>,
    },
    Show {
        #[command(flatten)]
        client: ClientArgs,
        case: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Only alerts not yet acknowledged.
        #[arg(long)]
        open: bool,
    },
    Ack {
        #[command(flatten)]
        client: ClientArgs,
        alert: String,
    },
    /// Print alerts as they happen.
    Watch {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token for a role and unit and print it (the only time it is shown).
    Add {
        #[arg(long, value_parser = parse_role)]
        role: crate::domain::event::Role,
        #[arg(long)]
        unit: String,
        /// A note on whom the token is for.
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long, env = "WHISTLE_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
        /// Organisation file to check the unit against (default: the data folder's org.toml).
        #[arg(long, env = "WHISTLE_CONFIG")]
        config: Option<PathBuf>,
        /// Also print a sign-in link to the dashboard at this address (the token rides in the
        /// link's fragment, which browsers never send to a server).
        #[arg(long, value_name = "DASHBOARD_URL")]
        link: Option<String>,
    },
}

fn parse_role(text: &str) -> Result<crate::domain::event::Role, String> {
    use crate::domain::event::Role;
    match text {
        "township" => Ok(Role::Township),
        "department" => Ok(Role::Department),
        "office" => Ok(Role::Office),
        "coordinator" => Ok(Role::Coordinator),
        "supervisor" => Ok(Role::Supervisor),
        "admin" => Ok(Role::Admin),
        other => Err(format!("{other:?} is not a role: township, department, office, coordinator, supervisor, admin")),
    }
}

#[derive(Subcommand, Debug)]
pub enum ViewsCommand {
    /// Print the SHA-256 digest of every view (equal digests: equal views).
    Digest(StoreArgs),
    /// Copy the views into a fresh database and swap it in, giving back the space sled has not
    /// reclaimed (the service does this by itself while catching up, never while live). Stop the
    /// service first.
    Compact(StoreArgs),
    /// Train a zstd dictionary for view values from these views (how the one built into
    /// whistle was made: see src/projector/codec.rs).
    #[command(hide = true)]
    Dictionary {
        #[command(flatten)]
        store: StoreArgs,
        /// Where to write the dictionary.
        #[arg(long)]
        out: PathBuf,
        /// Largest dictionary, in bytes.
        #[arg(long, default_value_t = 32 * 1024)]
        max_bytes: usize,
    },
}

/// Where the data is: a folder, and NATS when the log lives there.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Data folder: the embedded log (when no --nats) and the views.
    #[arg(long, env = "WHISTLE_DATA", default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// SLA policy file (TOML); the default policy when absent.
    #[arg(long, env = "WHISTLE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Memory the views may keep cached, in MiB: with the log's indexes, what bounds the
    /// service's memory (the operating system's file cache still serves the views' file).
    #[arg(long = "cache", env = "WHISTLE_CACHE_MIB", default_value_t = VIEWS_CACHE_MIB_DEFAULT, value_parser = clap::value_parser!(u64).range(8..=65_536))]
    pub cache_mib: u64,
    #[command(flatten)]
    pub nats: NatsArgs,
}

impl StoreArgs {
    /// The views' cache in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mib * 1024 * 1024
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct NatsArgs {
    /// Run on NATS JetStream at this URL (several: comma-separated) instead of the embedded log.
    #[arg(long = "nats", env = "WHISTLE_NATS")]
    pub url: Option<String>,
    /// NATS credentials file (.creds).
    #[arg(long = "nats-creds", env = "WHISTLE_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    #[arg(long = "nats-user", env = "WHISTLE_NATS_USER")]
    pub user: Option<String>,
    #[arg(long = "nats-password", env = "WHISTLE_NATS_PASSWORD")]
    pub password: Option<String>,
    #[arg(long = "nats-token", env = "WHISTLE_NATS_TOKEN")]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for TLS.
    #[arg(long = "nats-tls-ca")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --nats-tls-key.
    #[arg(long = "nats-tls-cert", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long = "nats-tls-key", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[arg(long = "nats-require-tls")]
    pub require_tls: bool,
    /// Replicas of the WHISTLE stream: 1 on one server, 3 on a cluster.
    #[arg(long = "nats-replicas", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
}

impl NatsArgs {
    pub fn options(&self) -> Option<NatsOptions> {
        let url = self.url.clone()?;
        Some(NatsOptions {
            url,
            credentials_file: self.creds.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            require_tls: self.require_tls,
            replicas: usize::from(self.replicas),
        })
    }
}

fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 instant like 2026-09-18T10:00:00+08:00 ({e})"))
}

/// The line `calendar due` prints: the deadline, then ` provisional` when it is.
pub fn calendar_due_line(calendar: &Calendar, from: DateTime<Utc>, working_days: u32) -> Result<String, String> {
    let deadline = calendar.working_days_after(from, working_days).map_err(|e| e.to_string())?;
    let mut line = deadline.to_beijing_rfc3339();
    if deadline.provisional {
        line.push_str(" provisional");
    }
    Ok(line)
}

/// Shows how far a long run has got: a bar on a terminal, a log line every few seconds
/// otherwise.
pub struct ProgressReport {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
    what: &'static str,
}

/// How often progress lines are printed when not on a terminal.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);

impl ProgressReport {
    pub fn new(what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {human_pos}/{human_len} records, {per_sec}, ETA {eta}",
            )
            .expect("the progress template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(what);
            bar
        });
        ProgressReport { bar, started: Instant::now(), last_line: Instant::now(), what }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        if self.last_line.elapsed() >= PROGRESS_LINE_EVERY || done >= total {
            self.last_line = Instant::now();
            let seconds = self.started.elapsed().as_secs_f64().max(0.001);
            let rate = done as f64 / seconds;
            let eta = if rate > 0.0 { (total.saturating_sub(done)) as f64 / rate } else { 0.0 };
            let percent = if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 };
            eprintln!("{}: {done}/{total} records ({percent:.0}%), {rate:.0} records/s, ETA {eta:.0}s", self.what);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// The path shown to people for a data folder.
pub fn shown(path: &Path) -> String {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

#[cfg(test)]
mod tests {
    /// Clap checks a command's definition only when that command is parsed: two options with
    /// one name in one subcommand would panic for whoever first runs it.
    #[test]
    fn every_command_line_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
