//! Evidence files on both back ends, through a real `whistle serve`: upload (raw and multipart),
//! download with the same SHA-256, scope, limits, kinds told from the bytes, where the bytes
//! are stored; and the orphan sweeper on real stores.

#[path = "support/backends.rs"]
#[macro_use]
mod backends;
#[path = "support/domain.rs"]
mod domain;
#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/serve_process.rs"]
mod serve_process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backends::{open_log, Backend};
use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{json, Value};
use serve_process::{add_token, json_of, ServeProcess};
use uuid::Uuid;
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::{Calendar, SlaPolicy};
use whistle::execute::execute;
use whistle::files::{sha256_hex, sweep_orphans, FileStore, FolderFiles};
use whistle::log::nats::{NatsLog, NatsOptions};
use whistle::projector::views::Views;
use whistle::projector::Projector;

/// A PNG's signature and header, then `n` bytes that differ with `seed`.
fn png(seed: u8, n: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    bytes
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

async fn wait_ready(url: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "{url} not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
}

/// A response's status and JSON body (`null` when it has none).
async fn answer(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

impl Client {
    async fn upload(&self, token: &str, case: &str, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}/v1/cases/{case}/attachments", self.url))
            .query(&[("name", name)])
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap();
        answer(res).await
    }

    /// One file in a `multipart/form-data` body, as a browser's form sends it.
    async fn upload_form(&self, token: &str, case: &str, name: &str, bytes: &[u8]) -> (StatusCode, Value) {
        let boundary = "----whistle-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let res = self
            .http
            .post(format!("{}/v1/cases/{case}/attachments", self.url))
            .bearer_auth(token)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap();
        answer(res).await
    }

    async fn download(&self, token: &str, case: &str, n: u32) -> reqwest::Response {
        self.http.get(format!("{}/v1/cases/{case}/attachments/{n}", self.url)).bearer_auth(token).send().await.unwrap()
    }
}

async fn evidence_files_go_where_the_log_is_and_come_back_the_same(backend: Backend) {
    let server = matches!(backend, Backend::Nats).then(nats_server::NatsServer::start);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("org.toml");
    let mut org = whistle::api::auth::Org::demo();
    org.attachments = whistle::api::auth::AttachmentRules { max_bytes: 256 * 1024, max_per_case: 3 };
    std::fs::write(&config, org.to_toml()).unwrap();
    let township = add_token(&data, &config, "township", "东坝镇");
    let other_township = add_token(&data, &config, "township", "西湖街道");
    let department = add_token(&data, &config, "department", "住建局");
    let mut args = vec!["--config".to_owned(), config.to_str().unwrap().to_owned()];
    if let Some(server) = &server {
        args.extend(["--nats".to_owned(), server.url()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let serve = ServeProcess::start(&data, &args);
    wait_ready(&serve.url()).await;
    let client = Client { http: reqwest::Client::new(), url: serve.url() };
    let raised = json_of(
        client
            .http
            .post(format!("{}/v1/whistles", serve.url()))
            .bearer_auth(&township)
            .json(&json!({ "title": "河道垃圾", "description": "村口河道", "departments": ["住建局"] })),
    )
    .await;
    let case = raised["case"]["id"].as_str().unwrap().to_owned();

    // A photo, raw body: stored, named by its SHA-256, served inline with the same bytes.
    let photo = png(1, 50_000);
    let (status, answer) = client.upload(&township, &case, "C:\\相册\\河道.png", photo.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let event = &answer["events"][0];
    assert_eq!(event["type"], "attachment_added");
    assert_eq!(event["name"], "河道.png", "the path is dropped");
    assert_eq!(event["content_type"], "image/png");
    assert_eq!(event["size"], photo.len());
    assert_eq!(event["sha256"], sha256_hex(&photo));
    let res = client.download(&department, &case, 1).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("inline;"));
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(sha256_hex(&res.bytes().await.unwrap()), sha256_hex(&photo), "the same bytes come back");

    // A PDF from a form: downloaded, never shown inline.
    let (status, answer) = client.upload_form(&department, &case, "现场记录.pdf", &pdf()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let res = client.download(&township, &case, 2).await;
    assert_eq!(res.headers()["content-type"], "application/pdf");
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains("UTF-8''"), "{disposition}");
    assert_eq!(sha256_hex(&res.bytes().await.unwrap()), sha256_hex(&pdf()));

    // Out of scope: 404 both ways, as for the case itself.
    assert_eq!(client.download(&other_township, &case, 1).await.status(), StatusCode::NOT_FOUND);
    let (status, _) = client.upload(&other_township, &case, "x.png", png(2, 100)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(client.download(&township, &case, 9).await.status(), StatusCode::NOT_FOUND);

    // Too large, not a kind taken, or one too many: refused with the reason, nothing stored.
    let (status, answer) = client.upload(&township, &case, "大.png", png(3, 300 * 1024)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("0.2 MiB"), "{answer}");
    let (status, answer) = client.upload(&township, &case, "脚本.html", b"<html><script>".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert_eq!(answer["error"]["code"], "unsupported_media_type", "the code clients already know");
    let (status, third) = client.upload(&township, &case, "三.png", png(4, 1000)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = client.upload(&township, &case, "四.png", png(5, 1000)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let shown = json_of(
        client
            .http
            .get(format!("{}/v1/cases/{case}", serve.url()))
            .bearer_auth(&township)
            .header("X-Min-Position", third["position"].to_string()),
    )
    .await;
    assert_eq!(shown["detail"]["attachments"].as_array().unwrap().len(), 3, "{shown}");
    assert!(!shown["actions"].as_array().unwrap().iter().any(|a| a["action"] == "attach"), "the case is full");

    // Where the bytes are: the data folder, or the Object Store; never the log.
    let stored: Arc<dyn FileStore> = match &server {
        None => Arc::new(FolderFiles::open(data.join("attachments")).unwrap()),
        Some(server) => {
            Arc::new(NatsLog::connect(&NatsOptions::new(server.url())).await.unwrap().files().await.unwrap())
        }
    };
    let mut names: Vec<String> = stored.list().await.unwrap().into_iter().map(|f| f.name).collect();
    names.sort();
    let mut expected = vec![sha256_hex(&photo), sha256_hex(&pdf()), sha256_hex(&png(4, 1000))];
    expected.sort();
    assert_eq!(names, expected, "three files, the refused ones never stored");
    let metrics = client.http.get(format!("{}/metrics", serve.url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("whistle_attachments_total 3"), "{metrics}");
    let bytes = photo.len() + pdf().len() + png(4, 1000).len();
    assert!(metrics.contains(&format!("whistle_attachment_bytes_total {bytes}")), "{metrics}");
}

/// Files that no event names (an upload whose event never came) go once old enough; the rest stay.
async fn the_sweeper_removes_only_old_files_no_event_names(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (log, server) = open_log(backend, dir.path()).await;
    let store: Arc<dyn FileStore> = match &server {
        None => Arc::new(FolderFiles::open(dir.path().join("attachments")).unwrap()),
        Some(server) => {
            Arc::new(NatsLog::connect(&NatsOptions::new(server.url())).await.unwrap().files().await.unwrap())
        }
    };
    let views = Views::open(dir.path().join("views")).unwrap();
    let mut projector = Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    let now = chrono::Utc::now();
    let case = Uuid::now_v7();
    let township = domain::township();
    let raise = domain::raise(&[domain::HOUSING]);
    execute(log.as_ref(), &Command::new(Uuid::now_v7(), case, township.clone(), raise), now).await.unwrap();
    let attach = |bytes: &[u8]| CommandBody::AddAttachment {
        name: "a.png".into(),
        size: bytes.len() as u64,
        content_type: "image/png".into(),
        sha256: sha256_hex(bytes),
    };
    let (named, orphan, late) = (png(1, 10), png(2, 10), png(3, 10));
    for bytes in [&named, &orphan, &late] {
        store.put(&sha256_hex(bytes), Bytes::from(bytes.clone())).await.unwrap();
    }
    execute(log.as_ref(), &Command::new(Uuid::now_v7(), case, township.clone(), attach(&named)), now).await.unwrap();
    projector.catch_up(log.as_ref(), true, |_, _| {}).await.unwrap();
    // Too young to be an orphan: an upload may still be on its way to the log.
    assert_eq!(sweep_orphans(store.as_ref(), &views, log.as_ref(), now, Duration::from_secs(3600)).await.unwrap(), 0);
    // The event of `late` is in the log but not yet in the views: nothing is swept meanwhile.
    execute(log.as_ref(), &Command::new(Uuid::now_v7(), case, township, attach(&late)), now).await.unwrap();
    let later = now + chrono::Duration::hours(2);
    let hour = Duration::from_secs(3600);
    assert_eq!(sweep_orphans(store.as_ref(), &views, log.as_ref(), later, hour).await.unwrap(), 0);
    projector.catch_up(log.as_ref(), true, |_, _| {}).await.unwrap();
    assert_eq!(sweep_orphans(store.as_ref(), &views, log.as_ref(), later, hour).await.unwrap(), 1);
    assert!(store.get(&sha256_hex(&orphan)).await.unwrap().is_none(), "the orphan is gone");
    for kept in [&named, &late] {
        assert_eq!(store.get(&sha256_hex(kept)).await.unwrap().as_deref(), Some(kept.as_slice()));
    }
    assert_eq!(views.file_totals().unwrap(), (2, 2 * named.len() as u64));
}

on_both!(evidence_files_go_where_the_log_is_and_come_back_the_same, the_sweeper_removes_only_old_files_no_event_names,);
