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

/// An 8×8 red PNG, as a phone's photo stands in for it.
const PHOTO_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x08, 0x00, 0x00, 0x00, 0x08, 0x08, 0x02, 0x00, 0x00, 0x00, 0x4b, 0x6d, 0x29, 0xdc, 0x00, 0x00, 0x00, 0x11, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x38, 0xa1, 0xa1, 0x81, 0x15, 0x31, 0x0c, 0x2d, 0x09, 0x00, 0x82, 0x5d, 0x46,
    0x01, 0x6a, 0x8d, 0x16, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

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
        .wait_until("return [...document.querySelectorAll('#my-whistles .case-row')].some(r => r.textContent.includes('村口河道垃圾堆积'))", wait)
        .await;
    browser.wait_until("return !!document.querySelector('#my-whistles .case-row [data-dept=\"住建局\"]') && document.querySelector('#my-whistles .case-row [data-dept=\"住建局\"]').textContent.includes('待报到')", wait).await;
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

// ------------------------------------------------------------------ the whole workflow

/// Policy for the workflow: working departments run a resolve clock they may ask to extend.
const WORKFLOW_POLICY: &str = "[clocks.whistle_resolve]\nenabled = true\nworking_days = 10\n";

const WAIT: Duration = Duration::from_secs(15);

/// Signs out whoever is signed in, then signs in as `unit` through the form.
async fn switch_to(browser: &Browser, serve: &ServeProcess, unit: &str) {
    if browser.exec("return !!document.querySelector('#signout');").await == serde_json::Value::Bool(true) {
        browser.click("#signout").await;
    }
    browser.wait_for("#token", WAIT).await;
    browser.wait_until("return !document.querySelector('#signin-panel').classList.contains('hidden');", WAIT).await;
    sign_in(browser, &serve.token(unit)).await;
    let check = format!("return document.querySelector('#who').textContent.includes({});", serde_json::json!(unit));
    browser.wait_until(&check, WAIT).await;
}

/// Opens a case's page through the address bar (as a shared link would).
async fn open_case(browser: &Browser, url: &str, id: &str) {
    browser.goto(&format!("{url}/#/cases/{id}")).await;
    browser.wait_for(&format!("#case[data-case='{id}']"), WAIT).await;
}

/// Clicks an action's button on the case page, fills its form and sends it.
async fn take(browser: &Browser, action: &str, fields: &[(&str, &str)]) {
    browser.click(&format!("#actions button[data-action='{action}']")).await;
    if fields.is_empty() && browser.find_now("#act-submit").await.is_none() {
        return;
    }
    for (name, value) in fields {
        let css = format!("#act-{name}");
        let tag = browser.exec(&format!("return document.querySelector('{css}').tagName;")).await;
        if tag == "SELECT" {
            let set = format!(
                "const s = document.querySelector('{css}'); s.value = {}; return true;",
                serde_json::json!(value)
            );
            browser.exec(&set).await;
        } else {
            browser.type_into(&css, value).await;
        }
    }
    browser.click("#act-submit").await;
}

/// Waits until the case page's status reads `status`.
async fn status_is(browser: &Browser, status: &str) {
    let script = format!(
        "const s = document.querySelector('#case-status'); return !!s && s.textContent === {};",
        serde_json::json!(status)
    );
    browser.wait_until(&script, WAIT).await;
}

/// Waits until the case page's timeline has a line containing `text`.
async fn timeline_has(browser: &Browser, text: &str) {
    let script = format!(
        "return [...document.querySelectorAll('#timeline li')].some(li => li.textContent.includes({}));",
        serde_json::json!(text)
    );
    browser.wait_until(&script, WAIT).await;
}

/// Waits until a department's part on the case page reads `status`.
async fn part_is(browser: &Browser, dept: &str, status: &str) {
    let script = format!(
        "const r = document.querySelector('.part-row[data-dept=\"{dept}\"]'); return !!r && r.dataset.part === {};",
        serde_json::json!(status)
    );
    browser.wait_until(&script, WAIT).await;
}

