// whistle dashboard: plain JavaScript modules against the JSON API. No build step.
// Routes: #/ (the caller's lists), #/cases/{id} (one case), #/follow-up (anonymous feedback),
// #/reports/{monthly|weekly}/{period} (a 通报's 三率), #signin={token} (a sign-in link).
"use strict";

import {
  $, el, api, act, say, when, session, countdown, unitName, roleZh, clockZh, errorZh, TOPIC_ZH, STAGE_ZH, CLOCK_ZH,
} from "./core.js";
import { caseList } from "./lists.js";
import { showCase } from "./case.js";
import { followUpPage } from "./followup.js";
import { statsSection, renderStats, openReport } from "./stats.js";

let stream = null;
/** The live stream's state as words, kept for sections drawn after it connected. */
let streamState = "";
/** What the page shows now: refreshed when a notice or alert arrives. */
let current = { refresh: async () => {} };

// ------------------------------------------------------------------ sign in, sign out

async function signIn() {
  const typed = $("#token").value.trim();
  if (typed) session.token = typed;
  if (!session.token) { say("请输入令牌"); return; }
  try {
    session.me = await api("GET", "/v1/me");
    session.org = await api("GET", "/v1/org");
  } catch (e) {
    session.me = null;
    say("登录失败：" + e.message, false, e.detail);
    return;
  }
  localStorage.setItem("whistle-token", session.token);
  $("#token").value = "";
  say("");
  const notify = "Notification" in window && Notification.permission === "default"
    ? el("button", { class: "secondary", id: "notify-on", onclick: async (e) => {
      await Notification.requestPermission();
      e.target.remove();
    } }, "开启桌面通知")
    : "";
  $("#who").replaceChildren(
    el("a", { href: "#/", class: "home-link" },
      `${session.me.unit}（${roleZh(session.me.role)}${session.me.district ? ` · ${session.me.district}` : ""}）`), " ", notify, " ",
    el("button", { class: "secondary", id: "signout", onclick: signOut }, "退出"),
  );
  startStream();
  await route();
}

/** Ends the session in this browser: the stored token is forgotten. (Everywhere: an admin
 * deletes the token's line from tokens.toml.) */
function signOut() {
  localStorage.removeItem("whistle-token");
  session.token = ""; session.me = null; session.org = null; session.seenPosition = 0;
  if (stream) stream.abort();
  stream = null;
  $("#who").replaceChildren();
  if (location.hash && location.hash !== "#/") history.replaceState(null, "", location.pathname);
  route();
}

// ------------------------------------------------------------------ routes

async function route() {
  const hash = location.hash;
  const app = $("#app");
  if (hash === "#/follow-up") {
    $("#signin-panel").classList.add("hidden");
    app.classList.remove("hidden");
    current = { refresh: async () => {} };
    followUpPage(app);
    return;
  }
  if (!session.me) {
    app.replaceChildren();
    app.classList.add("hidden");
    $("#signin-panel").classList.remove("hidden");
    return;
  }
  $("#signin-panel").classList.add("hidden");
  app.classList.remove("hidden");
  const m = /^#\/cases\/([0-9a-fA-F-]{36})$/.exec(hash);
  if (m) {
    const id = m[1];
    current = { caseId: id, refresh: () => showCase(app, id) };
    await showCase(app, id);
    window.scrollTo(0, 0);
    return;
  }
  await home(app);
}

window.addEventListener("hashchange", () => {
  if (takeSignInLink()) { signIn(); return; }
  route().catch((e) => say(e.message));
});

// ------------------------------------------------------------------ each role's home

async function home(app) {
  const role = session.me.role;
  const lists = [];
  const sections = [];
  const list = (...args) => { const l = caseList(...args); lists.push(l); return l.section; };
  if (role === "township") {
    sections.push(raiseForm(),
      list("my-whistles", "我的吹哨", { kind: "whistle" }),
      feedbackForm(),
      list("my-feedback", "我提交的意见（实名）", { kind: "feedback" }),
      el("p", { class: "muted" }, "匿名提交的意见请凭查询码在 ", el("a", { href: "#/follow-up" }, "匿名意见查询"), " 查看。"));
  }
  if (role === "department") {
    sections.push(
      panel("awaiting", "待报到（时限见各行倒计时）"),
      panel("working", "办理中"),
      list("all-cases", "本部门全部事项", { kind: "whistle" }));
  }
  if (role === "office") sections.push(list("feedback", "基层意见", { kind: "feedback" }));
  if (role === "coordinator") {
    sections.push(panel("disputes", "权责争议（待指定负责部门）"), list("all-cases", "全部吹哨事项", { kind: "whistle" }, { unit: true }));
  }
  if (role === "supervisor" || role === "admin") {
    sections.push(liveAlertsSection());
    if (role === "supervisor") sections.push(list("todo", "待我办理（延期审批、预警知悉）", {}, { kind: true, status: false }));
    sections.push(list("overdue", "超时未办", { overdue: "true" }, { kind: true, status: false, unit: true }),
      list("all-cases", "全部事项", {}, { kind: true, unit: true }),
      statsSection());
  }
  if (role === "admin") sections.push(calendarForm());
  app.replaceChildren(...sections);
  const todo = $("#todo-todo");
  if (todo) { todo.checked = true; todo.closest("label").classList.add("hidden"); }
  const panels = async () => {
    if (role === "department") await renderDepartment();
    if (role === "coordinator") await renderDisputes();
    if (role === "supervisor" || role === "admin") await Promise.all([renderAlerts(), renderStats()]);
  };
  current = { refresh: async () => { await Promise.all([panels(), ...lists.map((l) => l.refresh())]); } };
  if (role === "supervisor" || role === "admin") followReportLink();
  await Promise.all([panels(), ...lists.map((l) => l.load())]);
}

