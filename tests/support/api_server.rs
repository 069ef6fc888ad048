//! A real `whistle` API on 127.0.0.1 in-process: embedded log, sled views, a manual clock,
//! the demo organisation and one token per identity.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use whistle::api::auth::{add_token, Org, Tokens};
use whistle::api::{AppState, Metrics};
use whistle::clock::ManualClock;
use whistle::domain::event::Actor;
use whistle::domain::SlaPolicy;
use whistle::log::EventLog;
use whistle::projector::views::Views;
use whistle::service::{LogHandle, Node, NodeConfig};

pub struct TestServer {
    pub base: String,
    pub tokens: HashMap<String, String>,
    pub clock: ManualClock,
    pub log: Arc<dyn EventLog>,
    pub views: Views,
    pub node: Option<Node>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Identity names used by tests: "township:东坝镇" and so on.
pub fn key(actor: &Actor) -> String {
    format!("{}:{}", actor.role.as_str(), actor.unit)
}

impl TestServer {
    pub async fn start(start: &str) -> TestServer {
        TestServer::start_with(start, "test-secret", NodeConfig::default()).await
    }

    /// A server with its own installation secret and node configuration (e.g. webhooks).
    pub async fn start_with(start: &str, secret: &str, config: NodeConfig) -> TestServer {
        TestServer::start_with_org(start, secret, config, Org::demo()).await
    }

    /// The demo organisation as a tree: 东坝镇 in 东区, 西湖街道 in 西区, each district with a
    /// supervisor of its own (level 1) besides the demo's city-wide ones.
    pub fn tree_org() -> Org {
        let mut text = Org::demo().to_toml();
        text.push_str(
            "\n[[districts]]\nname = \"东区\"\ntownships = [\"东坝镇\"]\n\
             \n[[districts]]\nname = \"西区\"\ntownships = [\"西湖街道\"]\n\
             \n[[supervisors]]\nunit = \"东区督查室\"\nlevel = 1\ndistrict = \"东区\"\n\
             \n[[supervisors]]\nunit = \"西区督查室\"\nlevel = 1\ndistrict = \"西区\"\n",
        );
        Org::from_toml(&text).expect("the tree organisation parses")
    }

    /// A server for `org`.
    pub async fn start_with_org(start: &str, secret: &str, config: NodeConfig, org: Org) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let tokens_path = dir.path().join("tokens.toml");
        let mut tokens = HashMap::new();
        for actor in org.identities() {
            tokens.insert(key(&actor), add_token(&tokens_path, &actor, "test").unwrap());
        }
        let handle = LogHandle::open(dir.path(), None).await.unwrap();
        let log = handle.log();
        let views = Views::open(dir.path().join("views")).unwrap();
        let clock = ManualClock::new(DateTime::parse_from_rfc3339(start).unwrap().with_timezone(&Utc));
        let node = Node::start(log.clone(), views.clone(), Arc::new(clock.clone()), config).await.unwrap();
        let state = Arc::new(AppState {
            log: log.clone(),
            executor: node.executor.clone(),
            views: views.clone(),
            clock: Arc::new(clock.clone()),
            org,
            policy: SlaPolicy::default(),
            tokens: RwLock::new(Tokens::load(&tokens_path).unwrap()),
            tokens_loaded: RwLock::new(whistle::api::token_file_modified(&tokens_path)),
            tokens_path: Some(tokens_path),
            live_alerts: node.live_alerts_sender(),
            progress: node.progress.clone(),
            startup_head: 0,
            metrics: Metrics::default(),
            delivery: Some(node.delivery.clone()),
            secret: secret.into(),
            shutdown: tokio::sync::watch::channel(false).1,
            fingerprints: Default::default(),
            files: Arc::new(whistle::files::FolderFiles::open(dir.path().join("attachments")).unwrap()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, whistle::api::app(state)).await.unwrap() });
        TestServer { base, tokens, clock, log, views, node: Some(node), http: reqwest::Client::new(), _dir: dir }
    }

    pub fn token(&self, who: &str) -> &str {
        self.tokens.get(who).unwrap_or_else(|| panic!("no token for {who}"))
    }

    /// A request as `who` (None: no token), with an optional JSON body.
    pub async fn call(&self, method: &str, path: &str, who: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, path, who, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        who: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(who) = who {
            req = req.bearer_auth(self.token(who));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Uploads `bytes` as a file named `name` (a raw body, `?name=`).
    pub async fn upload(&self, path: &str, who: Option<&str>, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).query(&[("name", name)]).body(bytes);
        if let Some(who) = who {
            req = req.bearer_auth(self.token(who));
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Waits until the views have caught up with the log.
    pub async fn settle(&self) {
        let head = self.log.head().await.unwrap();
        self.node.as_ref().unwrap().caught_up_to(head).await;
    }
}
