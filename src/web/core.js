// What every part of the page shares: the signed-in caller, calling the API (with Chinese
// errors), building elements, Chinese names for statuses, clocks and units, countdowns.
"use strict";

export const STATUS_ZH = {
  open: "办理中", resolved: "待确认", confirmed: "已办结", withdrawn: "已撤回", rated: "已评价", duplicate: "重复（已合并）",
  summoned: "待报到", acknowledged: "已报到", declined: "有异议", released: "已调整", handled: "已办结",
};
export const FEEDBACK_STATUS_ZH = { open: "办理中", resolved: "已解决，待评价", rated: "已评价", duplicate: "重复（已合并）" };
export const STAGE_ZH = { warning: "预警", breach: "超时", escalation: "升级督办" };
export const CLOCK_ZH = { ack: "报到", dispute: "争议协调", feedback_reply: "意见回应", feedback_resolve: "意见办结", whistle_resolve: "吹哨办结" };
export const TOPIC_ZH = {
  documents_meetings: "文山会海", excessive_paperwork: "过度留痕", apps_chat_groups: "指尖负担",
  inspections_assessments: "督查考核", work_pushed_down: "责任甩锅", other: "其他",
};
export const SATISFACTION_ZH = { satisfied: "满意", basically_satisfied: "基本满意", unsatisfied: "不满意" };
export const EXTENSION_STATUS_ZH = { pending: "待审批", approved: "已批准", refused: "未批准" };

/** Chinese for the API's stable error codes. */
const CODE_ZH = {
  bad_request: "请求格式有误",
  unauthorized: "令牌无效或已失效，请重新登录",
  forbidden: "您的角色无权进行此操作",
  not_found: "找不到该事项，或不在您的权限范围内",
  conflict: "该事项的当前状态不允许此操作（可能已有他人办理），页面已刷新",
  too_large: "内容过长或文件过大",
  unsupported_media_type: "内容格式不受支持（附件只收照片、PDF 和 Office 文档）",
  file_missing: "附件文件缺失，请联系管理员从备份恢复",
  file_damaged: "附件文件已损坏，请联系管理员从备份恢复",
  invalid_field: "填写有误",
  unavailable: "系统暂时无法保存，本次未保存任何内容，请稍后重试",
  catching_up: "数据正在同步，请稍后刷新",
  outcome_unknown: "系统未能确认是否已保存，请稍后重试（重试不会重复提交）",
  internal: "系统内部错误，请联系管理员",
};
/** Chinese for the API's field names. */
const FIELD_ZH = {
  title: "事项", description: "情况说明", departments: "部门", reason: "理由", note: "进展情况",
  summary: "办理结果", body: "内容", satisfaction: "评价", ratings: "分部门评价", topic: "问题类型",
  working_days: "延期工作日数", hours: "延期小时数", clock: "时限", category: "类别", location: "地点",
  q: "搜索内容", from: "开始日期", to: "结束日期", level: "级别", of: "原事项编号",
  name: "文件名", file: "文件",
};

/** One Chinese sentence for an error answer `{code, message, field}`. */
export function errorZh(error) {
  if (!error) return "操作失败";
  if (error.code === "invalid_field") {
    const field = FIELD_ZH[error.field] || (error.field ? error.field : "");
    const m = error.message || "";
    const what = /must not be empty|is required|at least one/.test(m) ? "不能为空"
      : /longer than|at most|too long/.test(m) ? "过长"
        : /not part of this organisation/.test(m) ? "不是本组织的部门"
          : /named twice/.test(m) ? "重复"
            : /1 to \d+/.test(m) ? `超出允许范围（${m.match(/1 to \d+/)[0].replace("to", "至")}）`
              : "填写有误";
    return field ? `「${field}」${what}` : CODE_ZH.invalid_field;
  }
  return CODE_ZH[error.code] || "操作失败";
}

export class ApiFailure extends Error {
  constructor(status, error) {
    super(errorZh(error));
    this.status = status;
    this.code = error && error.code;
    this.detail = error && error.message;
  }
}

export const session = {
  token: localStorage.getItem("whistle-token") || "",
  me: null,
  org: null,
  // The log position of this page's last action: reads ask for views that include it, so a
  // page shown right after an action shows that action (X-Min-Position).
  seenPosition: 0,
};

export const $ = (sel, root = document) => root.querySelector(sel);
export const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
};

/** The status line: errors in red, confirmations in green. The English detail stays in its title. */
export const say = (text, ok, detail) => {
  const box = $("#message");
  box.textContent = text || "";
  box.title = detail || "";
  box.className = ok ? "ok" : "";
};

