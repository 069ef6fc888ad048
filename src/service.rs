//! Opening what the service runs on: the log (embedded or NATS), the views, the policy.
//! Shared by `serve`, `rebuild` and the other commands that touch stored data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::SlaPolicy;
use crate::log::embedded::EmbeddedLog;
use crate::log::nats::{NatsLog, NatsOptions};
use crate::log::{EventLog, LogError};
use crate::projector::views::{ViewError, Views};

/// Where data lives when no folder is named.
pub const DEFAULT_DATA_DIR: &str = "whistle-data";

/// The log a service runs on.
pub enum LogHandle {
    Embedded(Arc<EmbeddedLog>),
    Nats(Arc<NatsLog>),
}

impl LogHandle {
    /// Opens the embedded log under `data/log`, or connects to NATS when options are given.
    pub async fn open(data: &Path, nats: Option<&NatsOptions>) -> Result<Self, LogError> {
        match nats {
            Some(options) => Ok(LogHandle::Nats(Arc::new(NatsLog::connect(options).await?))),
            None => {
                std::fs::create_dir_all(data)
                    .map_err(|e| LogError::Setup(format!("cannot create data folder {}: {e}", data.display())))?;
                Ok(LogHandle::Embedded(Arc::new(EmbeddedLog::open(data.join("log"))?)))
            }
        }
    }

    pub fn log(&self) -> Arc<dyn EventLog> {
        match self {
            LogHandle::Embedded(l) => l.clone(),
            LogHandle::Nats(l) => l.clone(),
        }
    }

    /// Where evidence files are stored: `data/attachments` beside the embedded log, the
    /// Object Store bucket on NATS.
    pub async fn files(&self, data: &Path) -> Result<Arc<dyn crate::files::FileStore>, crate::files::FileError> {
        Ok(match self {
            LogHandle::Embedded(_) => Arc::new(crate::files::FolderFiles::open(data.join("attachments"))?),
            LogHandle::Nats(l) => Arc::new(l.files().await?),
        })
    }

    pub fn describe(&self) -> &'static str {
        match self {
            LogHandle::Embedded(_) => "embedded log",
            LogHandle::Nats(_) => "NATS JetStream",
        }
    }

    /// Closes the embedded log once the service's tasks have let go of it (they are stopping:
    /// waits up to [`CLOSE_WAIT`] for them), so that the folder is free when this returns.
    pub async fn close(self) -> Result<(), LogError> {
        let LogHandle::Embedded(mut log) = self else { return Ok(()) };
        let waiting = std::time::Instant::now();
        loop {
            match Arc::try_unwrap(log) {
                Ok(log) => return log.close().await,
                Err(shared) if waiting.elapsed() < CLOSE_WAIT => {
                    log = shared;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(_) => {
                    tracing::warn!(
                        "the event log is still in use after {CLOSE_WAIT:?}: it closes when its last user stops"
                    );
                    return Ok(());
                }
            }
        }
    }
}

/// How long closing the log waits for the service's other users of it to stop.
pub const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn views_path(data: &Path) -> PathBuf {
    data.join("views")
}

/// Opens the views. Views that are damaged are set aside (renamed `views.damaged-<time>`) and
/// a fresh database takes their place: the projector rebuilds it from the log.
pub fn open_views(data: &Path, cache_bytes: u64) -> Result<Views, ViewError> {
    std::fs::create_dir_all(data).map_err(|e| ViewError::Storage(format!("cannot create {}: {e}", data.display())))?;
    let path = views_path(data);
    let damage = match Views::open_with_cache(&path, cache_bytes) {
        Ok(views) => match views.verify() {
            Ok(()) => return Ok(views),
            Err(e) => e,
        },
        Err(e @ ViewError::Damaged(_)) => e,
        Err(e) => return Err(e),
    };
    let aside = data.join(format!("views.damaged-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
    tracing::error!("{damage}: setting the views aside as {} and rebuilding them from the log", aside.display());
    std::fs::rename(&path, &aside)
        .map_err(|e| ViewError::Storage(format!("cannot set damaged views aside as {}: {e}", aside.display())))?;
    Views::open_with_cache(&path, cache_bytes)
}

/// Refuses views that have applied more of the log than the log holds: the log lost records
/// (a damaged or truncated file, a NATS stream recreated), and going on would hide it.
pub async fn check_views_against_log(views: &Views, log: &dyn EventLog) -> Result<(), String> {
    let checkpoint = views.checkpoint().map_err(|e| e.to_string())?;
    let head = log.head().await.map_err(|e| e.to_string())?;
    if checkpoint > head {
        return Err(format!(
            "the views have applied the log up to record {checkpoint}, but the log ends at record {head}: \
             records {}..={checkpoint} are missing from the log. Restore the log from a backup (or, to accept \
             the loss, run `whistle rebuild`)",
            head + 1
        ));
    }
    Ok(())
}

/// The SLA policy from a file, or the default one.
pub fn load_policy(path: Option<&Path>) -> Result<SlaPolicy, String> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read policy {}: {e}", p.display()))?;
            SlaPolicy::from_toml(&text).map_err(|e| format!("{}: {e}", p.display()))
        }
        None => Ok(SlaPolicy::default()),
    }
}