function panel(id, title) {
  return el("section", {}, el("h2", {}, title), el("div", { id }, el("p", { class: "muted" }, "加载中…")));
}

/** A notice for this unit: shown at once, the page refreshed, and a desktop notification
 * when the page is allowed to show one. */
function onNotice(notice) {
  say(notice.text, true);
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification("吹哨报到", { body: notice.text, tag: notice.alert_id });
  }
  if (!current.caseId || current.caseId === notice.case_id) current.refresh().catch(() => {});
}

/** A 通报 message links to #/reports/{monthly|weekly}/{period}: show that period's 三率. */
function followReportLink() {
  const m = /^#\/reports\/(monthly|weekly)\/([0-9W-]+)$/.exec(location.hash);
  if (!m || !$("#stats-month")) return;
  const [, kind, period] = m;
  if (kind === "monthly") $("#stats-month").value = period;
  const open = el("button", { id: "report-open", onclick: () => openReport(period, kind) }, `打开 ${period} 通报`);
  const note = el("p", { id: "report-link", class: "muted" }, `来自通报链接：${period}。`, open);
  const old = $("#report-link");
  if (old) old.replaceWith(note); else $("#stats").before(note);
  $("#stats-month").scrollIntoView();
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
    headers: { Authorization: "Bearer " + session.token, "Content-Type": "application/toml" },
    body: $("#cal-toml").value,
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    say(errorZh(data && data.error), false, data && data.error && data.error.message);
    return;
  }
  if (data && typeof data.position === "number") session.seenPosition = Math.max(session.seenPosition, data.position);
  say(`已发布 ${year} 年节假日安排，涉及该年的期限已重算。`, true);
}

// ------------------------------------------------------------------ township

function raiseForm() {
  const depts = session.org.departments.map((d) => el("label", { class: "inline" }, el("input", { type: "checkbox", name: "dept", value: d }), " " + d));
  const section = el("section", {},
    el("h2", {}, "吹哨 ", el("span", { class: "muted" }, "Raise a whistle — 只填必要信息")),
    el("label", { for: "raise-title" }, "事项"), el("input", { id: "raise-title", type: "text", maxlength: "200" }),
    el("label", { for: "raise-description" }, "情况说明"), el("textarea", { id: "raise-description" }),
    el("fieldset", { class: "depts" }, el("legend", {}, "需要报到的部门"), depts),
    el("label", { class: "inline" }, el("input", { type: "checkbox", id: "raise-urgent" }), " 紧急"),
    el("div", { id: "raise-similar", role: "status" }),
    el("p", {}, el("button", { id: "raise-submit", onclick: raise }, "吹哨")),
  );
  // Before sending: what is already open about the same thing (one problem, one case).
  let timer = null;
  const check = () => { clearTimeout(timer); timer = setTimeout(checkDraft, 500); };
  section.querySelectorAll("#raise-title, #raise-description, input[name=dept]").forEach((i) => i.addEventListener("input", check));
  return section;
}

async function checkDraft() {
  const title = $("#raise-title").value.trim();
  const box = $("#raise-similar");
  if (!box) return;
  if (title.length < 2) { box.replaceChildren(); return; }
  const departments = [...document.querySelectorAll("input[name=dept]:checked")].map((i) => i.value);
  try {
    const data = await api("POST", "/v1/whistles/similar", { title, description: $("#raise-description").value, departments });
    showSimilar(box, data.items, "可能已有相同事项（可直接跟进，不必重复吹哨）：");
  } catch (e) { box.replaceChildren(); }
}

function showSimilar(box, items, lead) {
  box.replaceChildren(items.length ? el("div", { class: "similar-hint" }, el("span", { class: "muted" }, lead),
    el("ul", {}, items.map((x) => el("li", { class: "similar-row", "data-case": x.id },
      el("a", { href: `#/cases/${x.id}`, class: "case-link" }, x.title), ` ${x.township || ""} · ${when(x.opened_at)}`)))) : "");
}

