//! The 通报 and the per-case export over HTTP: rankings with the change against the previous
//! period, and the same figures as JSON, CSV (read back with a CSV reader), Excel (read back
//! with calamine) and a printable page; the export's rows, headers and scope.

use std::io::Cursor;
use std::time::Duration;

use calamine::{Data, Reader};
use chrono::Duration as ChronoDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[path = "support/api_server.rs"]
mod api_server;
#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/webhook.rs"]
mod webhook;
use api_server::TestServer;

const T_IN: &str = "township:东坝镇";
const T_OUT: &str = "township:西湖街道";
const HOUSING: &str = "department:住建局";
const URBAN: &str = "department:城管局";
const SUP: &str = "supervisor:区委督查室";
const START: &str = "2026-03-02T10:00:00+08:00";

async fn raise(s: &TestServer) -> String {
    let body =
        json!({ "title": "河道垃圾堆积", "description": "村口河道需多部门协调", "departments": ["住建局", "城管局"] });
    let (status, body) = s.call("POST", "/v1/whistles", Some(T_IN), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["case"]["id"].as_str().unwrap().to_owned()
}

async fn ack(s: &TestServer, id: &str, who: &str) {
    let (status, body) = s.call("POST", &format!("/v1/whistles/{id}/ack"), Some(who), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// March: 住建局 reports in on time, 城管局 a day late. April: both on time.
async fn two_months(s: &TestServer) {
    let march = raise(s).await;
    ack(s, &march, HOUSING).await;
    s.clock.advance(ChronoDuration::hours(25));
    // The watchdog records 城管局's breach before it reports in.
    for _ in 0..200 {
        s.settle().await;
        let (_, alerts) = s.call("GET", "/v1/alerts", Some(SUP), None).await;
        if alerts["items"].as_array().is_some_and(|a| a.iter().any(|x| x["stage"] == "breach")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ack(s, &march, URBAN).await;
    s.clock.advance(ChronoDuration::days(31));
    let april = raise(s).await;
    ack(s, &april, HOUSING).await;
    ack(s, &april, URBAN).await;
    s.settle().await;
}

async fn get(s: &TestServer, path: &str, who: &str, accept: Option<&str>) -> reqwest::Response {
    let mut req = s.http.get(format!("{}{path}", s.base)).bearer_auth(s.token(who)).timeout(Duration::from_secs(20));
    if let Some(accept) = accept {
        req = req.header("Accept", accept);
    }
    req.send().await.unwrap()
}

fn rows<'a>(report: &'a Value, section: &str) -> &'a Vec<Value> {
    report[section].as_array().unwrap_or_else(|| panic!("no {section} in {report}"))
}

fn row<'a>(report: &'a Value, section: &str, unit: &str) -> &'a Value {
    rows(report, section).iter().find(|r| r["unit"] == unit).unwrap_or_else(|| panic!("no {unit} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_report_ranks_units_and_shows_the_change_against_the_month_before() {
    let s = TestServer::start(START).await;
    two_months(&s).await;
    let (status, march) = s.call("GET", "/v1/reports/monthly?period=2026-03", Some(SUP), None).await;
    assert_eq!(status, StatusCode::OK, "{march}");
    assert_eq!(march["title"], "2026年3月三率通报");
    assert_eq!((march["from"].as_str(), march["to"].as_str()), (Some("2026-03-01"), Some("2026-03-31")));
    assert_eq!(march["previous"]["period"], "2026-02");
    let housing = row(&march, "departments", "住建局");
    assert_eq!((housing["rank"].as_u64(), housing["response_rate"].as_f64()), (Some(1), Some(1.0)));
    let urban = row(&march, "departments", "城管局");
    assert_eq!(urban["rank"], 2);
    assert_eq!((urban["response_numerator"].as_i64(), urban["response_denominator"].as_i64()), (Some(0), Some(1)));
    // Departments with nothing counted come last, with null rates, sharing a rank.
    let transport = row(&march, "departments", "交通局");
    assert_eq!((transport["rank"].as_u64(), transport["response_rate"].is_null()), (Some(3), true));
    assert_eq!(row(&march, "departments", "生态环境局")["rank"], 3);
    // The township: two summonses, one on time.
    assert_eq!(row(&march, "townships", "东坝镇")["response_rate"], 0.5);

    let (_, april) = s.call("GET", "/v1/reports/monthly?period=2026-04", Some(SUP), None).await;
    let urban = row(&april, "departments", "城管局");
    assert_eq!(urban["response_rate"], 1.0);
    assert_eq!(urban["change"]["response_rate"], 1.0, "{urban}");
    assert_eq!(row(&april, "departments", "住建局")["change"]["response_rate"], 0.0);
    assert!(row(&april, "departments", "交通局")["change"]["response_rate"].is_null());
    // Without a period: the last whole month (the clock is in April).
    let (_, last) = s.call("GET", "/v1/reports/monthly", Some(SUP), None).await;
    assert_eq!(last["period"], "2026-03");
    // Weekly: ISO weeks.
    let (status, week) = s.call("GET", "/v1/reports/weekly?period=2026-W10", Some(SUP), None).await;
    assert_eq!(status, StatusCode::OK, "{week}");
    assert_eq!((week["from"].as_str(), week["to"].as_str()), (Some("2026-03-02"), Some("2026-03-08")));
    assert_eq!(row(&week, "departments", "城管局")["response_denominator"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_reads_the_same_as_csv_excel_and_a_printable_page() {
    let s = TestServer::start(START).await;
    two_months(&s).await;
    let path = "/v1/reports/monthly?period=2026-03";
    let res = get(&s, path, SUP, Some("text/csv")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename*=UTF-8''"));
    let text = res.text().await.unwrap();
    let text = text.strip_prefix('\u{feff}').expect("a byte-order mark for Excel");
    // Sections: a title line, then a table.
    let first = text.split("\r\n\r\n").next().unwrap();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(first.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(&records[0][0], "部门");
    let header: Vec<&str> = records[1].iter().take(5).collect();
    assert_eq!(header, ["排名", "部门", "案件数", "不计入", "响应率"]);
    let urban = records.iter().find(|r| r.get(1) == Some("城管局")).unwrap();
    assert_eq!((&urban[0], &urban[4], &urban[5], &urban[6]), ("2", "0.0%", "0", "1"));

    let res = get(&s, path, SUP, Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.bytes().await.unwrap();
    let mut book: calamine::Xlsx<_> = calamine::Xlsx::new(Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(book.sheet_names(), vec!["部门", "乡镇（街道）", "减负办", "编办"]);
    let sheet = book.worksheet_range("部门").unwrap();
    let header: Vec<String> = sheet.rows().next().unwrap().iter().map(|c| c.to_string()).collect();
    assert_eq!(&header[..4], ["排名", "部门", "案件数", "不计入"]);
    let urban = sheet.rows().find(|r| r.get(1) == Some(&Data::String("城管局".into()))).unwrap();
    assert_eq!(urban[0], Data::Float(2.0));
    assert_eq!(urban[4], Data::Float(0.0), "响应率 is a number formatted as a percentage");
    assert_eq!((urban[5].clone(), urban[6].clone()), (Data::Float(0.0), Data::Float(1.0)));

    let res = get(&s, &format!("{path}&format=html"), SUP, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(res.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let page = res.text().await.unwrap();
    assert!(page.contains("<h1>2026年3月三率通报</h1>") && page.contains("@media print"), "{page}");
    assert!(!page.contains("http://") && !page.contains("https://"), "no external assets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_for_supervisors_and_say_what_is_wrong_with_a_period() {
    let s = TestServer::start(START).await;
    let (status, _) = s.call("GET", "/v1/reports/monthly", Some(T_IN), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = s.call("GET", "/v1/reports/monthly?period=2026-13", Some(SUP), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["message"].as_str().unwrap().contains("2026-11"), "{body}");
    let (status, _) = s.call("GET", "/v1/reports/weekly?period=2026-11", Some(SUP), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s.call("GET", "/v1/reports/yearly", Some(SUP), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.call("GET", "/v1/stats?format=pdf", Some(SUP), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_has_a_row_per_case_part_in_the_callers_scope() {
    let s = TestServer::start(START).await;
    two_months(&s).await;
    let (_, fb) = s
        .call(
            "POST",
            "/v1/feedback",
            Some(T_IN),
            Some(json!({ "topic": "excessive_paperwork", "body": "材料太多", "anonymous": true })),
        )
        .await;
    let feedback_id = fb["case"]["id"].as_str().unwrap().to_owned();
    s.settle().await;
    let path = "/v1/cases/export?from=2026-03-01&to=2026-04-30";
    let res = get(&s, path, SUP, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(&headers[..4], ["案件编号", "类型", "标题", "乡镇（街道）/提交单位"]);
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    // Two whistles of two departments each, and one feedback item.
    assert_eq!(records.len(), 5, "{text}");
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let late = records.iter().find(|r| r[column("响应情况")] == *"超时响应").expect("城管局's late report-in");
    assert_eq!(&late[column("承办单位")], "城管局");
    assert_eq!(&late[column("超时次数")], "1");
    let feedback = records.iter().find(|r| r[column("案件编号")] == *feedback_id.as_str()).unwrap();
    assert_eq!((&feedback[column("类型")], &feedback[column("乡镇（街道）/提交单位")]), ("意见直通车", "匿名"));
    assert_eq!(&feedback[column("承办单位")], "市减负办");

    // A period selects by opening day: March alone has one whistle.
    let text = get(&s, "/v1/cases/export?from=2026-03-01&to=2026-03-31", SUP, None).await.text().await.unwrap();
    assert_eq!(csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes()).records().count(), 2);
    // Scope: another township sees none of these; a department sees its own parts' cases.
    let text = get(&s, path, T_OUT, None).await.text().await.unwrap();
    assert_eq!(csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes()).records().count(), 0);
    let text = get(&s, &format!("{path}&kind=whistle"), HOUSING, None).await.text().await.unwrap();
    assert_eq!(csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes()).records().count(), 4);

    let res = get(&s, path, SUP, Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.bytes().await.unwrap();
    let mut book: calamine::Xlsx<_> = calamine::Xlsx::new(Cursor::new(bytes.to_vec())).unwrap();
    let sheet = book.worksheet_range("案件明细").unwrap();
    assert_eq!(sheet.rows().count(), 6, "a header and five rows");
    assert_eq!(sheet.rows().next().unwrap()[11], Data::String("响应情况".into()));
    let (status, body) = s.call("GET", "/v1/cases/export?kind=case", Some(SUP), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

// ------------------------------------------------------------------- scheduled publication

fn supervisors_webhook(url: String) -> whistle::alerts::AlertConfig {
    whistle::alerts::AlertConfig {
        webhooks: vec![whistle::alerts::WebhookConfig {
            name: "督查室".into(),
            url,
            format: whistle::alerts::WebhookFormat::Wecom,
            stages: vec!["report".into()],
            units: vec![],
            attempts: None,
        }],
        ..whistle::alerts::AlertConfig::default()
    }
}

fn beijing(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&chrono::Utc)
}

/// One embedded instance on a manual clock, sending to a webhook that takes 通报 only.
struct Instance {
    receiver: webhook::Receiver,
    log: std::sync::Arc<dyn whistle::log::EventLog>,
    clock: whistle::clock::ManualClock,
    node: whistle::service::Node,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start(at: &str, reports: whistle::reports::ReportSchedule) -> Instance {
        let receiver = webhook::Receiver::start(0).await;
        let dir = tempfile::tempdir().unwrap();
        let handle = whistle::service::LogHandle::open(dir.path(), None).await.unwrap();
        let log = handle.log();
        let views = whistle::projector::views::Views::open(dir.path().join("views")).unwrap();
        let clock = whistle::clock::ManualClock::new(beijing(at));
        let config = whistle::service::NodeConfig {
            alerts: supervisors_webhook(receiver.url()),
            reports,
            ..whistle::service::NodeConfig::default()
        };
        let node = whistle::service::Node::start(log.clone(), views, std::sync::Arc::new(clock.clone()), config)
            .await
            .unwrap();
        Instance { receiver, log, clock, node, _dir: dir }
    }
}

/// A whistle raised now, so that the period has something to report.
async fn raise_on(log: &dyn whistle::log::EventLog, clock: &whistle::clock::ManualClock) {
    use whistle::clock::Clock;
    let body = whistle::domain::command::CommandBody::RaiseWhistle {
        title: "河道垃圾堆积".into(),
        description: "需多部门协调".into(),
        departments: vec!["住建局".into()],
        category: None,
        location: None,
        urgency: whistle::domain::event::Urgency::Normal,
    };
    let actor = whistle::domain::event::Actor::new(whistle::domain::event::Role::Township, "东坝镇");
    let cmd = whistle::domain::command::Command::new(uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), actor, body);
    whistle::execute::execute(log, &cmd, clock.now()).await.unwrap();
}

/// Report records stored for a period's case.
async fn stored_reports(log: &dyn whistle::log::EventLog, kind: &str, period: &str) -> usize {
    let (case_id, _) = whistle::domain::decide::report_ids(kind, period);
    log.read_case(case_id).await.unwrap().len()
}

/// The 2026 National Day holiday runs 1–7 October: September's 通报 waits for Thursday 8
/// October, 09:00, and goes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_report_is_published_once_on_the_first_working_day_after_the_holiday() {
    let link = Some("https://whistle.example.gov.cn".to_owned());
    let one =
        Instance::start("2026-09-30T20:00:00+08:00", whistle::reports::ReportSchedule { link, ..Default::default() })
            .await;
    let (log, clock) = (one.log.as_ref(), &one.clock);
    raise_on(log, clock).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored_reports(log, "monthly", "2026-08").await, 0, "August's is long past: not announced");
    for day in ["2026-10-01T09:00:00+08:00", "2026-10-07T23:59:00+08:00", "2026-10-08T08:59:59+08:00"] {
        clock.set(beijing(day));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(stored_reports(log, "monthly", "2026-09").await, 0, "not yet at {day}");
    }
    clock.set(beijing("2026-10-08T09:00:00+08:00"));
    let bodies = one.receiver.wait_for(1).await;
    let content = bodies[0]["markdown"]["content"].as_str().unwrap();
    assert!(content.contains("【通报】2026年9月三率通报已发布"), "{content}");
    assert!(content.contains("https://whistle.example.gov.cn/#/reports/monthly/2026-09"), "{content}");
    clock.set(beijing("2026-10-09T10:00:00+08:00"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(one.receiver.bodies().len(), 1, "once (the webhook takes 通报 only)");
    assert_eq!(stored_reports(log, "monthly", "2026-09").await, 1);
    one.node.stop().await;
}

/// Two instances on one NATS stream, both waking at 09:00: one 通报 stored, one message sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_nats_publish_and_deliver_the_report_once() {
    let server = nats_server::NatsServer::start();
    let receiver = webhook::Receiver::start(0).await;
    let clock = whistle::clock::ManualClock::new(beijing("2026-11-30T18:00:00+08:00"));
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut logs: Vec<std::sync::Arc<dyn whistle::log::EventLog>> = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let options = whistle::log::nats::NatsOptions::new(server.url());
        let log: std::sync::Arc<dyn whistle::log::EventLog> =
            std::sync::Arc::new(whistle::log::nats::NatsLog::connect(&options).await.unwrap());
        let views = whistle::projector::views::Views::open(dir.path().join("views")).unwrap();
        let config = whistle::service::NodeConfig {
            alerts: supervisors_webhook(receiver.url()),
            ..whistle::service::NodeConfig::default()
        };
        nodes.push(
            whistle::service::Node::start(log.clone(), views, std::sync::Arc::new(clock.clone()), config)
                .await
                .unwrap(),
        );
        logs.push(log);
        dirs.push(dir);
    }
    raise_on(logs[1].as_ref(), &clock).await;
    // Tuesday 1 December 2026 is a working day.
    clock.set(beijing("2026-12-01T09:00:00+08:00"));
    let bodies = receiver.wait_for(1).await;
    assert!(bodies[0]["markdown"]["content"].as_str().unwrap().contains("2026年11月三率通报"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.bodies().len(), 1, "delivered once (the webhook takes 通报 only)");
    assert_eq!(stored_reports(logs[0].as_ref(), "monthly", "2026-11").await, 1, "stored once");
    for node in nodes {
        node.stop().await;
    }
}

/// A month in which nothing was opened has nothing to announce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_report_is_announced_for_a_period_in_which_nothing_was_opened() {
    let one = Instance::start("2026-11-30T18:00:00+08:00", whistle::reports::ReportSchedule::default()).await;
    one.clock.set(beijing("2026-12-01T09:00:00+08:00"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stored_reports(one.log.as_ref(), "monthly", "2026-11").await, 0);
    assert!(one.receiver.bodies().is_empty());
    one.node.stop().await;
}

/// A 通报 is computed from views that have reached the log's head: a service that starts at
/// publication time, its views still catching up, waits for them (before, it found the month
/// empty and announced nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_waits_for_the_views_to_reach_the_log() {
    use whistle::clock::Clock;
    let dir = tempfile::tempdir().unwrap();
    let handle = whistle::service::LogHandle::open(dir.path(), None).await.unwrap();
    let log = handle.log();
    let november = whistle::clock::ManualClock::new(beijing("2026-11-30T17:00:00+08:00"));
    raise_on(log.as_ref(), &november).await;
    let views = whistle::projector::views::Views::open(dir.path().join("views")).unwrap();
    let (checkpoint, watched) = tokio::sync::watch::channel(0u64);
    let clock = whistle::clock::ManualClock::new(beijing("2026-12-01T09:30:00+08:00"));
    let publisher = whistle::reports::Publisher {
        executor: std::sync::Arc::new(whistle::execute::Executor::new(log.clone())),
        log: log.clone(),
        checkpoint: watched,
        views: views.clone(),
        clock: std::sync::Arc::new(clock.clone()),
        calendar: tokio::sync::watch::channel(std::sync::Arc::new(whistle::domain::Calendar::official())).1,
        schedule: whistle::reports::ReportSchedule::default(),
    };
    let period = whistle::reports::Period::parse(whistle::reports::PeriodKind::Monthly, "2026-11").unwrap();
    let now = clock.now();
    let publishing = tokio::spawn(async move { publisher.publish(&period, now).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!publishing.is_finished(), "it waits while the views are behind the log");
    let mut projector = whistle::projector::Projector::new(
        views,
        whistle::domain::SlaPolicy::default(),
        whistle::domain::Calendar::official(),
    )
    .unwrap();
    projector.catch_up(log.as_ref(), true, |_, _| {}).await.unwrap();
    checkpoint.send_replace(log.head().await.unwrap());
    assert_eq!(publishing.await.unwrap(), Ok(true), "published once the views have the November whistle");
    assert_eq!(stored_reports(log.as_ref(), "monthly", "2026-11").await, 1);
}
