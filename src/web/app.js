// whistle dashboard: plain JavaScript against the JSON API. No build step.
"use strict";

const STATUS_ZH = {
  open: "办理中", resolved: "待确认", confirmed: "已办结", withdrawn: "已撤回", rated: "已评价",
  summoned: "待报到", acknowledged: "已报到", declined: "有异议", released: "已调整", handled: "已办结",
};
const STAGE_ZH = { warning: "预警", breach: "超时", escalation: "升级督办" };
const CLOCK_ZH = { ack: "报到", dispute: "争议协调", feedback_reply: "意见回应", feedback_resolve: "意见办结", whistle_resolve: "吹哨办结" };
const TOPIC_ZH = {
  documents_meetings: "文山会海", excessive_paperwork: "过度留痕", apps_chat_groups: "指尖负担",
  inspections_assessments: "督查考核", work_pushed_down: "责任甩锅", other: "其他",
};

let token = localStorage.getItem("whistle-token") || "";
let me = null;
let org = null;
let stream = null;

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
};
const say = (text, ok) => {
  const box = $("#message");
  box.textContent = text || "";
  box.style.color = ok ? "var(--ok)" : "var(--red)";
};
const when = (iso) => iso ? new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) : "";

// The log position of this page's last action: reads ask for views that include it, so a
// list shown right after an action shows that action (X-Min-Position).
let seenPosition = 0;

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "GET" && seenPosition > 0) headers["X-Min-Position"] = String(seenPosition);
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error((data && data.error && data.error.message) || res.statusText);
  if (data && typeof data.position === "number") seenPosition = Math.max(seenPosition, data.position);
  return data;
}

async function act(method, path, body, done) {
  try {
    await api(method, path, body);
    say("");
    if (done) await done();
  } catch (e) {
    say(e.message);
  }
}

function countdown(dueIso) {
  const span = el("span", { "data-due": dueIso });
  paintCountdown(span);
  return span;
}

function paintCountdown(span) {
  const left = new Date(span.dataset.due) - Date.now();
  const abs = Math.abs(left);
  const h = Math.floor(abs / 3600000), m = Math.floor((abs % 3600000) / 60000), s = Math.floor((abs % 60000) / 1000);
  const text = `${h}小时${String(m).padStart(2, "0")}分${String(s).padStart(2, "0")}秒`;
  span.textContent = left >= 0 ? `剩余 ${text}` : `已超时 ${text}`;
  span.className = left < 0 ? "late" : left < 3600000 ? "soon" : "";
}
setInterval(() => document.querySelectorAll("[data-due]").forEach(paintCountdown), 1000);

// ------------------------------------------------------------------ sign in

async function signIn() {
  token = $("#token").value.trim() || token;
  try {
    me = await api("GET", "/v1/me");
    org = await api("GET", "/v1/org");
  } catch (e) {
    say("登录失败：" + e.message);
    return;
  }
  localStorage.setItem("whistle-token", token);
  say("");
  $("#signin-panel").classList.add("hidden");
  $("#app").classList.remove("hidden");
  const notify = "Notification" in window && Notification.permission === "default"
    ? el("button", { class: "secondary", id: "notify-on", onclick: async (e) => {
      await Notification.requestPermission();
      e.target.remove();
    } }, "开启桌面通知")
    : "";
  $("#who").replaceChildren(
    el("span", {}, `${me.unit}（${roleZh(me.role)}）`), " ", notify, " ",
    el("button", { class: "secondary", id: "signout", onclick: signOut }, "退出"),
  );
  await render();
}

function signOut() {
  localStorage.removeItem("whistle-token");
  token = ""; me = null;
  if (stream) stream.abort();
  $("#app").replaceChildren();
  $("#app").classList.add("hidden");
  $("#signin-panel").classList.remove("hidden");
  $("#who").replaceChildren();
  $("#token").value = "";
}