/// The page shows exactly the buttons for the actions the API lists for this caller, which
/// `tests/api.rs` checks against the permission matrix: no button the API would refuse.
async fn buttons_match_the_api(browser: &Browser, serve: &ServeProcess, unit: &str, id: &str) -> Vec<String> {
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/cases/{id}", serve.url()))
        .bearer_auth(serve.token(unit))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = |action: &serde_json::Value| {
        format!(
            "{}|{}|{}",
            action["action"].as_str().unwrap_or_default(),
            action["clock"].as_str().unwrap_or_default(),
            action["number"].as_u64().map(|n| n.to_string()).unwrap_or_default()
        )
    };
    let mut from_api: Vec<String> = answer["actions"].as_array().unwrap().iter().map(key).collect();
    let shown = browser
        .exec(
            "return [...document.querySelectorAll('#app button[data-action]')].map(b => \
             b.dataset.action + '|' + (b.dataset.clock || '') + '|' + (b.dataset.number || ''));",
        )
        .await;
    let mut on_page: Vec<String> = shown.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    from_api.sort();
    on_page.sort();
    assert_eq!(on_page, from_api, "{unit}: the page's buttons are the API's actions");
    on_page.iter().map(|k| k.split('|').next().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_carries_a_whistle_and_a_feedback_item_through_the_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), WORKFLOW_POLICY).unwrap();
    let policy = dir.path().join("policy.toml");
    let serve = ServeProcess::start(dir.path(), &["--policy", policy.to_str().unwrap()]);
    let url = serve.url();
    let browser = Browser::start().await;
    browser.goto(&url).await;

    // 东坝镇 raises a whistle summoning two departments.
    switch_to(&browser, &serve, "东坝镇").await;
    browser.type_into("#raise-title", "河道淤塞影响排涝").await;
    browser.type_into("#raise-description", "汛期前需清淤，涉及住建、城管").await;
    browser.click("input[name=dept][value='住建局']").await;
    browser.click("input[name=dept][value='城管局']").await;
    browser.click("#raise-submit").await;
    browser
        .wait_until("return [...document.querySelectorAll('#my-whistles .case-row')].some(r => r.textContent.includes('河道淤塞影响排涝') && r.textContent.includes('城管局 待报到'))", WAIT)
        .await;
    let id = browser
        .exec("return [...document.querySelectorAll('#my-whistles .case-row')].find(r => r.textContent.includes('河道淤塞影响排涝')).dataset.case;")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    // Search finds it by a piece of its description (Enter in the box, from the keyboard).
    browser.type_into("#my-whistles-q", "清淤\u{E007}").await;
    browser.wait_until("return document.querySelectorAll('#my-whistles .case-row').length === 1", WAIT).await;
    browser.type_into("#my-whistles-q", "路灯").await;
    browser.click("#my-whistles-search").await;
    browser.wait_until("return document.querySelectorAll('#my-whistles .case-row').length === 0", WAIT).await;
    open_case(&browser, &url, &id).await;
    let township = buttons_match_the_api(&browser, &serve, "东坝镇", &id).await;
    assert!(township.contains(&"withdraw".to_owned()) && !township.contains(&"ack".to_owned()), "{township:?}");
    browser.screenshot(&artifacts().join("workflow-township.png")).await;

    // 住建局 reports in from its list with one click.
    switch_to(&browser, &serve, "住建局").await;
    browser.wait_for(&format!(".awaiting-row[data-case='{id}'] .ack-button"), WAIT).await;
    browser.click(&format!(".awaiting-row[data-case='{id}'] .ack-button")).await;
    browser.wait_for(&format!(".working-row[data-case='{id}']"), WAIT).await;

    // 城管局 opens the case and declines it with a reason.
    switch_to(&browser, &serve, "城管局").await;
    open_case(&browser, &url, &id).await;
    let department = buttons_match_the_api(&browser, &serve, "城管局", &id).await;
    assert!(department.contains(&"ack".to_owned()) && !department.contains(&"withdraw".to_owned()));
    // An empty reason is refused by the API, in Chinese, and nothing changes.
    take(&browser, "decline", &[]).await;
    browser
        .wait_until("return document.querySelector('#message').textContent.includes('「理由」不能为空')", WAIT)
        .await;
    browser.type_into("#act-reason", "河道清淤属住建局、生态环境局职责").await;
    browser.click("#act-submit").await;
    part_is(&browser, "城管局", "declined").await;
    timeline_has(&browser, "城管局 提出异议").await;

    // The coordinator assigns 生态环境局 from its disputes list.
    switch_to(&browser, &serve, "市委编办").await;
    browser.wait_for(&format!(".dispute-row[data-case='{id}']"), WAIT).await;
    browser.click(&format!(".dispute-row[data-case='{id}'] a.case-link")).await;
    browser.wait_for(&format!("#case[data-case='{id}']"), WAIT).await;
    buttons_match_the_api(&browser, &serve, "市委编办", &id).await;
    browser.click("#actions button[data-action='assign']").await;
    browser.click("input[name=act-dept][value='生态环境局']").await;
    browser.click("#act-submit").await;
    part_is(&browser, "生态环境局", "summoned").await;
    part_is(&browser, "城管局", "released").await;
    browser.screenshot(&artifacts().join("workflow-coordinator.png")).await;

    // 生态环境局 reports in on the case page.
    switch_to(&browser, &serve, "生态环境局").await;
    open_case(&browser, &url, &id).await;
    take(&browser, "ack", &[]).await;
    part_is(&browser, "生态环境局", "acknowledged").await;

    // 住建局 asks to extend its resolve clock.
    switch_to(&browser, &serve, "住建局").await;
    open_case(&browser, &url, &id).await;
    buttons_match_the_api(&browser, &serve, "住建局", &id).await;
    take(&browser, "extension", &[("amount", "2"), ("reason", "需等汛期水位回落")]).await;
    browser.wait_for(".extension-row[data-number='1'][data-extension='pending']", WAIT).await;
    browser.screenshot(&artifacts().join("workflow-department.png")).await;

    // A supervisor finds it among its to-dos and approves it.
    switch_to(&browser, &serve, "区委督查室").await;
    browser.wait_for(&format!("#todo .case-row[data-case='{id}']"), WAIT).await;
    browser.click(&format!("#todo .case-row[data-case='{id}'] a.case-link")).await;
    browser.wait_for(&format!("#case[data-case='{id}']"), WAIT).await;
    let supervisor = buttons_match_the_api(&browser, &serve, "区委督查室", &id).await;
    assert!(supervisor.contains(&"approve".to_owned()) && supervisor.contains(&"refuse".to_owned()), "{supervisor:?}");
    take(&browser, "approve", &[]).await;
    browser.wait_for(".extension-row[data-number='1'][data-extension='approved']", WAIT).await;
    timeline_has(&browser, "批准第1号延期申请").await;
    browser.screenshot(&artifacts().join("workflow-supervisor.png")).await;

    // 住建局: progress, then handled; 生态环境局: handled. The whistle awaits the township.
    switch_to(&browser, &serve, "住建局").await;
    open_case(&browser, &url, &id).await;
    take(&browser, "progress", &[("note", "已调派两台清淤船")]).await;
    timeline_has(&browser, "已调派两台清淤船").await;
    take(&browser, "handled", &[("summary", "清淤完成")]).await;
    part_is(&browser, "住建局", "handled").await;
    switch_to(&browser, &serve, "生态环境局").await;
    open_case(&browser, &url, &id).await;
    take(&browser, "handled", &[("summary", "水质检测达标")]).await;
    status_is(&browser, "待确认").await;

    // 东坝镇 is not satisfied yet and reopens; both report handled again.
    switch_to(&browser, &serve, "东坝镇").await;
    open_case(&browser, &url, &id).await;
    take(&browser, "reopen", &[("reason", "下游仍有淤积")]).await;
    status_is(&browser, "办理中").await;
    for (dept, summary) in [("住建局", "下游清淤完成"), ("生态环境局", "复测达标")] {
        switch_to(&browser, &serve, dept).await;
        open_case(&browser, &url, &id).await;
        take(&browser, "handled", &[("summary", summary)]).await;
        part_is(&browser, dept, "handled").await;
    }
    status_is(&browser, "待确认").await;

    // 东坝镇 confirms and rates each department.
    switch_to(&browser, &serve, "东坝镇").await;
    open_case(&browser, &url, &id).await;
    browser.click("#actions button[data-action='confirm']").await;
    browser
        .exec(
            "document.querySelector('#act-satisfaction').value = 'basically_satisfied'; \
                  document.querySelector('.dept-rating[data-dept=\"住建局\"]').value = 'satisfied'; \
                  document.querySelector('.dept-rating[data-dept=\"生态环境局\"]').value = 'unsatisfied'; return true;",
        )
        .await;
    browser.click("#act-submit").await;
    status_is(&browser, "已办结").await;
    timeline_has(&browser, "住建局满意，生态环境局不满意").await;
    browser.wait_until("return !!document.querySelector('#no-actions')", WAIT).await;

    // Anonymous feedback: submitted, answered by the office, rated on the follow-up page.
    browser.goto(&format!("{url}/#/")).await;
    browser.wait_for("#fb-body", WAIT).await;
    browser.type_into("#fb-body", "同一活动要求报送四类材料").await;
    browser.click("#fb-anonymous").await;
    browser.click("#fb-submit").await;
    browser.wait_for("#fb-code-value", WAIT).await;
    let code = browser.text("#fb-code-value").await;
    assert!(code.starts_with("fu-"), "{code}");

    switch_to(&browser, &serve, "市减负办").await;
    browser.wait_until("return [...document.querySelectorAll('#feedback .case-row')].some(r => r.textContent.includes('同一活动要求报送四类材料'))", WAIT).await;
    browser.exec("[...document.querySelectorAll('#feedback .case-row')].find(r => r.textContent.includes('同一活动要求报送四类材料')).querySelector('a.case-link').click(); return true;").await;
    browser.wait_for("#case[data-status='open']", WAIT).await;
    browser.wait_until("return !document.querySelector('#case').textContent.includes('东坝镇')", WAIT).await;
    take(&browser, "reply", &[("body", "已转相关部门核实")]).await;
    timeline_has(&browser, "已转相关部门核实").await;
    take(&browser, "resolve", &[("summary", "已合并为一类材料")]).await;
    status_is(&browser, "已解决，待评价").await;
    browser.screenshot(&artifacts().join("workflow-office.png")).await;

    browser.click("#signout").await;
    browser.wait_for("#follow-up-link", WAIT).await;
    browser.click("#follow-up-link").await;
    browser.type_into("#follow-up-code", &code).await;
    browser.click("#follow-up-open").await;
    browser.wait_for("#follow-up-case #case", WAIT).await;
    let shown = browser.text("#follow-up-case").await;
    assert!(shown.contains("已合并为一类材料") && !shown.contains("东坝镇"), "nothing names the submitter: {shown}");
    // The submitter writes in the thread, shown as 提交人.
    browser.type_into("#comment-body", "已收到，谢谢").await;
    browser.click("#comment-send").await;
    browser
        .wait_until("return [...document.querySelectorAll('#timeline li')].some(li => li.textContent.includes('提交人') && li.textContent.includes('已收到，谢谢'))", WAIT)
        .await;
    take(&browser, "rate", &[("satisfaction", "satisfied")]).await;
    status_is(&browser, "已评价").await;
    browser.screenshot(&artifacts().join("workflow-follow-up.png")).await;
    let stored = browser.exec("return JSON.stringify(localStorage);").await;
    assert!(!stored.as_str().unwrap().contains("fu-"), "the code is not kept: {stored}");
    browser.quit().await;
}

