// 三率 for supervisors: a month's rates by unit with numerator and denominator, a 6-month
// trend, downloads, and the printable 通报.
"use strict";

import { $, el, api, say, fileUrl, download, session } from "./core.js";


const DIMENSION_ZH = { department: "部门", township: "乡镇（街道）", district: "区县", office: "减负办", coordinator: "编办", topic: "意见类别" };

/** The dimensions the caller may read: a district's supervisor its townships and its district;
 * others every dimension, districts only where the organisation has them. */
function dimensions() {
  if (session.me && session.me.role === "supervisor" && session.me.district) return ["township", "district"];
  const tree = session.org && (session.org.districts || []).length > 0;
  return Object.keys(DIMENSION_ZH).filter((k) => k !== "district" || tree);
}
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

export function statsSection() {
  const month = el("input", { id: "stats-month", type: "month", value: thisMonth(), "aria-label": "统计月份" });
  const by = el("select", { id: "stats-by", "aria-label": "统计维度" },
    dimensions().map((k) => el("option", { value: k }, DIMENSION_ZH[k])));
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

/** Opens the printable 通报 of a period in a new window. */
export async function openReport(period, kind = "monthly") {
  try {
    window.open(await fileUrl(`/v1/reports/${kind}?period=${period}&format=html`, "text/html"), "_blank");
  } catch (e) {
    say(e.message, false, e.detail);
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

export async function renderStats() {
  const month = ($("#stats-month") && $("#stats-month").value) || thisMonth();
  const by = ($("#stats-by") && $("#stats-by").value) || dimensions()[0];
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

