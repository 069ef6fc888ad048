//! The command-line client: talks to a running service over HTTP, with `WHISTLE_URL` and
//! `WHISTLE_TOKEN`. Errors print the server's message and exit non-zero (2 for a refused
//! request, 1 when the service cannot be reached).

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A failure: the exit code and the message to print.
pub struct ClientError {
    pub code: u8,
    pub message: String,
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(url: &str, token: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder().build().map_err(|e| ClientError { code: 1, message: e.to_string() })?;
        Ok(Client { base: url.trim_end_matches('/').to_owned(), token: token.trim().to_owned(), http })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(accept) = accept {
            req = req.header("Accept", accept);
        }
        let res = req
            .send()
            .await
            .map_err(|e| ClientError { code: 1, message: format!("cannot reach {}: {e}", self.base) })?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        let code = if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS { 2 } else { 1 };
        Err(ClientError { code, message: format!("{} ({})", message, status.as_u16()) })
    }

    pub async fn json(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let res = self.send(method, path, body, None).await?;
        res.json().await.map_err(|e| ClientError { code: 1, message: format!("unreadable answer: {e}") })
    }

    pub async fn text(&self, path: &str, accept: &str) -> Result<String, ClientError> {
        let res = self.send(Method::GET, path, None, Some(accept)).await?;
        res.text().await.map_err(|e| ClientError { code: 1, message: e.to_string() })
    }

    /// Prints live alerts until the stream ends or the process is stopped.
    pub async fn watch(&self) -> Result<(), ClientError> {
        let res = self.send(Method::GET, "/v1/alerts/stream", None, Some("text/event-stream")).await?;
        let mut body = res.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ClientError { code: 1, message: format!("stream ended: {e}") })?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(cut) = buffer.find("\n\n") {
                let block: String = buffer.drain(..cut + 2).collect();
                let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
                let event = block.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim).unwrap_or("");
                if let Ok(alert) = serde_json::from_str::<Value>(&data) {
                    println!("{}", alert_line(event, &alert));
                }
            }
        }
        Ok(())
    }
}

/// One line for a case.
pub fn case_line(case: &Value) -> String {
    let overdue = case["overdue"].as_array().map_or(0, Vec::len);
    format!(
        "{}  {:<8} {:<10} {}{}",
        case["id"].as_str().unwrap_or(""),
        case["kind"].as_str().unwrap_or(""),
        case["status"].as_str().unwrap_or(""),
        case["title"].as_str().unwrap_or(""),
        if overdue > 0 { format!("  [超时 {overdue}]") } else { String::new() }
    )
}

/// One line for an alert.
pub fn alert_line(event: &str, alert: &Value) -> String {
    let acked = if event == "alert_acknowledged" || !alert["acknowledged_by"].is_null() { " (已知悉)" } else { "" };
    format!(
        "{}  {:<10} {} {}  due {}  {}{}",
        alert["alert_id"].as_str().unwrap_or(""),
        alert["stage"].as_str().unwrap_or(""),
        alert["unit"].as_str().unwrap_or(""),
        alert["clock"]["kind"].as_str().unwrap_or(""),
        alert["due_at"].as_str().unwrap_or(""),
        alert["title"].as_str().unwrap_or(""),
        acked
    )
}
