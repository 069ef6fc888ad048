//! `whistle demo`: a service on short clocks in a temporary folder, and a scripted morning a
//! newcomer can watch live in the dashboard: two whistles raised, one department reports in
//! on time, one misses its clock and the supervisor alert fires, a feedback item gets its reply.
//! The department that misses its clock is followed too: the summons it is sent the moment the
//! whistle sounds, and the reminder (催办) at its warning point.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::clock::SystemClock;
use crate::domain::calendar::beijing;
use crate::domain::SlaPolicy;
use crate::serve::{serve, DataFiles, ServeOptions};

/// Short clocks so the demo's deadline passes while you watch.
fn demo_policy(ack: Duration) -> String {
    format!("warn_at_percent = 50\nescalate_after = \"60s\"\n[clocks.ack]\ntarget = \"{}s\"\n", ack.as_secs().max(1))
}
/// Longest wait for the demo service to be ready, and for the missed clock's alert.
const READY_WAIT: Duration = Duration::from_secs(20);
const ALERT_WAIT: Duration = Duration::from_secs(120);

fn step(text: &str) {
    let now = chrono::Utc::now().with_timezone(&beijing()).format("%H:%M:%S");
    println!("[{now}] {text}");
}

struct Demo {
    base: String,
    tokens: HashMap<String, String>,
    http: reqwest::Client,
}

impl Demo {
    async fn call(&self, who: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let token = self.tokens.get(who).ok_or_else(|| format!("no demo token for {who}"))?;
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        let status = res.status();
        let value: Value = res.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {value}"));
        }
        Ok(value)
    }

    async fn post(&self, who: &str, path: &str, body: Value) -> Result<Value, String> {
        self.call(who, reqwest::Method::POST, path, Some(body)).await
    }
}

/// Demo tokens by unit, from the file `serve` writes on first start.
pub fn read_tokens(path: &std::path::Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts.len() == 3).then(|| (parts[1].to_owned(), parts[2].to_owned()))
        })
        .collect())
}

