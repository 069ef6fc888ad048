//! A webhook receiver on 127.0.0.1 that records what it receives and can refuse the first
//! attempts, to exercise retries.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Value>>>,
    pub attempts: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<AtomicUsize>,
    fail_first: usize,
    /// Refuses as a group robot does: HTTP 200 with a non-zero `errcode`.
    robot: bool,
}

impl Receiver {
    /// Starts a receiver that answers 500 to its first `fail_first` requests.
    pub async fn start(fail_first: usize) -> Receiver {
        Receiver::serve(fail_first, false).await
    }

    /// Starts a receiver that answers as a WeCom group robot: 200 and `{"errcode":0}` when it
    /// takes a message, 200 and errcode 45009 (over its rate limit) to its first `fail_first`.
    pub async fn start_robot(fail_first: usize) -> Receiver {
        Receiver::serve(fail_first, true).await
    }

    async fn serve(fail_first: usize, robot: bool) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let shared = Shared { received: received.clone(), attempts: attempts.clone(), fail_first, robot };
        let app = Router::new().route("/hook", post(hook)).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver serves") });
        Receiver { addr, received, attempts }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` bodies have arrived (at most 30 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..600 {
            let bodies = self.bodies();
            if bodies.len() >= n {
                return bodies;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("only {} of {n} webhook calls arrived", self.bodies().len());
    }
}

async fn hook(State(shared): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let attempt = shared.attempts.fetch_add(1, Ordering::SeqCst);
    if attempt < shared.fail_first {
        if shared.robot {
            return (StatusCode::OK, Json(serde_json::json!({ "errcode": 45009, "errmsg": "api freq out of limit" })));
        }
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(Value::Null));
    }
    shared.received.lock().unwrap().push(body);
    (StatusCode::OK, Json(serde_json::json!({ "errcode": 0, "errmsg": "ok" })))
}