async function raise() {
  const departments = [...document.querySelectorAll("input[name=dept]:checked")].map((i) => i.value);
  const body = {
    title: $("#raise-title").value, description: $("#raise-description").value, departments,
    urgency: $("#raise-urgent").checked ? "urgent" : "normal",
  };
  await act("POST", "/v1/whistles", body, "已吹哨，已通知被召集的部门；报到时限见各部门的倒计时。", async (answer) => {
    $("#raise-title").value = ""; $("#raise-description").value = "";
    document.querySelectorAll("input[name=dept]").forEach((i) => { i.checked = false; });
    const possible = (answer && answer.possible_duplicates) || [];
    showSimilar($("#raise-similar"), possible, "刚提交的吹哨可能与以下事项重复，可在其案件页「标记为重复」：");
    await current.refresh();
  });
}

function feedbackForm() {
  const topics = Object.entries(TOPIC_ZH).map(([v, l]) => el("option", { value: v }, l));
  return el("section", {},
    el("h2", {}, "基层意见直通车 ", el("span", { class: "muted" }, "减负办3个工作日内回应、7个工作日内解决")),
    el("label", { for: "fb-topic" }, "问题类型"), el("select", { id: "fb-topic" }, topics),
    el("label", { for: "fb-body" }, "反映内容"), el("textarea", { id: "fb-body" }),
    el("label", { class: "inline" }, el("input", { type: "checkbox", id: "fb-anonymous" }), " 匿名（只给您一个查询码，系统不记录身份）"),
    el("p", {}, el("button", { id: "fb-submit", onclick: submitFeedback }, "提交")),
    el("p", { id: "fb-code", class: "hidden" }),
  );
}

async function submitFeedback() {
  try {
    const res = await api("POST", "/v1/feedback", { topic: $("#fb-topic").value, body: $("#fb-body").value, anonymous: $("#fb-anonymous").checked });
    $("#fb-body").value = "";
    if (res.follow_up_code) {
      say("已提交。请保存查询码（只显示一次）。", true);
      $("#fb-code").replaceChildren("查询码（只显示一次，请保存）：", el("code", { id: "fb-code-value" }, res.follow_up_code),
        " 凭此码在 ", el("a", { href: "#/follow-up" }, "匿名意见查询"), " 查看回应并评价。");
      $("#fb-code").classList.remove("hidden");
    } else {
      say("已提交，减负办将在3个工作日内回应。", true);
      await current.refresh();
    }
  } catch (e) { say(e.message, false, e.detail); }
}

// ------------------------------------------------------------------ department

/** Open whistles that summon this department, in two panels by what the API lets it do. */
async function renderDepartment() {
  const data = await api("GET", "/v1/cases?kind=whistle&status=open&todo=true&limit=100");
  const has = (c, name) => (c.actions || []).find((a) => a.action === name);
  const awaiting = data.items.filter((c) => has(c, "ack"));
  const working = data.items.filter((c) => has(c, "handled"));
  const link = (c) => el("a", { href: `#/cases/${c.id}`, class: "case-link" }, c.title);
  $("#awaiting").replaceChildren(awaiting.length ? el("table", { class: "stack" }, awaiting.map((c) => {
    const clock = c.clocks.find((k) => k.clock.kind === "ack" && k.clock.department === session.me.unit);
    const ack = has(c, "ack");
    return el("tr", { class: "awaiting-row", "data-case": c.id },
      el("td", {}, link(c), c.urgent ? el("span", { class: "tag late" }, "紧急") : "", el("div", { class: "muted" }, `${c.township} · ${when(c.opened_at)}`)),
      el("td", {}, clock ? countdown(clock.due_at) : ""),
      el("td", {},
        el("button", { class: "ack-button", onclick: () => act(ack.method, ack.path, undefined, "已报到，请按时办理。", () => current.refresh()) }, "报到"), " ",
        el("a", { href: `#/cases/${c.id}`, class: "button-link" }, "查看 / 有异议")));
  })) : el("p", { class: "muted" }, "没有待报到的事项"));
  $("#working").replaceChildren(working.length ? el("table", { class: "stack" }, working.map((c) => {
    const clock = c.clocks.find((k) => k.clock.department === session.me.unit);
    return el("tr", { class: "working-row", "data-case": c.id },
      el("td", {}, link(c), el("div", { class: "muted" }, c.township)),
      el("td", {}, clock ? [el("div", { class: "muted" }, clockZh(clock.clock)), countdown(clock.due_at)] : ""),
      el("td", {}, el("a", { href: `#/cases/${c.id}`, class: "button-link" }, "进展 / 办结 / 延期")));
  })) : el("p", { class: "muted" }, "没有办理中的事项"));
}

