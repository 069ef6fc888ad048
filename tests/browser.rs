//! The dashboard in a real headless Chromium: a township raises a whistle through the form, a
//! department reports in from its view, and a supervisor's page shows a breach alert arriving
//! live, without a reload. Screenshots go to test-artifacts/.

#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/serve_process.rs"]
mod serve_process;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use serve_process::ServeProcess;
use webdriver::Browser;

/// The 报到 clock in this test: short, so the breach happens while the page is open.
const POLICY: &str = "warn_at_percent = 0\n[clocks.ack]\ntarget = \"10s\"\n";

fn serve(data: &std::path::Path) -> ServeProcess {
    std::fs::write(data.join("policy.toml"), POLICY).unwrap();
    let policy = data.join("policy.toml");
    ServeProcess::start(data, &["--policy", policy.to_str().unwrap()])
}

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-artifacts")
}

async fn sign_in(browser: &Browser, token: &str) {
    browser.type_into("#token", token).await;
    browser.click("#signin").await;
    browser.wait_for("#signout", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn township_raises_department_reports_in_supervisor_sees_the_breach_live() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path());
    let url = serve.url();
    let browser = Browser::start().await;
    let wait = Duration::from_secs(15);

    // A township raises a whistle through the form.
    browser.goto(&url).await;
    sign_in(&browser, &serve.token("东坝镇")).await;
    browser.type_into("#raise-title", "村口河道垃圾堆积").await;
    browser.type_into("#raise-description", "需住建局协同清理").await;
    browser.click("input[name=dept][value='住建局']").await;
    browser.click("#raise-submit").await;
    browser
        .wait_until("return [...document.querySelectorAll('.whistle-row')].some(r => r.textContent.includes('村口河道垃圾堆积'))", wait)
        .await;
    browser.wait_until("return !!document.querySelector('.whistle-row [data-dept=\"住建局\"]') && document.querySelector('.whistle-row [data-dept=\"住建局\"]').textContent.includes('待报到')", wait).await;
    browser.screenshot(&artifacts().join("dashboard-township.png")).await;

    // The department reports in from its view.
    browser.click("#signout").await;
    sign_in(&browser, &serve.token("住建局")).await;
    browser.wait_for(".awaiting-row .ack-button", wait).await;
    browser.wait_until("return document.querySelector('.awaiting-row [data-due]').textContent.length > 0", wait).await;
    browser.screenshot(&artifacts().join("dashboard-department.png")).await;
    browser.click(".awaiting-row .ack-button").await;
    browser
        .wait_until("return !document.querySelector('.awaiting-row') && !!document.querySelector('.working-row')", wait)
        .await;
    // A new summons reaches the open page live: told at once, the list updated, no reload.
    browser.exec("window.__noReload = true; return true;").await;
    let summon = reqwest::Client::new()
        .post(format!("{url}/v1/whistles"))
        .bearer_auth(serve.token("东坝镇"))
        .json(&serde_json::json!({ "title": "桥梁护栏破损", "description": "需尽快修复", "departments": ["住建局"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(summon.status(), 201);
    browser
        .wait_until(
            "return document.querySelector('#message').textContent.includes('【召集报到】东坝镇吹哨「桥梁护栏破损」')",
            wait,
        )
        .await;
    browser
        .wait_until(
            "return [...document.querySelectorAll('.awaiting-row')].some(r => r.textContent.includes('桥梁护栏破损'))",
            wait,
        )
        .await;
    assert_eq!(browser.exec("return window.__noReload === true;").await, serde_json::Value::Bool(true), "no reload");

    // A second whistle summons a department that will not report in.
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{url}/v1/whistles"))
        .bearer_auth(serve.token("西湖街道"))
        .json(
            &serde_json::json!({ "title": "主干道路灯损坏", "description": "夜间通行隐患", "departments": ["交通局"] }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // The supervisor's open page receives the breach live.
    browser.click("#signout").await;
    sign_in(&browser, &serve.token("区委督查室")).await;
    browser.wait_until("return document.querySelector('#stream-state').textContent.includes('已连接')", wait).await;
    browser.exec("window.__noReload = true; return true;").await;
    browser
        .wait_until(
            "return [...document.querySelectorAll('#live-alerts .alert-row.breach')].some(r => r.textContent.includes('主干道路灯损坏') && r.textContent.includes('交通局'))",
            Duration::from_secs(40),
        )
        .await;
    assert_eq!(browser.exec("return window.__noReload === true;").await, serde_json::Value::Bool(true), "no reload");
    browser.wait_for(".stats-row", wait).await;
    browser.wait_for("#stats svg.trend", wait).await;
    browser.wait_for("#stats-xlsx", wait).await;
    browser.screenshot(&artifacts().join("dashboard-supervisor.png")).await;
    // The link a 通报 message carries opens that month's 三率.
    browser.goto(&format!("{url}/#/reports/monthly/2026-09")).await;
    browser.wait_for("#report-open", wait).await;
    browser.wait_until("return document.querySelector('#stats-month').value === '2026-09'", wait).await;

    // An admin publishes next year's holiday schedule from the page.
    browser.click("#signout").await;
    sign_in(&browser, &serve.token("管理员")).await;
    browser.wait_for("#cal-publish", wait).await;
    browser.type_into("#cal-year", "2027").await;
    browser
        .exec(
            "document.querySelector('#cal-toml').value = 'year = 2027\\nnotice = \"国务院办公厅关于2027年部分节假日安排的通知\"\\n\
             holidays = [ { name = \"元旦\", from = \"2027-01-01\", to = \"2027-01-03\" } ]\\nworkdays = []\\n'; return true;",
        )
        .await;
    browser.click("#cal-publish").await;
    browser.wait_until("return document.querySelector('#message').textContent.includes('已发布 2027')", wait).await;
    let due = std::process::Command::new(env!("CARGO_BIN_EXE_whistle"))
        .args(["calendar", "due", "--from", "2026-12-31T10:00:00+08:00", "--working-days", "1", "--data"])
        .arg(&serve.data)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&due.stdout).trim(), "2027-01-05T00:00:00+08:00", "the published year counts");

    // A sign-in link made by `whistle token add --link` signs in without pasting the token,
    // and the token leaves the address bar.
    browser.click("#signout").await;
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_whistle"))
        .args([
            "token",
            "add",
            "--role",
            "department",
            "--unit",
            "城管局",
            "--label",
            "王科长",
            "--link",
            &url,
            "--data",
        ])
        .arg(&serve.data)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let link = String::from_utf8_lossy(&made.stdout).lines().nth(1).unwrap().to_owned();
    assert!(link.starts_with(&format!("{url}/#signin=wt_")), "{link}");
    browser.goto(&link).await;
    browser
        .wait_until(
            "return document.querySelector('#who') && document.querySelector('#who').textContent.includes('城管局')",
            wait,
        )
        .await;
    browser.wait_until("return !location.href.includes('wt_') && location.hash === ''", wait).await;
    browser.quit().await;
    assert!(artifacts().join("dashboard-supervisor.png").metadata().unwrap().len() > 10_000);
}