pub async fn run(listen: SocketAddr, exit: bool, ack_clock: Duration) -> Result<(), String> {
    let data: PathBuf = std::env::temp_dir().join(format!("whistle-demo-{}", std::process::id()));
    let policy = SlaPolicy::from_toml(&demo_policy(ack_clock)).map_err(|e| e.to_string())?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let options = ServeOptions {
        data: data.clone(),
        listen,
        nats: None,
        config: None,
        policy,
        clock: Arc::new(SystemClock),
        stop: Some(stop),
        cache_bytes: crate::projector::views::VIEWS_CACHE_BYTES_DEFAULT,
    };
    let server = tokio::spawn(serve(options));
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    let ready = async {
        loop {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(READY_WAIT, ready).await.is_err() {
        return Err(match server.is_finished() {
            true => "the demo service did not start (is the address in use?)".into(),
            false => "the demo service did not become ready".into(),
        });
    }
    let demo = Demo { base: base.clone(), tokens: read_tokens(&DataFiles::of(&data).demo_tokens)?, http };
    let outcome = script(&demo, ack_clock).await;
    println!();
    println!("Dashboard: {base}/   (sign in with a token below)");
    for who in ["区委督查室", "东坝镇", "交通局", "市减负办"] {
        if let Some(token) = demo.tokens.get(who) {
            println!("  {who:<8} {token}");
        }
    }
    println!("All demo tokens: {}", DataFiles::of(&data).demo_tokens.display());
    if let Err(e) = outcome {
        let _ = stop_tx.send(true);
        return Err(e);
    }
    if exit {
        let _ = stop_tx.send(true);
    } else {
        println!("The service keeps running; press Ctrl-C to stop.");
    }
    server.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

async fn script(demo: &Demo, ack_clock: Duration) -> Result<(), String> {
    let mut alerts = alert_watch(demo, "区委督查室", "alert").await?;
    // What 交通局's own page hears: its summons, then its reminder.
    let mut transport = alert_watch(demo, "交通局", "").await?;
    tokio::spawn(async move {
        while let Some(message) = transport.next().await {
            let text = message["text"].as_str().map(str::to_owned);
            match (message["stage"].as_str(), text) {
                (Some("summons"), Some(text)) => step(&format!("交通局 的页面收到 {text}")),
                (Some("warning"), _) => step(&format!(
                    "交通局 的页面收到【催办】「报到」将于 {} 到期：{}",
                    message["due_at"]
                        .as_str()
                        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                        .map_or(String::new(), |d| d.with_timezone(&beijing()).format("%H:%M:%S").to_string()),
                    message["title"].as_str().unwrap_or("")
                )),
                _ => {}
            }
        }
    });
    step(&format!("东坝镇 吹哨：村口河道垃圾堆积，召集 住建局、城管局 报到（演示时限：{}秒）", ack_clock.as_secs()));
    let river = demo
        .post(
            "东坝镇",
            "/v1/whistles",
            json!({
                "title": "村口河道垃圾堆积", "description": "河道垃圾堆积影响排涝，需住建、城管协同清理",
                "departments": ["住建局", "城管局"], "location": "东坝镇前进村"
            }),
        )
        .await?;
    let river_id = river["case"]["id"].as_str().unwrap_or_default().to_owned();
    step("西湖街道 吹哨：路灯损坏影响夜间通行，召集 交通局 报到");
    demo.post(
        "西湖街道",
        "/v1/whistles",
        json!({
            "title": "主干道路灯损坏", "description": "夜间通行安全隐患", "departments": ["交通局"]
        }),
    )
    .await?;
    tokio::time::sleep((ack_clock / 10).min(Duration::from_secs(2))).await;
    step("住建局 报到");
    demo.post("住建局", &format!("/v1/whistles/{river_id}/ack"), json!({})).await?;
    step("城管局 报到");
    demo.post("城管局", &format!("/v1/whistles/{river_id}/ack"), json!({})).await?;
    step("东坝镇 通过基层意见直通车反映：宣传活动要求提交四类留痕材料");
    let feedback = demo
        .post(
            "东坝镇",
            "/v1/feedback",
            json!({
                "topic": "excessive_paperwork", "body": "每次政策宣传都要求提交通知、照片、签到表、总结四类材料"
            }),
        )
        .await?;
    let feedback_id = feedback["case"]["id"].as_str().unwrap_or_default().to_owned();
    step("市减负办 回应：已联系相关部门，按留痕负面清单整改");
    demo.post(
        "市减负办",
        &format!("/v1/feedback/{feedback_id}/reply"),
        json!({ "body": "已联系相关部门，按《基层工作留痕负面清单》整改" }),
    )
    .await?;
    step("交通局 未报到……等待时限到期（督查端会实时收到预警）");
    let deadline = tokio::time::Instant::now() + ALERT_WAIT;
    loop {
        let next =
            tokio::time::timeout_at(deadline, alerts.next()).await.map_err(|_| "no breach alert arrived".to_owned())?;
        let Some(alert) = next else { return Err("the alert stream ended".into()) };
        let stage = alert["stage"].as_str().unwrap_or("");
        let label = match stage {
            "warning" => "预警",
            "breach" => "超时",
            _ => "升级督办",
        };
        let clock =
            if alert["clock"]["kind"] == "ack" { "报到" } else { alert["clock"]["kind"].as_str().unwrap_or("") };
        step(&format!(
            "督查提醒【{label}】{} 「{clock}」 {}",
            alert["unit"].as_str().unwrap_or(""),
            alert["title"].as_str().unwrap_or("")
        ));
        if stage == "breach" {
            return Ok(());
        }
    }
}

/// What `who` hears live: events named `only` (all of them when empty).
async fn alert_watch(
    demo: &Demo,
    who: &str,
    only: &'static str,
) -> Result<futures::stream::BoxStream<'static, Value>, String> {
    let token = demo.tokens.get(who).ok_or_else(|| format!("no demo token for {who}"))?;
    let res = demo
        .http
        .get(format!("{}/v1/alerts/stream", demo.base))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let stream = res.bytes_stream().scan(String::new(), move |buffer, chunk| {
        let mut out = Vec::new();
        if let Ok(chunk) = chunk {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(cut) = buffer.find("\n\n") {
                let block: String = buffer.drain(..cut + 2).collect();
                let wanted = block
                    .lines()
                    .any(|l| l.starts_with("event:") && (only.is_empty() || l.trim() == format!("event: {only}")));
                if wanted {
                    let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
                    out.extend(serde_json::from_str::<Value>(&data).ok());
                }
            }
        }
        std::future::ready(Some(futures::stream::iter(out)))
    });
    Ok(stream.flatten().boxed())
}