// ------------------------------------------------------------------ phone width

/// Elements that stick out past the right edge of the viewport, outside any element that
/// scrolls sideways on its own (the one wide table, the 三率, scrolls inside its box).
const OVERFLOW: &str = "const w = document.documentElement.clientWidth; \
    const scrolls = (e) => { for (let p = e.parentElement; p; p = p.parentElement) { \
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return p !== document.body && p !== document.documentElement; } return false; }; \
    const out = [...document.querySelectorAll('body *')].filter(e => { const r = e.getBoundingClientRect(); \
      return r.width > 0 && r.right > w + 1 && !scrolls(e); }).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className); \
    return { width: w, scrollWidth: document.documentElement.scrollWidth, out: out.slice(0, 10) };";

/// Controls a keyboard or screen-reader user could not name: every button needs text, every
/// field a label (its own `<label for>`, an enclosing label, or `aria-label`), and none may be
/// taken out of the tab order.
const UNNAMED: &str = "const named = (e) => {       if (e.tagName === 'BUTTON') return e.textContent.trim().length > 0 || !!e.getAttribute('aria-label');       if (e.type === 'hidden') return true;       return !!e.getAttribute('aria-label') || !!e.closest('label') || (!!e.id && !!document.querySelector('label[for=\"' + e.id + '\"]')); };     return [...document.querySelectorAll('button, input, select, textarea')]       .filter(e => e.offsetParent !== null && (!named(e) || e.tabIndex < 0))       .map(e => e.tagName + (e.id ? '#' + e.id : '') + (e.name ? '[' + e.name + ']' : ''));";