/** A unit as people know it: alerts name the office's and the coordinator's clocks by role. */
function unitName(unit) {
  if (unit === "office" && org) return org.office;
  if (unit === "coordinator" && org) return org.coordinator;
  return unit;
}

function roleZh(role) {
  return { township: "乡镇/街道", department: "职能部门", office: "减负办", coordinator: "协调机构", supervisor: "督查", admin: "管理员" }[role] || role;
}

async function render() {
  const app = $("#app");
  app.replaceChildren();
  if (me.role === "township") app.append(raiseForm(), listSection("my-whistles", "我的吹哨"), feedbackForm());
  if (me.role === "department") app.append(listSection("awaiting", "待报到（时限见各行倒计时）"), listSection("working", "办理中"));
  if (me.role === "office") app.append(listSection("feedback", "基层意见"));
  if (me.role === "coordinator") app.append(listSection("disputes", "权责争议"));
  if (me.role === "supervisor" || me.role === "admin") {
    app.append(liveAlertsSection(), listSection("overdue", "超时未办"), statsSection());
    startStream();
    followReportLink();
  }
  if (me.role === "admin") app.append(calendarForm());
  // Every other role hears its notices (a summons, a report-in…) live on the same stream.
  if (me.role !== "supervisor" && me.role !== "admin") startStream();
  await refresh();
}

/** A notice for this unit: shown at once, the lists refreshed, and a desktop notification
 * when the page is allowed to show one. */
function onNotice(notice) {
  say(notice.text, true);
  const row = $("#notices");
  if (row) row.prepend(el("div", { class: "notice-row" }, when(notice.raised_at), " ", notice.text));
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification("吹哨报到", { body: notice.text, tag: notice.alert_id });
  }
  refresh().catch(() => {});
}

/** A 通报 message links to #/reports/{monthly|weekly}/{period}: show that period's 三率. */
function followReportLink() {
  const m = /^#\/reports\/(monthly|weekly)\/([0-9W-]+)$/.exec(location.hash);
  if (!m) return;
  const [, kind, period] = m;
  if (kind === "monthly") $("#stats-month").value = period;
  const open = el("button", { id: "report-open", onclick: () => openReport(period, kind) }, `打开 ${period} 通报`);
  const note = el("p", { id: "report-link", class: "muted" }, `来自通报链接：${period}。`, open);
  const old = $("#report-link");
  if (old) old.replaceWith(note); else $("#stats").before(note);
  $("#stats-month").scrollIntoView();
}
window.addEventListener("hashchange", () => {
  if (me && (me.role === "supervisor" || me.role === "admin")) { followReportLink(); renderStats(); }
});

function listSection(id, title) {
  return el("section", {}, el("h2", {}, title), el("div", { id }, el("p", { class: "muted" }, "加载中…")));
}

async function refresh() {
  if (!me) return;
  if (me.role === "township") await renderMyWhistles();
  if (me.role === "department") await renderDepartment();
  if (me.role === "office") await renderFeedback();
  if (me.role === "coordinator") await renderDisputes();
  if (me.role === "supervisor" || me.role === "admin") await Promise.all([renderAlerts(), renderOverdue(), renderStats()]);
}

// ------------------------------------------------------------------ admin: holiday calendar

function calendarForm() {
  return el("section", {},
    el("h2", {}, "发布节假日安排 ", el("span", { class: "muted" }, "国务院办公厅通知发布后录入，期限按新安排重算")),
    el("label", { for: "cal-year" }, "年份"), el("input", { id: "cal-year", type: "number", min: "2000", max: "2100" }),
    el("label", { for: "cal-toml" }, "安排（TOML，格式同 src/domain/calendars/2026.toml）"),
    el("textarea", { id: "cal-toml", rows: "8" }),
    el("p", {}, el("button", { id: "cal-publish", onclick: publishCalendar }, "发布")),
  );
}