export const when = (iso) => iso ? new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) : "";

/** Calls the API as the signed-in caller (or with `extra` headers); throws ApiFailure. */
export async function api(method, path, body, extra = {}) {
  const headers = { ...extra };
  if (session.token && !extra["X-Follow-Up-Code"]) headers.Authorization = "Bearer " + session.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "GET" && session.seenPosition > 0) headers["X-Min-Position"] = String(session.seenPosition);
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiFailure(0, { code: "unavailable", message: String(e) });
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!res.ok) throw new ApiFailure(res.status, (data && data.error) || { code: "internal", message: res.statusText });
  if (data && typeof data.position === "number") session.seenPosition = Math.max(session.seenPosition, data.position);
  return data;
}

/** Runs an action; on success says `done` and calls `then`, on failure says why in Chinese. */
export async function act(method, path, body, done, then, headers = {}) {
  try {
    const answer = await api(method, path, body, headers);
    say(done || "已办理", true);
    if (then) await then(answer);
    return answer;
  } catch (e) {
    say(e.message, false, e.detail);
    if (e.code === "conflict" && then) await then(null).catch(() => {});
    return null;
  }
}

/** A unit as people know it: alerts name the office's and the coordinator's clocks by role. */
export function unitName(unit) {
  if (unit === "office" && session.org) return session.org.office;
  if (unit === "coordinator" && session.org) return session.org.coordinator;
  if (unit === "supervisors") return "督查室";
  return unit;
}

export function roleZh(role) {
  return { township: "乡镇/街道", department: "职能部门", office: "减负办", coordinator: "协调机构", supervisor: "督查", admin: "管理员", anonymous: "提交人", system: "系统" }[role] || role;
}

/** Who did something, as the timeline says it. */
export function actorZh(actor) {
  if (!actor) return "";
  if (actor.role === "anonymous") return "提交人";
  if (actor.role === "system") return "系统";
  return actor.unit || roleZh(actor.role);
}

/** "住建局「报到」" for a clock {kind, department}, or the clock text "ack:住建局". */
export function clockZh(clock) {
  if (typeof clock === "string") {
    const [kind, department] = clock.split(":");
    return clockZh({ kind, department });
  }
  const owner = clock.department || (clock.kind.startsWith("feedback") ? unitName("office") : clock.kind === "dispute" ? unitName("coordinator") : "");
  return `${owner}「${CLOCK_ZH[clock.kind] || clock.kind}」`;
}

export function spanZh(span) {
  if (!span) return "";
  if (span.working_days !== undefined) return `${span.working_days}个工作日`;
  if (span.hours !== undefined) return `${span.hours}小时`;
  return "";
}

export function countdown(dueIso) {
  const span = el("span", { "data-due": dueIso, title: "截止 " + when(dueIso) });
  paintCountdown(span);
  return span;
}

function paintCountdown(span) {
  const left = new Date(span.dataset.due) - Date.now();
  const abs = Math.abs(left);
  const d = Math.floor(abs / 86400000);
  const h = Math.floor((abs % 86400000) / 3600000), m = Math.floor((abs % 3600000) / 60000), s = Math.floor((abs % 60000) / 1000);
  const text = `${d ? d + "天" : ""}${h}小时${String(m).padStart(2, "0")}分${String(s).padStart(2, "0")}秒`;
  span.textContent = left >= 0 ? `剩余 ${text}` : `已超时 ${text}`;
  span.className = left < 0 ? "late" : left < 3600000 ? "soon" : "";
}
setInterval(() => document.querySelectorAll("[data-due]").forEach(paintCountdown), 1000);

/** The deadline a clock runs to, as words: "截止 12/3 17:00（剩余…）". */
export function deadline(armed) {
  return el("span", { class: "deadline" }, `截止 ${when(armed.due_at)} `, countdown(armed.due_at),
    armed.provisional ? el("span", { class: "muted", title: "该年节假日安排尚未发布" }, "（暂定）") : "");
}

/** A file from the API, with the token, as a blob URL (the caller revokes it). */
export async function fileUrl(path, type) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + session.token } });
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    throw new ApiFailure(res.status, (data && data.error) || { code: "internal" });
  }
  const blob = await res.blob();
  return URL.createObjectURL(type ? new Blob([blob], { type }) : blob);
}

/** Fetches a file with the token and hands it to the browser as a download. */
export async function download(path, filename) {
  try {
    const url = await fileUrl(path);
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say(`已下载 ${filename}`, true);
  } catch (e) {
    say(e.message, false, e.detail);
  }
}