// ------------------------------------------------------------------ coordinator

async function renderDisputes() {
  const data = await api("GET", "/v1/cases?kind=whistle&status=open&todo=true&limit=100");
  const disputed = data.items.filter((c) => (c.actions || []).some((a) => a.action === "assign"));
  $("#disputes").replaceChildren(disputed.length ? el("table", { class: "stack" }, disputed.map((c) => el("tr", { class: "dispute-row", "data-case": c.id },
    el("td", {}, el("a", { href: `#/cases/${c.id}`, class: "case-link" }, c.title), el("div", { class: "muted" }, c.township)),
    el("td", {}, Object.entries(c.detail.departments).filter(([, p]) => p.status === "declined").map(([d, p]) => el("div", {}, `${d}：${p.decline_reason}`))),
    el("td", {}, el("a", { href: `#/cases/${c.id}`, class: "button-link" }, "指定部门")))))
    : el("p", { class: "muted" }, "没有待协调的争议"));
}

// ------------------------------------------------------------------ supervisor

function liveAlertsSection() {
  return el("section", {}, el("h2", {}, "实时预警 ", el("span", { class: "muted", id: "stream-state" }, streamState)),
    el("table", { id: "live-alerts", class: "stack" }, el("tr", {}, el("th", {}, "级别"), el("th", {}, "事项"), el("th", {}, "责任单位"), el("th", {}, "时限"), el("th", {}, ""))));
}

function alertRow(a) {
  return el("tr", { class: `alert-row ${a.stage}`, "data-alert": a.alert_id },
    el("td", {}, STAGE_ZH[a.stage] || a.stage, a.urgent ? " · 紧急" : ""),
    el("td", {}, el("a", { href: `#/cases/${a.case_id}`, class: "case-link" }, a.title), a.township ? el("div", { class: "muted" }, a.township) : ""),
    el("td", {}, `${unitName(a.unit)}「${CLOCK_ZH[a.clock.kind] || a.clock.kind}」`),
    el("td", {}, when(a.due_at)),
    el("td", {}, session.me.role === "supervisor"
      ? el("button", { class: "alert-ack", onclick: () => act("POST", `/v1/alerts/${a.alert_id}/ack`, undefined, "已知悉。", renderAlerts) }, "已知悉")
      : ""));
}

async function renderAlerts() {
  const data = await api("GET", "/v1/alerts?open=true");
  const table = $("#live-alerts");
  if (!table) return;
  [...table.querySelectorAll(".alert-row")].forEach((r) => r.remove());
  data.items.forEach((a) => table.append(alertRow(a)));
}

function addLiveAlert(a) {
  const table = $("#live-alerts");
  if (!table || table.querySelector(`[data-alert="${a.alert_id}"]`)) return;
  table.querySelector("tr").after(alertRow(a));
}

// ------------------------------------------------------------------ the live stream

/** Alerts (supervisors) and notices (every unit) as they happen; reconnects by itself. */
async function startStream() {
  if (stream) stream.abort();
  const mine = new AbortController();
  stream = mine;
  let lastId = null;
  const state = (text) => { streamState = text; if ($("#stream-state")) $("#stream-state").textContent = text; };
  while (!mine.signal.aborted) {
    try {
      const headers = { Authorization: "Bearer " + session.token };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const res = await fetch("/v1/alerts/stream", { headers, signal: mine.signal });
      if (!res.ok) throw new Error(res.statusText);
      state("● 已连接");
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
          if (!fields.data) continue;
          const data = JSON.parse(fields.data);
          if (fields.event === "notice") onNotice(data);
          if (fields.event === "alert" && $("#live-alerts")) { addLiveAlert(data); current.refresh().catch(() => {}); }
          if (fields.event === "alert_acknowledged") {
            const row = $(`#live-alerts [data-alert="${data.alert_id}"]`);
            if (row) row.remove();
          }
        }
      }
    } catch (e) {
      if (mine.signal.aborted) return;
    }
    state("○ 重新连接中…");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ------------------------------------------------------------------ start

$("#signin").addEventListener("click", signIn);
$("#token").addEventListener("keydown", (e) => { if (e.key === "Enter") signIn(); });
// The stream brings changes at once; this catches what a broken connection missed.
setInterval(() => { if (session.me && !current.caseId) current.refresh().catch(() => {}); }, 60000);
// A sign-in link (`whistle token add … --link`) carries the token in the fragment, which is
// never sent to a server: keep it, and clear it from the address bar and the history.
function takeSignInLink() {
  if (!location.hash.startsWith("#signin=")) return false;
  session.token = decodeURIComponent(location.hash.slice("#signin=".length));
  history.replaceState(null, "", location.pathname + location.search);
  if (stream) stream.abort();
  session.me = null;
  return true;
}
takeSignInLink();
if (session.token) signIn(); else route();