/// The policy with the escalation ladder of the organisation in the data folder (its
/// `org.toml`, as `whistle serve` writes or reads it), so that projecting outside the service
/// arms the same ladder as the service does.
pub fn with_org_ladder(policy: SlaPolicy, data: &Path) -> Result<SlaPolicy, String> {
    let path = data.join("org.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let org = crate::api::auth::Org::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(policy.with_top_level(org.top_level()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(policy),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// What a running node needs besides its log and views.
#[derive(Clone)]
pub struct NodeConfig {
    pub policy: SlaPolicy,
    pub calendar: crate::domain::Calendar,
    pub alerts: crate::alerts::AlertConfig,
    pub reports: crate::reports::ReportSchedule,
    /// The office's and the coordinator's names, for notices to them.
    pub units: crate::alerts::NoticeUnits,
    /// The evidence-file store, whose orphans this node sweeps.
    pub files: Option<Arc<dyn crate::files::FileStore>>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            policy: SlaPolicy::default(),
            calendar: crate::domain::Calendar::official(),
            alerts: crate::alerts::AlertConfig::default(),
            reports: crate::reports::ReportSchedule::default(),
            units: crate::alerts::NoticeUnits::default(),
            files: None,
        }
    }
}

/// One service instance's background work: projector, watchdog and alert delivery, each in
/// its own task, stopped together.
pub struct Node {
    pub views: Views,
    pub progress: crate::projector::Progress,
    pub delivery: Arc<crate::alerts::Delivery>,
    /// Runs commands; the HTTP layer shares it with the watchdog.
    pub executor: Arc<crate::execute::Executor>,
    live_alerts: tokio::sync::broadcast::Sender<crate::projector::model::AlertView>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Projector(#[from] crate::projector::ProjectorError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("alert delivery: {0}")]
    Delivery(String),
}

impl Node {
    /// Starts the node's tasks. Records already in the log when it starts are replay: their
    /// alerts are not sent to live listeners again.
    pub async fn start(
        log: Arc<dyn EventLog>,
        views: Views,
        clock: Arc<dyn crate::clock::Clock>,
        config: NodeConfig,
    ) -> Result<Node, NodeError> {
        let mut projector =
            crate::projector::Projector::new(views.clone(), config.policy.clone(), config.calendar.clone())?;
        projector.set_live_after(log.head().await?);
        let progress = projector.progress();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (live_alerts, _) = tokio::sync::broadcast::channel(crate::projector::LIVE_ALERTS_BUFFER);
        let forward = live_alerts.clone();
        let mut projected = projector.alerts();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(async move {
            loop {
                match projected.recv().await {
                    Ok(alert) => {
                        let _ = forward.send(alert);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
        let projector_log = log.clone();
        let projector_stop = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = projector.run(projector_log, projector_stop).await {
                tracing::error!("projector stopped: {e}");
            }
        }));
        let executor = Arc::new(crate::execute::Executor::new(log.clone()));
        let mut watchdog =
            crate::watchdog::Watchdog::new(executor.clone(), views.clone(), clock.clone(), progress.clone());
        let watchdog_stop = stopped.clone();
        tasks.push(tokio::spawn(async move { watchdog.run(watchdog_stop).await }));
        let publisher = crate::reports::Publisher {
            executor: executor.clone(),
            log: log.clone(),
            checkpoint: progress.checkpoint.clone(),
            views: views.clone(),
            clock: clock.clone(),
            calendar: progress.calendar.clone(),
            schedule: config.reports.clone(),
        };
        tasks.push(tokio::spawn(publisher.run(stopped.clone())));
        if let Some(files) = config.files.clone() {
            let (views, log, clock) = (views.clone(), log.clone(), clock.clone());
            tasks.push(tokio::spawn(crate::files::run_sweeper(files, views, log, clock, stopped.clone())));
        }
        let delivery = Arc::new(
            crate::alerts::Delivery::new(
                log,
                views.clone(),
                clock,
                progress.calendar.clone(),
                progress.checkpoint.clone(),
                crate::alerts::DeliverySettings {
                    policy: config.policy,
                    alerts: config.alerts,
                    report_link: config.reports.link.clone(),
                    units: config.units.clone(),
                },
            )
            .map_err(|e| NodeError::Delivery(e.to_string()))?,
        );
        tasks.push(tokio::spawn(delivery.clone().run(stopped)));
        Ok(Node { views, progress, delivery, executor, live_alerts, stop, tasks })
    }

    /// The sender side of the live alerts, for the HTTP layer to subscribe from.
    pub fn live_alerts_sender(&self) -> tokio::sync::broadcast::Sender<crate::projector::model::AlertView> {
        self.live_alerts.clone()
    }

    /// Live alerts, as the projector records them.
    pub fn live_alerts(&self) -> tokio::sync::broadcast::Receiver<crate::projector::model::AlertView> {
        self.live_alerts.subscribe()
    }

    /// Waits until the views have applied the log up to `position`.
    pub async fn caught_up_to(&self, position: u64) {
        let mut checkpoint = self.progress.checkpoint.clone();
        let _ = checkpoint.wait_for(|c| *c >= position).await;
    }

    /// Stops every task and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
        let _ = self.views.flush().await;
    }
}