async function publishCalendar() {
  const year = $("#cal-year").value;
  const res = await fetch(`/v1/calendar/${encodeURIComponent(year)}`, {
    method: "POST",
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/toml" },
    body: $("#cal-toml").value,
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) { say((data && data.error && data.error.message) || res.statusText); return; }
  if (data && typeof data.position === "number") seenPosition = Math.max(seenPosition, data.position);
  say(`已发布 ${year} 年节假日安排，涉及该年的期限已重算。`, true);
}

// ------------------------------------------------------------------ township

function raiseForm() {
  const depts = org.departments.map((d) => el("label", {}, el("input", { type: "checkbox", name: "dept", value: d }), " " + d));
  return el("section", {},
    el("h2", {}, "吹哨 ", el("span", { class: "muted" }, "Raise a whistle — 只填必要信息")),
    el("label", { for: "raise-title" }, "事项"), el("input", { id: "raise-title", type: "text", maxlength: "200" }),
    el("label", { for: "raise-description" }, "情况说明"), el("textarea", { id: "raise-description" }),
    el("label", {}, "需要报到的部门"), el("div", { class: "depts" }, depts),
    el("label", {}, el("input", { type: "checkbox", id: "raise-urgent" }), " 紧急"),
    el("p", {}, el("button", { id: "raise-submit", onclick: raise }, "吹哨")),
  );
}

async function raise() {
  const departments = [...document.querySelectorAll("input[name=dept]:checked")].map((i) => i.value);
  const body = {
    title: $("#raise-title").value, description: $("#raise-description").value, departments,
    urgency: $("#raise-urgent").checked ? "urgent" : "normal",
  };
  await act("POST", "/v1/whistles", body, async () => {
    $("#raise-title").value = ""; $("#raise-description").value = "";
    document.querySelectorAll("input[name=dept]").forEach((i) => { i.checked = false; });
    say("已吹哨，已通知被召集的部门；报到时限见各部门的倒计时。", true);
    await renderMyWhistles();
  });
}

async function renderMyWhistles() {
  const data = await api("GET", "/v1/cases?kind=whistle");
  const rows = data.items.map((c) => {
    const parts = Object.entries(c.detail.departments || {}).map(([d, p]) =>
      el("span", { class: "tag " + p.status, "data-dept": d }, `${d} ${STATUS_ZH[p.status] || p.status}`));
    const actions = [];
    if (c.status === "resolved") {
      for (const [value, label] of [["satisfied", "满意"], ["basically_satisfied", "基本满意"], ["unsatisfied", "不满意"]]) {
        actions.push(el("button", { onclick: () => act("POST", `/v1/whistles/${c.id}/confirm`, { satisfaction: value }, renderMyWhistles) }, label), " ");
      }
    }
    return el("tr", { class: "whistle-row", "data-case": c.id },
      el("td", {}, c.title, c.urgent ? el("span", { class: "tag late" }, "紧急") : ""),
      el("td", {}, STATUS_ZH[c.status] || c.status), el("td", {}, parts), el("td", {}, actions));
  });
  $("#my-whistles").replaceChildren(rows.length
    ? el("table", {}, el("tr", {}, el("th", {}, "事项"), el("th", {}, "状态"), el("th", {}, "部门报到情况"), el("th", {}, "")), rows)
    : el("p", { class: "muted" }, "暂无吹哨事项"));
}

function feedbackForm() {
  const topics = Object.entries(TOPIC_ZH).map(([v, l]) => el("option", { value: v }, l));
  return el("section", {},
    el("h2", {}, "基层意见直通车 ", el("span", { class: "muted" }, "减负办3个工作日内回应、7个工作日内解决")),
    el("label", { for: "fb-topic" }, "问题类型"), el("select", { id: "fb-topic" }, topics),
    el("label", { for: "fb-body" }, "反映内容"), el("textarea", { id: "fb-body" }),
    el("label", {}, el("input", { type: "checkbox", id: "fb-anonymous" }), " 匿名（只给您一个查询码，系统不记录身份）"),
    el("p", {}, el("button", { id: "fb-submit", onclick: submitFeedback }, "提交")),
  );
}

async function submitFeedback() {
  try {
    const res = await api("POST", "/v1/feedback", { topic: $("#fb-topic").value, body: $("#fb-body").value, anonymous: $("#fb-anonymous").checked });
    $("#fb-body").value = "";
    say(res.follow_up_code ? `已提交。查询码（只显示一次，请保存）：${res.follow_up_code}` : "已提交，减负办将在3个工作日内回应。", true);
  } catch (e) { say(e.message); }
}

// ------------------------------------------------------------------ department

async function renderDepartment() {
  const data = await api("GET", "/v1/cases?kind=whistle&status=open");
  const awaiting = [], working = [];
  for (const c of data.items) {
    const part = (c.detail.departments || {})[me.unit];
    if (!part) continue;
    if (part.status === "summoned") awaiting.push(c);
    if (part.status === "acknowledged") working.push(c);
  }
  $("#awaiting").replaceChildren(awaiting.length ? el("table", {}, awaiting.map((c) => {
    const clock = c.clocks.find((k) => k.clock.kind === "ack" && k.clock.department === me.unit);
    return el("tr", { class: "awaiting-row", "data-case": c.id },
      el("td", {}, c.title, el("div", { class: "muted" }, `${c.township} · ${when(c.opened_at)}`)),
      el("td", {}, clock ? countdown(clock.due_at) : ""),
      el("td", {},
        el("button", { class: "ack-button", onclick: () => act("POST", `/v1/whistles/${c.id}/ack`, undefined, renderDepartment) }, "报到"), " ",
        el("button", { class: "secondary", onclick: () => {
          const reason = prompt("不属于本部门职责的理由：");
          if (reason) act("POST", `/v1/whistles/${c.id}/decline`, { reason }, renderDepartment);
        } }, "有异议")));
  })) : el("p", { class: "muted" }, "没有待报到的事项"));
  $("#working").replaceChildren(working.length ? el("table", {}, working.map((c) =>
    el("tr", { class: "working-row", "data-case": c.id },
      el("td", {}, c.title, el("div", { class: "muted" }, c.township)),
      el("td", {}, el("button", { onclick: () => {
        const summary = prompt("办理结果：");
        if (summary) act("POST", `/v1/whistles/${c.id}/handled`, { summary }, renderDepartment);
      } }, "办结"))))) : el("p", { class: "muted" }, "没有办理中的事项"));
}

// ------------------------------------------------------------------ office, coordinator

async function renderFeedback() {
  const data = await api("GET", "/v1/cases?kind=feedback");
  $("#feedback").replaceChildren(data.items.length ? el("table", {}, data.items.map((c) => {
    const clocks = c.clocks.map((k) => el("div", {}, `${CLOCK_ZH[k.clock.kind]}：`, countdown(k.due_at)));
    const open = c.status === "open";
    return el("tr", { "data-case": c.id },
      el("td", {}, TOPIC_ZH[c.detail.topic] || "", el("div", { class: "muted" }, c.detail.body)),
      el("td", {}, STATUS_ZH[c.status] || c.status, clocks),
      el("td", {}, open ? [
        el("button", { onclick: () => { const body = prompt("回应内容："); if (body) act("POST", `/v1/feedback/${c.id}/reply`, { body }, renderFeedback); } }, "回应"), " ",
        el("button", { onclick: () => { const summary = prompt("解决情况："); if (summary) act("POST", `/v1/feedback/${c.id}/resolve`, { summary }, renderFeedback); } }, "解决"),
      ] : ""));
  })) : el("p", { class: "muted" }, "暂无基层意见"));
}

async function renderDisputes() {
  const data = await api("GET", "/v1/cases?kind=whistle&status=open");
  const disputed = data.items.filter((c) => Object.values(c.detail.departments || {}).some((p) => p.status === "declined"));
  $("#disputes").replaceChildren(disputed.length ? el("table", {}, disputed.map((c) => el("tr", {},
    el("td", {}, c.title),
    el("td", {}, Object.entries(c.detail.departments).filter(([, p]) => p.status === "declined").map(([d, p]) => el("div", {}, `${d}：${p.decline_reason}`))),
    el("td", {}, el("button", { onclick: () => {
      const names = prompt("指定负责部门（多个用逗号分隔）：");
      if (names) act("POST", `/v1/whistles/${c.id}/assign`, { departments: names.split(/[,，]/).map((s) => s.trim()).filter(Boolean) }, renderDisputes);
    } }, "指定部门"))))) : el("p", { class: "muted" }, "没有待协调的争议"));
}

// ------------------------------------------------------------------ supervisor

function liveAlertsSection() {
  return el("section", {}, el("h2", {}, "实时预警 ", el("span", { class: "muted", id: "stream-state" }, "")),
    el("table", { id: "live-alerts" }, el("tr", {}, el("th", {}, "级别"), el("th", {}, "事项"), el("th", {}, "责任单位"), el("th", {}, "时限"), el("th", {}, ""))));
}

function alertRow(a) {
  return el("tr", { class: `alert-row ${a.stage}`, "data-alert": a.alert_id },
    el("td", {}, STAGE_ZH[a.stage] || a.stage, a.urgent ? " · 紧急" : ""),
    el("td", {}, a.title, a.township ? el("div", { class: "muted" }, a.township) : ""),
    el("td", {}, `${unitName(a.unit)}「${CLOCK_ZH[a.clock.kind] || a.clock.kind}」`),
    el("td", {}, when(a.due_at)),
    el("td", {}, me.role === "supervisor"
      ? el("button", { class: "alert-ack", onclick: () => act("POST", `/v1/alerts/${a.alert_id}/ack`, undefined, renderAlerts) }, "已知悉")
      : ""));
}

async function renderAlerts() {
  const data = await api("GET", "/v1/alerts?open=true");
  const table = $("#live-alerts");
  [...table.querySelectorAll(".alert-row")].forEach((r) => r.remove());
  data.items.forEach((a) => table.append(alertRow(a)));
}

function addLiveAlert(a) {
  const table = $("#live-alerts");
  if (!table || table.querySelector(`[data-alert="${a.alert_id}"]`)) return;
  const header = table.querySelector("tr");
  header.after(alertRow(a));
}

async function startStream() {
  if (stream) stream.abort();
  stream = new AbortController();
  let lastId = null;
  for (;;) {
    try {
      const headers = { Authorization: "Bearer " + token };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const res = await fetch("/v1/alerts/stream", { headers, signal: stream.signal });
      if (!res.ok) throw new Error(res.statusText);
      if ($("#stream-state")) $("#stream-state").textContent = "● 已连接";
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const fields = {};
          for (const line of block.split("\n")) {
            const i = line.indexOf(":");
            if (i > 0) fields[line.slice(0, i)] = (fields[line.slice(0, i)] || "") + line.slice(i + 1).replace(/^ /, "");
          }
          if (fields.id) lastId = fields.id;
          if (fields.data && fields.event === "notice") onNotice(JSON.parse(fields.data));
          if (fields.data && fields.event === "alert" && $("#live-alerts")) { addLiveAlert(JSON.parse(fields.data)); renderOverdue(); renderStats(); }
          if (fields.data && fields.event === "alert_acknowledged" && $("#live-alerts")) {
            const row = $(`#live-alerts [data-alert="${JSON.parse(fields.data).alert_id}"]`);
            if (row) row.remove();
          }
        }
      }
    } catch (e) {
      if (stream.signal.aborted) return;
    }
    if ($("#stream-state")) $("#stream-state").textContent = "○ 重新连接中…";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function renderOverdue() {
  const data = await api("GET", "/v1/cases?overdue=true");
  $("#overdue").replaceChildren(data.items.length ? el("table", {}, data.items.map((c) => el("tr", { class: "overdue-row" },
    el("td", {}, c.title, el("div", { class: "muted" }, c.township || "")),
    el("td", {}, c.clocks.filter((k) => c.overdue.includes(k.clock.department ? `${k.clock.kind}:${k.clock.department}` : k.clock.kind))
      .map((k) => el("div", {}, `${k.clock.department || ""}「${CLOCK_ZH[k.clock.kind]}」`, countdown(k.due_at))))))) : el("p", { class: "muted" }, "没有超时事项"));
}

// ------------------------------------------------------------------ 三率

const DIMENSION_ZH = { department: "部门", township: "乡镇（街道）", office: "减负办", coordinator: "编办", topic: "意见类别" };
const TREND_MONTHS = 6;

/** YYYY-MM of the month `back` months before `month` (YYYY-MM). */
function monthBefore(month, back) {
  const [y, m] = month.split("-").map(Number);
  const d = new Date(Date.UTC(y, m - 1 - back, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}
function monthRange(month) {
  const [y, m] = month.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return [`${month}-01`, `${month}-${String(last).padStart(2, "0")}`];
}
function thisMonth() {
  const now = new Date(Date.now() + 8 * 3600 * 1000);
  return `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
}

function statsSection() {
  const month = el("input", { id: "stats-month", type: "month", value: thisMonth(), "aria-label": "统计月份" });
  const by = el("select", { id: "stats-by", "aria-label": "统计维度" },
    Object.entries(DIMENSION_ZH).map(([k, v]) => el("option", { value: k }, v)));
  month.addEventListener("change", renderStats);
  by.addEventListener("change", renderStats);
  const query = () => {
    const [from, to] = monthRange($("#stats-month").value || thisMonth());
    return `by=${$("#stats-by").value}&from=${from}&to=${to}`;
  };
  const name = () => `三率-${DIMENSION_ZH[$("#stats-by").value]}-${$("#stats-month").value}`;
  return el("section", {},
    el("h2", {}, "三率 ", el("span", { class: "muted" }, "响应率 · 解决率 · 满意率（按立案日期；每个比率后为 分子/分母）")),
    el("div", { class: "toolbar" }, month, by,
      el("button", { class: "secondary", id: "stats-csv", onclick: () => download(`/v1/stats?${query()}&format=csv`, `${name()}.csv`) }, "下载 CSV"),
      el("button", { class: "secondary", id: "stats-xlsx", onclick: () => download(`/v1/stats?${query()}&format=xlsx`, `${name()}.xlsx`) }, "下载 Excel"),
      el("button", { class: "secondary", id: "report-print", onclick: () => openReport($("#stats-month").value) }, "月度通报（打印）"),
      el("button", { class: "secondary", id: "export-xlsx", onclick: () => {
        const [from, to] = monthRange($("#stats-month").value || thisMonth());
        download(`/v1/cases/export?from=${from}&to=${to}&format=xlsx`, `案件明细-${from}-${to}.xlsx`);
      } }, "案件明细 Excel")),
    el("div", { id: "stats" }));
}

/** A file from the API, with the token, as a blob URL (the caller revokes it). */
async function fileUrl(path, type) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  if (!res.ok) throw new Error(((await res.json().catch(() => null)) || {}).error?.message || res.statusText);
  const blob = await res.blob();
  return URL.createObjectURL(type ? new Blob([blob], { type }) : blob);
}

/** Fetches a file with the token and hands it to the browser as a download. */
async function download(path, filename) {
  try {
    const url = await fileUrl(path);
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say(`已下载 ${filename}`, true);
  } catch (e) {
    say(e.message);
  }
}

/** Opens the printable 通报 of a period in a new window. */
async function openReport(period, kind = "monthly") {
  try {
    window.open(await fileUrl(`/v1/reports/${kind}?period=${period}&format=html`, "text/html"), "_blank");
  } catch (e) {
    say(e.message);
  }
}

/** An inline SVG line of rates (0..1, null for nothing counted) month by month. */
function sparkline(rates, label) {
  const w = 120, h = 28, step = w / Math.max(rates.length - 1, 1);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("class", "trend");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  let path = "";
  rates.forEach((r, i) => {
    if (r === null || r === undefined) return;
    const x = (i * step).toFixed(1), y = (h - 3 - r * (h - 6)).toFixed(1);
    path += `${path ? "L" : "M"}${x},${y}`;
    const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("cx", x); dot.setAttribute("cy", y); dot.setAttribute("r", "2");
    svg.append(dot);
  });
  const line = document.createElementNS("http://www.w3.org/2000/svg", "path");
  line.setAttribute("d", path);
  svg.prepend(line);
  return svg;
}

async function renderStats() {
  const month = ($("#stats-month") && $("#stats-month").value) || thisMonth();
  const by = ($("#stats-by") && $("#stats-by").value) || "department";
  const months = [...Array(TREND_MONTHS).keys()].reverse().map((k) => monthBefore(month, k));
  const answers = await Promise.all(months.map((m) => {
    const [from, to] = monthRange(m);
    return api("GET", `/v1/stats?by=${by}&from=${from}&to=${to}`);
  }));
  const data = answers[answers.length - 1];
  const trend = (unit) => answers.map((a) => (a.rows.find((r) => r.unit === unit) || {}).response_rate ?? null);
  const pct = (r, n, d) => r === null || r === undefined ? "—" : `${(r * 100).toFixed(1)}% ${n}/${d}`;
  const bar = (r) => el("div", { class: "bar", style: `width:${Math.round((r || 0) * 100)}%` });
  $("#stats").replaceChildren(data.rows.length ? el("table", {},
    el("tr", {}, [DIMENSION_ZH[by], "案件", "响应率", "", "解决率", "满意率", "待响应", "超时", `响应率近${TREND_MONTHS}个月`].map((h) => el("th", {}, h))),
    data.rows.map((r) => el("tr", { class: "stats-row" },
      el("td", {}, r.unit), el("td", {}, String(r.cases)),
      el("td", {}, pct(r.response_rate, r.response_numerator, r.response_denominator)),
      el("td", { style: "width:14%" }, bar(r.response_rate)),
      el("td", {}, pct(r.resolution_rate, r.resolution_numerator, r.resolution_denominator)),
      el("td", {}, pct(r.satisfaction_rate, r.satisfaction_numerator, r.satisfaction_denominator)),
      el("td", {}, String(r.pending)), el("td", {}, String(r.breaches)),
      el("td", {}, sparkline(trend(r.unit), `${r.unit} ${months[0]} 至 ${month} 响应率`)))))
    : el("p", { class: "muted" }, "该月暂无数据"));
}

// ------------------------------------------------------------------ start

$("#signin").addEventListener("click", signIn);
$("#token").addEventListener("keydown", (e) => { if (e.key === "Enter") signIn(); });
// The stream brings changes at once; this catches what a broken connection missed.
setInterval(() => { if (me && me.role !== "supervisor" && me.role !== "admin") refresh().catch(() => {}); }, 60000);
// A sign-in link (`whistle token add … --link`) carries the token in the fragment, which is
// never sent to a server: keep it, and clear it from the address bar and the history.
function takeSignInLink() {
  if (!location.hash.startsWith("#signin=")) return false;
  token = decodeURIComponent(location.hash.slice("#signin=".length));
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}
window.addEventListener("hashchange", () => { if (takeSignInLink()) { if (stream) stream.abort(); signIn(); } });
takeSignInLink();
if (token) signIn();