async fn fits(browser: &Browser, page: &str) {
    // Let the page finish drawing what it loads.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let unnamed = browser.exec(UNNAMED).await;
    assert_eq!(unnamed, serde_json::json!([]), "{page}: controls without a name or out of the tab order");
    let found = browser.exec(OVERFLOW).await;
    let width = found["width"].as_u64().unwrap();
    assert!(width <= 400, "the viewport is phone-sized: {found}");
    assert!(found["scrollWidth"].as_u64().unwrap() <= width, "{page}: the page scrolls sideways: {found}");
    assert!(found["out"].as_array().unwrap().is_empty(), "{page}: elements stick out: {found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_390_px_wide() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), WORKFLOW_POLICY).unwrap();
    let policy = dir.path().join("policy.toml");
    let serve = ServeProcess::start(dir.path(), &["--policy", policy.to_str().unwrap()]);
    let url = serve.url();
    let http = reqwest::Client::new();
    let call = |unit: &str, path: String, body: serde_json::Value| {
        http.post(format!("{url}{path}")).bearer_auth(serve.token(unit)).json(&body).send()
    };
    // A whistle with a long title, a decline, an extension and notes; anonymous feedback.
    let raised: serde_json::Value = call(
        "东坝镇",
        "/v1/whistles".into(),
        serde_json::json!({ "title": "村口河道垃圾堆积严重影响汛期排涝需要多个部门协同处置的事项".repeat(2),
            "description": "长文本".repeat(80), "departments": ["住建局", "城管局", "生态环境局"], "location": "东坝镇东坝村村口河道" }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = raised["case"]["id"].as_str().unwrap().to_owned();
    assert_eq!(call("住建局", format!("/v1/whistles/{id}/ack"), serde_json::json!({})).await.unwrap().status(), 200);
    let declined =
        call("城管局", format!("/v1/whistles/{id}/decline"), serde_json::json!({ "reason": "理由".repeat(40) }));
    assert_eq!(declined.await.unwrap().status(), 200);
    let asked =
        serde_json::json!({ "clock": "whistle_resolve:住建局", "working_days": 2, "reason": "需要等待".repeat(20) });
    assert_eq!(call("住建局", format!("/v1/cases/{id}/extensions"), asked).await.unwrap().status(), 201);
    let note = serde_json::json!({ "note": "https://example.invalid/a-very-long-link-without-spaces-".repeat(3) });
    assert_eq!(call("住建局", format!("/v1/whistles/{id}/progress"), note).await.unwrap().status(), 200);
    let fb: serde_json::Value = call(
        "东坝镇",
        "/v1/feedback".into(),
        serde_json::json!({ "topic": "excessive_paperwork", "body": "材料".repeat(100), "anonymous": true }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let code = fb["follow_up_code"].as_str().unwrap().to_owned();

    let browser = Browser::start().await;
    browser.window(390, 844).await;
    browser.goto(&url).await;
    browser.wait_for("#token", WAIT).await;
    fits(&browser, "sign-in").await;
    for (unit, role) in [
        ("东坝镇", "township"),
        ("住建局", "department"),
        ("市减负办", "office"),
        ("市委编办", "coordinator"),
        ("区委督查室", "supervisor"),
        ("管理员", "admin"),
    ] {
        switch_to(&browser, &serve, unit).await;
        fits(&browser, &format!("{unit}: home")).await;
        browser.screenshot(&artifacts().join(format!("phone-{role}.png"))).await;
        if unit != "市减负办" {
            open_case(&browser, &url, &id).await;
            fits(&browser, &format!("{unit}: the case")).await;
        }
        browser.goto(&format!("{url}/#/")).await;
        browser.wait_for("#signout", WAIT).await;
    }
    // An action's form open on a phone.
    switch_to(&browser, &serve, "住建局").await;
    open_case(&browser, &url, &id).await;
    browser.click("#actions button[data-action='progress']").await;
    browser.wait_for("#act-note", WAIT).await;
    fits(&browser, "the progress form").await;
    browser.screenshot(&artifacts().join("phone-department-case.png")).await;
    browser.click("#signout").await;
    browser.goto(&format!("{url}/#/follow-up")).await;
    browser.type_into("#follow-up-code", &code).await;
    browser.click("#follow-up-open").await;
    browser.wait_for("#follow-up-case #case", WAIT).await;
    fits(&browser, "follow-up").await;
    browser.screenshot(&artifacts().join("phone-follow-up.png")).await;
    browser.quit().await;
}

// ------------------------------------------------------------------ one problem, one case

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_threads_and_hand_overs_work_through_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(dir.path(), &[]);
    let url = serve.url();
    let browser = Browser::start().await;
    browser.goto(&url).await;

    // 东坝镇 raises one whistle; typing a second like it, the form shows the first before sending.
    switch_to(&browser, &serve, "东坝镇").await;
    let raise_one = |title: &'static str| {
        let browser = &browser;
        async move {
            browser.type_into("#raise-title", title).await;
            browser.type_into("#raise-description", "影响汛期排涝").await;
            browser.click("input[name=dept][value='住建局']").await;
        }
    };
    raise_one("村口河道垃圾堆积").await;
    browser.click("#raise-submit").await;
    browser.wait_until("return [...document.querySelectorAll('#my-whistles .case-row')].some(r => r.textContent.includes('村口河道垃圾堆积'))", WAIT).await;
    let original = browser
        .exec("return [...document.querySelectorAll('#my-whistles .case-row')].find(r => r.textContent.includes('村口河道垃圾堆积')).dataset.case;")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    raise_one("村口河道垃圾成堆").await;
    browser
        .wait_until(
            &format!("return !!document.querySelector('#raise-similar .similar-row[data-case=\"{original}\"]')"),
            WAIT,
        )
        .await;
    browser.screenshot(&artifacts().join("duplicates-raise-form.png")).await;
    browser.click("#raise-submit").await;
    browser
        .wait_until(
            "return document.querySelector('#raise-similar').textContent.includes('刚提交的吹哨可能与以下事项重复')",
            WAIT,
        )
        .await;
    browser.wait_until("return [...document.querySelectorAll('#my-whistles .case-row')].some(r => r.textContent.includes('村口河道垃圾成堆'))", WAIT).await;
    let second = browser
        .exec("return [...document.querySelectorAll('#my-whistles .case-row')].find(r => r.textContent.includes('村口河道垃圾成堆')).dataset.case;")
        .await
        .as_str()
        .unwrap()
        .to_owned();

    // The township marks the second as a duplicate of the first, from the case page.
    open_case(&browser, &url, &second).await;
    buttons_match_the_api(&browser, &serve, "东坝镇", &second).await;
    browser.click("#actions button[data-action='duplicate']").await;
    browser.wait_for(&format!("input[name=act-of][value='{original}']"), WAIT).await;
    browser.click(&format!("input[name=act-of][value='{original}']")).await;
    browser.click("#act-submit").await;
    status_is(&browser, "重复（已合并）").await;
    browser.wait_for("#duplicate-of a.case-link", WAIT).await;
    timeline_has(&browser, "标记为重复事项").await;
    buttons_match_the_api(&browser, &serve, "东坝镇", &second).await;

    // 住建局 is on the original's page when 东坝镇 mentions it in the thread: told at once.
    switch_to(&browser, &serve, "住建局").await;
    open_case(&browser, &url, &original).await;
    browser.wait_for("#duplicates li", WAIT).await;
    let mention = reqwest::Client::new()
        .post(format!("{url}/v1/cases/{original}/comments"))
        .bearer_auth(serve.token("东坝镇"))
        .json(&serde_json::json!({ "body": "@住建局 上游也要清理" }))
        .send()
        .await
        .unwrap();
    assert_eq!(mention.status(), 201);
    browser.wait_until("return document.querySelector('#message').textContent.includes('【提及】东坝镇')", WAIT).await;
    timeline_has(&browser, "上游也要清理").await;
    // It answers in the thread, then takes the answer back.
    browser.type_into("#comment-body", "收到，明天到现场").await;
    browser.click("#comment-send").await;
    timeline_has(&browser, "收到，明天到现场").await;
    buttons_match_the_api(&browser, &serve, "住建局", &original).await;
    browser.click("#timeline button[data-action='retract_comment']").await;
    browser
        .wait_until(
            "return [...document.querySelectorAll('#timeline li')].some(li => li.textContent.includes('（已撤回）'))",
            WAIT,
        )
        .await;

    // 住建局 adds a photo from the page (a phone would offer its camera); it shows as a thumbnail.
    let photo = dir.path().join("现场.png");
    std::fs::write(&photo, PHOTO_PNG).unwrap();
    browser.choose_file("#attach-photo", &photo).await;
    browser.click("#files button[data-action='attach']").await;
    let thumbnail_drawn =
        "return [...document.querySelectorAll('#files img.thumb')].some(i => i.complete && i.naturalWidth === 8)";
    browser.wait_until(thumbnail_drawn, WAIT).await;
    timeline_has(&browser, "上传附件：现场.png").await;

    // 住建局 proposes to hand its part to 生态环境局; the coordinator accepts.
    take(&browser, "hand_over", &[("to", "生态环境局"), ("reason", "河道水质归生态环境局")]).await;
    browser.wait_for(".hand-over-row[data-number='1'][data-hand-over='pending']", WAIT).await;
    browser.screenshot(&artifacts().join("duplicates-thread-department.png")).await;
    switch_to(&browser, &serve, "市委编办").await;
    open_case(&browser, &url, &original).await;
    buttons_match_the_api(&browser, &serve, "市委编办", &original).await;
    browser.wait_until(thumbnail_drawn, WAIT).await;
    take(&browser, "accept_hand_over", &[]).await;
    part_is(&browser, "生态环境局", "summoned").await;
    part_is(&browser, "住建局", "released").await;
    browser.wait_for(".hand-over-row[data-number='1'][data-hand-over='approved']", WAIT).await;
    browser.screenshot(&artifacts().join("duplicates-coordinator.png")).await;

    // The township unlinks the duplicate: it is open again.
    switch_to(&browser, &serve, "东坝镇").await;
    open_case(&browser, &url, &second).await;
    take(&browser, "unlink", &[]).await;
    status_is(&browser, "办理中").await;
    part_is(&browser, "住建局", "summoned").await;
    // Linked again by pasting the original's address instead of picking it.
    browser.click("#actions button[data-action='duplicate']").await;
    browser.type_into("#act-of", &format!("{url}/#/cases/{original}")).await;
    browser.click("#act-submit").await;
    status_is(&browser, "重复（已合并）").await;
    browser.quit().await;
}
