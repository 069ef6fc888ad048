//! `whistle serve`: one process with the API, projector, watchdog and alert delivery.
//!
//! On first start without `--config` it writes a demo organisation and one token per demo
//! identity into the data folder and says where they are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::api::auth::{add_token, write_private, Org, Tokens};
use crate::api::{AppState, Metrics};
use crate::clock::Clock;
use crate::domain::{Calendar, SlaPolicy};
use crate::log::nats::NatsOptions;
use crate::service::{open_views, LogHandle, Node, NodeConfig};

pub struct ServeOptions {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub nats: Option<NatsOptions>,
    pub config: Option<PathBuf>,
    pub policy: SlaPolicy,
    pub clock: Arc<dyn Clock>,
    /// Stops the service when it turns true (besides SIGTERM and Ctrl-C).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// The views' page cache, in bytes.
    pub cache_bytes: u64,
}

/// Files a data folder holds besides the log and views.
pub struct DataFiles {
    pub org: PathBuf,
    pub tokens: PathBuf,
    pub demo_tokens: PathBuf,
    pub secret: PathBuf,
}

impl DataFiles {
    pub fn of(data: &Path) -> Self {
        DataFiles {
            org: data.join("org.toml"),
            tokens: data.join("tokens.toml"),
            demo_tokens: data.join("demo-tokens.txt"),
            secret: data.join("secret"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration given by the operator (exit code 2).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Failed(String),
}

/// The organisation: from `--config`, from the data folder, or the demo one written there now.
pub fn load_or_create_org(data: &Path, config: Option<&Path>) -> Result<(Org, bool), ServeError> {
    let files = DataFiles::of(data);
    if let Some(path) = config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::Config(format!("cannot read {}: {e}", path.display())))?;
        let org = Org::from_toml(&text).map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))?;
        return Ok((org, false));
    }
    if files.org.exists() {
        let text = std::fs::read_to_string(&files.org).map_err(|e| ServeError::Failed(e.to_string()))?;
        let org = Org::from_toml(&text).map_err(|e| ServeError::Config(format!("{}: {e}", files.org.display())))?;
        return Ok((org, false));
    }
    let org = Org::demo();
    std::fs::create_dir_all(data).map_err(|e| ServeError::Failed(format!("cannot create {}: {e}", data.display())))?;
    std::fs::write(&files.org, org.to_toml()).map_err(|e| ServeError::Failed(e.to_string()))?;
    let mut lines =
        vec!["# One token per demo identity. Keep this file private; delete it once tokens are handed out.".to_owned()];
    for actor in org.identities() {
        let token = add_token(&files.tokens, &actor, "demo").map_err(ServeError::Failed)?;
        lines.push(format!("{:<12} {:<10} {token}", actor.role.as_str(), actor.unit));
    }
    write_private(&files.demo_tokens, &(lines.join("\n") + "\n")).map_err(|e| ServeError::Failed(e.to_string()))?;
    Ok((org, true))
}

fn load_secret(path: &Path) -> Result<String, ServeError> {
    if let Ok(secret) = std::fs::read_to_string(path) {
        return Ok(secret.trim().to_owned());
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    write_private(path, &secret).map_err(|e| ServeError::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(secret)
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    // Listen for SIGTERM before anything else, so a stop asked for during start-up is graceful.
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let files = DataFiles::of(&options.data);
    let (org, created) = load_or_create_org(&options.data, options.config.as_deref())?;
    let secret = load_secret(&files.secret)?;
    let tokens = Tokens::load(&files.tokens).map_err(ServeError::Config)?;
    let handle =
        LogHandle::open(&options.data, options.nats.as_ref()).await.map_err(|e| ServeError::Failed(e.to_string()))?;
    let log = handle.log();
    let views = open_views(&options.data, options.cache_bytes).map_err(|e| ServeError::Failed(e.to_string()))?;
    crate::service::check_views_against_log(&views, log.as_ref()).await.map_err(ServeError::Failed)?;
    let startup_head = log.head().await.map_err(|e| ServeError::Failed(e.to_string()))?;
    let attachments = handle.files(&options.data).await.map_err(|e| ServeError::Failed(e.to_string()))?;
    // The escalation ladder climbs to the organisation's top supervisor level.
    let policy = options.policy.clone().with_top_level(org.top_level());
    let config = NodeConfig {
        policy: policy.clone(),
        calendar: Calendar::official(),
        alerts: org.alerts.clone(),
        reports: org.reports.clone(),
        units: crate::alerts::NoticeUnits {
            office: org.office.clone(),
            coordinator: org.coordinator.clone(),
            supervision: org.supervision(),
        },
        files: Some(attachments.clone()),
    };
    let node = Node::start(log.clone(), views.clone(), options.clock.clone(), config)
        .await
        .map_err(|e| ServeError::Failed(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| ServeError::Failed(format!("cannot listen on {}: {e}", options.listen)))?;
    let (shutdown, stopping) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        log,
        executor: node.executor.clone(),
        views,
        clock: options.clock.clone(),
        org,
        policy,
        files: attachments,
        tokens: RwLock::new(tokens),
        tokens_path: Some(files.tokens.clone()),
        tokens_loaded: RwLock::new(crate::api::token_file_modified(&files.tokens)),
        live_alerts: node.live_alerts_sender(),
        progress: node.progress.clone(),
        startup_head,
        metrics: Metrics::default(),
        delivery: Some(node.delivery.clone()),
        secret,
        shutdown: stopping,
        fingerprints: Default::default(),
    });
    // The bound address: with port 0 the system picked one, and whoever started us reads it here.
    let listening = listener.local_addr().unwrap_or(options.listen);
    announce(&options.data, listening, &handle, created, &files);
    let app = crate::api::app(state);
    let signalled = async move {
        shutdown_signal(options.stop, terminate).await;
        let _ = shutdown.send(true);
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(signalled).await;
    tracing::info!("shutting down");
    node.stop().await;
    handle.close().await.map_err(|e| ServeError::Failed(e.to_string()))?;
    served.map_err(|e| ServeError::Failed(e.to_string()))
}

fn announce(data: &Path, listen: SocketAddr, handle: &LogHandle, created: bool, files: &DataFiles) {
    let shown = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    eprintln!("whistle serving on http://{listen}/ ({}, data in {})", handle.describe(), shown(data));
    if created {
        eprintln!("first start: wrote a demo organisation to {}", shown(&files.org));
        eprintln!("             and one token per demo identity to {} (mode 0600)", shown(&files.demo_tokens));
    } else if files.demo_tokens.exists() {
        eprintln!("demo tokens: {}", shown(&files.demo_tokens));
    }
}

async fn shutdown_signal(
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    terminate: Option<tokio::signal::unix::Signal>,
) {
    let asked = async move {
        match stop {
            Some(mut stop) => {
                let _ = stop.wait_for(|s| *s).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async move {
        match terminate {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {}, _ = asked => {} }
}
