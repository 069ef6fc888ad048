// Lists of cases with filters (status, overdue, unit, kind, period, my to-dos), text search,
// paging past the first page, and the same rows as a spreadsheet download.
"use strict";

import { $, el, api, when, session, countdown, download, clockZh, STATUS_ZH, FEEDBACK_STATUS_ZH, TOPIC_ZH } from "./core.js";

const PAGE = 20;

/**
 * A list section. `id` names it (its elements are `#{id}-…`); `fixed` are query parameters
 * the list always has (e.g. {kind: "whistle"}); `filters` which controls it offers.
 */
export function caseList(id, title, fixed = {}, filters = {}) {
  const control = (name, node) => { node.id = `${id}-${name}`; return node; };
  const statuses = fixed.kind === "feedback" ? FEEDBACK_STATUS_ZH : { open: "办理中", resolved: "待确认", confirmed: "已办结", withdrawn: "已撤回", duplicate: "重复（已合并）" };
  const units = filters.unit ? [...session.org.departments, ...session.org.townships] : [];
  const bar = el("div", { class: "toolbar filters", role: "search" },
    control("q", el("input", { type: "search", placeholder: "搜索事项、说明…", "aria-label": "搜索", maxlength: "100" })),
    filters.kind ? control("kind", el("select", { "aria-label": "类型" }, el("option", { value: "" }, "全部类型"),
      el("option", { value: "whistle" }, "吹哨"), el("option", { value: "feedback" }, "基层意见"))) : "",
    filters.status === false ? "" : control("status", el("select", { "aria-label": "状态" }, el("option", { value: "" }, "全部状态"),
      Object.entries(statuses).map(([v, l]) => el("option", { value: v }, l)))),
    filters.unit ? control("unit", el("select", { "aria-label": "单位" }, el("option", { value: "" }, "全部单位"),
      units.map((u) => el("option", { value: u }, u)))) : "",
    el("label", { class: "inline" }, control("overdue", el("input", { type: "checkbox" })), " 仅超时"),
    el("label", { class: "inline" }, control("todo", el("input", { type: "checkbox" })), " 仅待我办理"),
    el("label", { class: "inline" }, "从 ", control("from", el("input", { type: "date", "aria-label": "开始日期" }))),
    el("label", { class: "inline" }, "至 ", control("to", el("input", { type: "date", "aria-label": "结束日期" }))),
    el("button", { id: `${id}-search`, onclick: () => list.load() }, "查询"),
    el("button", { class: "secondary", id: `${id}-csv`, onclick: () => list.download() }, "下载表格"),
  );
  const body = el("div", { id, class: "case-list" }, el("p", { class: "muted" }, "加载中…"));
  const pager = el("div", { class: "toolbar pager" },
    el("button", { class: "secondary", id: `${id}-prev`, disabled: true, onclick: () => list.back() }, "上一页"),
    el("span", { id: `${id}-page`, class: "muted" }, ""),
    el("button", { class: "secondary", id: `${id}-next`, disabled: true, onclick: () => list.forward() }, "下一页"));
  const section = el("section", { class: "list-section" }, el("h2", {}, title), bar, body, pager);
  bar.querySelector(`#${id}-q`).addEventListener("keydown", (e) => { if (e.key === "Enter") list.load(); });
  for (const name of ["status", "kind", "unit", "overdue", "todo", "from", "to"]) {
    const node = bar.querySelector(`#${id}-${name}`);
    if (node) node.addEventListener("change", () => list.load());
  }

  const list = {
    section,
    cursors: [null],
    query(withCursor) {
      const p = new URLSearchParams(fixed);
      const get = (n) => { const node = $(`#${id}-${n}`); return node ? (node.type === "checkbox" ? (node.checked ? "true" : "") : node.value.trim()) : ""; };
      for (const n of ["q", "status", "kind", "unit", "overdue", "todo", "from", "to"]) if (get(n)) p.set(n, get(n));
      if (withCursor) {
        p.set("limit", String(PAGE));
        const c = this.cursors[this.cursors.length - 1];
        if (c) p.set("cursor", c);
      }
      return p;
    },
    async load() { this.cursors = [null]; await this.show(); },
    async forward() { if (this.next) { this.cursors.push(this.next); await this.show(); } },
    async back() { if (this.cursors.length > 1) { this.cursors.pop(); await this.show(); } },
    async refresh() { if ($(`#${id}`)) await this.show(); },
    async show() {
      let data;
      try {
        data = await api("GET", `/v1/cases?${this.query(true)}`);
      } catch (e) {
        body.replaceChildren(el("p", { class: "error" }, e.message));
        return;
      }
      this.next = data.next_cursor;
      body.replaceChildren(data.items.length ? table(data.items) : el("p", { class: "muted" }, "没有符合条件的事项"));
      $(`#${id}-prev`).disabled = this.cursors.length <= 1;
      $(`#${id}-next`).disabled = !this.next;
      $(`#${id}-page`).textContent = `第 ${this.cursors.length} 页`;
    },
    download() {
      const p = this.query(false);
      const from = p.get("from") || "", to = p.get("to") || "";
      const q = new URLSearchParams();
      if (from) q.set("from", from);
      if (to) q.set("to", to);
      if (p.get("kind")) q.set("kind", p.get("kind"));
      q.set("format", "csv");
      download(`/v1/cases/export?${q}`, `案件明细${from ? "-" + from : ""}${to ? "-" + to : ""}.csv`);
    },
  };
  return list;
}

/** The rows: title (a link to the case page), who, status, parts, nearest deadline, to-dos. */
function table(items) {
  return el("table", { class: "stack" },
    el("tr", {}, ["事项", "单位", "状态", "办理情况", "时限"].map((h) => el("th", {}, h))),
    items.map((c) => {
      const whistle = c.kind === "whistle";
      const parts = whistle ? Object.entries(c.detail.departments || {}).map(([d, p]) =>
        el("span", { class: "tag " + p.status, "data-dept": d }, `${d} ${STATUS_ZH[p.status] || p.status}`)) : [];
      const next = [...c.clocks].sort((a, b) => a.due_at.localeCompare(b.due_at))[0];
      const todo = (c.actions || []).filter((a) => a.todo).length;
      return el("tr", { class: "case-row", "data-case": c.id },
        el("td", {}, el("a", { href: `#/cases/${c.id}`, class: "case-link" }, whistle ? c.title : `意见：${TOPIC_ZH[c.detail.topic] || ""}`),
          c.urgent ? el("span", { class: "tag late" }, "紧急") : "",
          todo ? el("span", { class: "tag todo", title: "您可以办理的操作" }, `待办 ${todo}`) : "",
          el("div", { class: "muted" }, when(c.opened_at))),
        el("td", {}, c.township || (whistle ? "" : "匿名")),
        el("td", {}, (whistle ? STATUS_ZH : FEEDBACK_STATUS_ZH)[c.status] || c.status),
        el("td", {}, whistle ? parts : (c.detail.body || "").slice(0, 60)),
        el("td", {}, next ? [el("div", { class: "muted" }, clockZh(next.clock)), countdown(next.due_at)] : ""));
    }));
}
