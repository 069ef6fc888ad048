// One case on its own page (#/cases/{id}): what it is, each department's part with its
// countdown, extensions, alerts, the history as a timeline, and the actions the API lists for
// the caller now — one button each, no others.
"use strict";

import {
  $, el, api, act, say, when, session, deadline, clockZh, spanZh, actorZh, fileUrl, download, ApiFailure,
  STATUS_ZH, FEEDBACK_STATUS_ZH, STAGE_ZH, TOPIC_ZH, SATISFACTION_ZH, EXTENSION_STATUS_ZH,
} from "./core.js";

/** Labels of the actions, in the order buttons appear. */
const ACTION_ZH = {
  ack: "报到", decline: "有异议（非本部门职责）", progress: "填写进展", handled: "报告办结",
  confirm: "确认办结并评价", reopen: "重新办理", withdraw: "撤回吹哨", departments: "增加召集部门",
  assign: "指定负责部门", reply: "回应", resolve: "解决", rate: "评价", extension: "申请延期",
  approve: "批准延期", refuse: "不批准延期", ack_alert: "已知悉",
  hand_over: "申请转办", accept_hand_over: "同意转办", refuse_hand_over: "不同意转办", reassign: "改派部门",
  duplicate: "标记为重复", unlink: "取消重复标记", comment: "留言", retract_comment: "撤回留言",
  attach: "上传附件",
};
const HAND_OVER_ZH = { pending: "待决定", approved: "已同意", refused: "未同意" };
const ORDER = Object.keys(ACTION_ZH);

/** Shows case `id` in `root`; `headers` carries a follow-up code for the anonymous page. */
export async function showCase(root, id, headers = {}) {
  root.replaceChildren(el("p", { class: "muted" }, "加载中…"));
  let c;
  try {
    c = await api("GET", `/v1/cases/${encodeURIComponent(id)}`, undefined, headers);
  } catch (e) {
    root.replaceChildren(el("section", {}, el("p", { id: "case-error" }, e.message), backLink()));
    return null;
  }
  renderCase(root, c, headers, () => showCase(root, id, headers));
  return c;
}

function backLink() {
  return el("p", {}, el("a", { href: "#/", id: "case-back" }, "← 返回列表"));
}

/** Draws a case answer (GET /v1/cases/{id} or /v1/follow-up) with its actions. */
export function renderCase(root, c, headers, reload) {
  const whistle = c.kind === "whistle";
  const d = c.detail;
  const status = whistle ? STATUS_ZH[c.status] : FEEDBACK_STATUS_ZH[c.status];
  const head = el("section", { id: "case", "data-case": c.id, "data-status": c.status },
    session.me ? backLink() : "",
    el("h2", { id: "case-title" }, whistle ? d.title : `基层意见：${TOPIC_ZH[d.topic] || d.topic}`,
      c.urgent ? el("span", { class: "tag late" }, "紧急") : ""),
    el("dl", { class: "facts" },
      el("dt", {}, "状态"), el("dd", { id: "case-status" }, status || c.status),
      whistle ? [el("dt", {}, "吹哨单位"), el("dd", {}, d.township)] : [el("dt", {}, "提交方式"), el("dd", {}, d.anonymous ? "匿名" : (c.township || ""))],
      el("dt", {}, "提出时间"), el("dd", {}, when(c.opened_at)),
      whistle && d.location ? [el("dt", {}, "地点"), el("dd", {}, d.location)] : "",
      d.satisfaction ? [el("dt", {}, "评价"), el("dd", {}, SATISFACTION_ZH[d.satisfaction])] : ""),
    el("p", { class: "body" }, whistle ? d.description : d.body));
  const parts = [head];
  if (d.duplicate_of) parts.push(el("section", { id: "duplicate-of", class: "notice" }, "本事项已标记为重复，原事项：",
    el("a", { href: `#/cases/${d.duplicate_of}`, class: "case-link" }, "查看原事项"),
    whistle ? "。原事项的办理进展会同步通知本单位。" : "。"));
  if ((c.duplicates || []).length) parts.push(el("section", { id: "duplicates" }, el("h3", {}, "已合并的重复事项"),
    el("ul", {}, c.duplicates.map((x) => el("li", { "data-case": x.case_id }, x.unit || "", " ",
      el("a", { href: `#/cases/${x.case_id}`, class: "case-link" }, "查看"))))));
  if (whistle) parts.push(partsSection(c));
  parts.push(clocksSection(c));
  const actions = actionsSection(c, headers, reload);
  parts.push(actions);
  if ((d.extensions || []).length) parts.push(extensionsSection(c));
  if ((d.hand_overs || []).length) parts.push(handOversSection(c));
  if ((d.alerts || []).length) parts.push(alertsSection(c));
  if (session.me && !d.duplicate_of && (c.status === "open" || c.status === "resolved")) parts.push(similarSection(c));
  parts.push(filesSection(c, headers, reload));
  parts.push(threadBox(c, headers, reload));
  parts.push(timeline(c, headers, reload));
  root.replaceChildren(...parts);
}

function handOversSection(c) {
  return el("section", {}, el("h3", {}, "转办申请"),
    el("table", { class: "stack" },
      el("tr", {}, ["编号", "申请部门", "转给", "理由", "状态"].map((h) => el("th", {}, h))),
      c.detail.hand_overs.map((h) => el("tr", { class: "hand-over-row", "data-number": h.number, "data-hand-over": h.status },
        el("td", {}, String(h.number)), el("td", {}, h.from), el("td", {}, h.to), el("td", {}, h.reason),
        el("td", {}, HAND_OVER_ZH[h.status] || h.status, h.decided_by ? `（${actorZh(h.decided_by)}）` : "")))));
}

/** Possible duplicates of this case, loaded after the page is drawn. */
function similarSection(c) {
  const box = el("div", { id: "similar-list" }, el("p", { class: "muted" }, "查找中…"));
  api("GET", `/v1/cases/${c.id}/similar`).then((data) => {
    box.replaceChildren(data.items.length
      ? el("ul", {}, data.items.map((x) => el("li", { class: "similar-row", "data-case": x.id },
        el("a", { href: `#/cases/${x.id}`, class: "case-link" }, x.title), ` ${x.township || ""} · ${when(x.opened_at)} · 相似度 ${Math.round(x.similarity * 100)}%`)))
      : el("p", { class: "muted" }, "近期没有相似的事项"));
  }).catch((e) => box.replaceChildren(el("p", { class: "muted" }, e.message)));
  return el("section", { id: "similar" }, el("h3", {}, "可能重复的事项"), box);
}

/** Evidence files: thumbnails of photos, links to documents, and (when the caller may attach)
 * a photo input a phone opens on its camera, a document input and the upload button. Files
 * are never required: nothing asks for a photo as proof of work. */
function filesSection(c, headers, reload) {
  const files = (c.detail && c.detail.attachments) || [];
  const attach = (c.actions || []).find((a) => a.action === "attach");
  if (!files.length && !attach) return "";
  const path = (n) => `/v1/cases/${c.id}/attachments/${n}`;
  const shown = files.map((f) => {
    if (f.content_type.startsWith("image/")) {
      const img = el("img", { class: "thumb", alt: f.name, "data-number": f.number });
      fileUrl(path(f.number)).then((url) => { img.src = url; }).catch(() => { img.alt = `${f.name}（无法加载）`; });
      return el("figure", { "data-number": f.number }, img, el("figcaption", {}, f.name));
    }
    return el("figure", { "data-number": f.number },
      el("a", { href: "#", class: "file-doc", onclick: (e) => { e.preventDefault(); download(path(f.number), f.name); } }, f.name),
      el("figcaption", {}, `${Math.max(1, Math.round(f.size / 1024))} KB`));
  });
  const upload = attach ? uploadBox(attach, headers, reload) : "";
  return el("section", { id: "files" }, el("h3", {}, "附件 ", el("span", { class: "muted" }, "（可选，不作为留痕要求）")),
    shown.length ? el("div", { class: "files" }, shown) : "", upload);
}

function uploadBox(attach, headers, reload) {
  const photo = el("input", { type: "file", id: "attach-photo", accept: "image/*", multiple: true });
  const doc = el("input", { type: "file", id: "attach-doc", accept: ".pdf,.doc,.docx,.xls,.xlsx,.ppt,.pptx", multiple: true });
  const send = async () => {
    const chosen = [...photo.files, ...doc.files];
    if (!chosen.length) return say("请先选择照片或文件。", false);
    for (const file of chosen) {
      try {
        const res = await fetch(`${attach.path}?name=${encodeURIComponent(file.name)}`, {
          method: "POST", body: file,
          headers: { ...headers, Authorization: "Bearer " + session.token, "Content-Type": "application/octet-stream" },
        });
        const data = await res.json().catch(() => null);
        if (!res.ok) throw new ApiFailure(res.status, (data && data.error) || { code: "internal" });
        if (data && typeof data.position === "number") session.seenPosition = Math.max(session.seenPosition, data.position);
      } catch (e) {
        return say(`${file.name}：${e.message}`, false, e.detail);
      }
    }
    say(`已上传 ${chosen.length} 个附件。`, true);
    await reload();
  };
  return el("div", { class: "attach" },
    el("label", {}, "拍照或选择照片 ", photo),
    el("label", {}, "文件（PDF、Word、Excel） ", doc),
    el("button", { id: "attach-send", "data-action": "attach", onclick: send }, ACTION_ZH.attach));
}

/** The comment box (when the caller may comment) with a reminder of @mentions. */
function threadBox(c, headers, reload) {
  const comment = (c.actions || []).find((a) => a.action === "comment");
  if (!comment) return "";
  const text = el("textarea", { id: "comment-body", rows: "2", maxlength: "1000", "aria-label": "留言", placeholder: "留言（@单位名 可提醒该单位，如 @住建局）" });
  const send = () => act(comment.method, comment.path, { body: text.value }, "留言已发表。", () => reload(), headers);
  return el("section", { id: "thread" }, el("h3", {}, "留言"), text,
    el("p", {}, el("button", { id: "comment-send", "data-action": "comment", onclick: send }, "发表留言"),
      el("span", { class: "muted" }, " 留言发表后10分钟内可撤回，不能修改。")));
}

function partsSection(c) {
  const rows = Object.entries(c.detail.departments || {}).map(([dept, p]) => {
    const clocks = c.clocks.filter((k) => k.clock.department === dept);
    return el("tr", { class: "part-row", "data-dept": dept, "data-part": p.status },
      el("td", {}, dept),
      el("td", {}, el("span", { class: "tag " + p.status }, STATUS_ZH[p.status] || p.status),
        p.rating ? el("span", { class: "tag" }, SATISFACTION_ZH[p.rating]) : ""),
      el("td", {}, clocks.map((k) => el("div", {}, clockZh(k.clock), " ", deadline(k))),
        p.decline_reason && p.status === "declined" ? el("div", { class: "muted" }, "异议理由：" + p.decline_reason) : ""));
  });
  return el("section", {}, el("h3", {}, "部门报到与办理"),
    el("table", { class: "stack" }, el("tr", {}, el("th", {}, "部门"), el("th", {}, "状态"), el("th", {}, "时限")), rows));
}

function clocksSection(c) {
  const other = c.clocks.filter((k) => !k.clock.department || c.kind !== "whistle");
  if (!other.length) return "";
  return el("section", {}, el("h3", {}, "时限"),
    other.map((k) => el("div", { class: "clock-row" }, clockZh(k.clock), " ", deadline(k))));
}

function extensionsSection(c) {
  return el("section", {}, el("h3", {}, "延期申请"),
    el("table", { class: "stack" },
      el("tr", {}, ["编号", "时限", "延长", "理由", "申请单位", "审批"].map((h) => el("th", {}, h))),
      c.detail.extensions.map((x) => el("tr", { class: "extension-row", "data-number": x.number, "data-extension": x.status },
        el("td", {}, String(x.number)), el("td", {}, clockZh(x.clock)), el("td", {}, spanZh(x.span)),
        el("td", {}, x.reason), el("td", {}, actorZh(x.requested_by)),
        el("td", {}, EXTENSION_STATUS_ZH[x.status] || x.status)))));
}

function alertsSection(c) {
  return el("section", {}, el("h3", {}, "预警与超时"),
    el("table", { class: "stack" },
      el("tr", {}, ["级别", "时限", "截止", "状态"].map((h) => el("th", {}, h))),
      c.detail.alerts.map((a) => el("tr", { class: "case-alert " + a.stage },
        el("td", {}, STAGE_ZH[a.stage] || a.stage), el("td", {}, clockZh(a.clock)), el("td", {}, when(a.due_at)),
        el("td", {}, a.acknowledged_by ? `${actorZh(a.acknowledged_by)}已知悉` : "未处理")))));
}

// ------------------------------------------------------------------ actions

function actionsSection(c, headers, reload) {
  const list = [...(c.actions || [])].sort((a, b) => ORDER.indexOf(a.action) - ORDER.indexOf(b.action));
  // Retracting a comment sits with the comment in the timeline; writing one in the thread box.
  const here = list.filter((a) => a.action !== "retract_comment" && a.action !== "comment" && a.action !== "attach");
  const form = el("div", { id: "action-form" });
  const buttons = here.map((a) => {
    const label = actionLabel(a);
    return el("button", {
      class: "action" + (a.action === "decline" || a.action === "withdraw" || a.action === "refuse" ? " secondary" : ""),
      "data-action": a.action, "data-clock": a.clock, "data-number": a.number,
      onclick: () => openForm(form, a, c, headers, reload),
    }, label);
  });
  return el("section", { id: "actions" }, el("h3", {}, "可办理的操作"),
    buttons.length ? el("div", { class: "toolbar" }, buttons) : el("p", { class: "muted", id: "no-actions" }, "您目前对该事项没有需要办理的操作。"),
    form);
}

function actionLabel(a) {
  if (a.action === "extension") return `${ACTION_ZH.extension}：${clockZh(a.clock)}`;
  if (a.action === "approve" || a.action === "refuse") return `${ACTION_ZH[a.action]}（第${a.number}号）`;
  if (a.action === "accept_hand_over" || a.action === "refuse_hand_over") return `${ACTION_ZH[a.action]}：${a.from}→${a.to}`;
  return ACTION_ZH[a.action] || a.action;
}

function field(id, label, input) {
  return el("div", { class: "field" }, el("label", { for: id }, label), input);
}

function satisfactionSelect(id, withNone) {
  const options = Object.entries(SATISFACTION_ZH).map(([v, l]) => el("option", { value: v }, l));
  return el("select", { id }, withNone ? el("option", { value: "" }, "同整体评价") : "", options);
}

/** The small form an action needs (or none), then the call. */
function openForm(form, a, c, headers, reload) {
  // After the call the case is read again (at the action's log position), whatever the answer.
  const run = (body, done) => act(a.method, a.path, body, done, () => reload(), headers);
  const text = (name, label, required = true) => field(`act-${name}`, label + (required ? "" : "（可不填）"), el("textarea", { id: `act-${name}`, rows: "3", maxlength: "2000" }));
  const value = (name) => ($(`#act-${name}`) || {}).value;
  let inputs = [];
  let submit;
  switch (a.action) {
    case "ack": case "approve": case "ack_alert": case "unlink": case "accept_hand_over": case "retract_comment":
      // One click: nothing to fill in.
      if (a.action === "ack") return run(undefined, "已报到，请按时办理。");
      if (a.action === "approve") return run(undefined, `已批准第${a.number}号延期申请，时限已顺延。`);
      if (a.action === "unlink") return run(undefined, "已取消重复标记，本事项恢复办理，时限按原起算时间计算。");
      if (a.action === "accept_hand_over") return run(undefined, `已同意转办，已通知${a.to}报到。`);
      if (a.action === "retract_comment") return run(undefined, "留言已撤回。");
      return run(undefined, "已知悉。");
    case "refuse_hand_over": inputs = [text("reason", "不同意的理由", false)]; submit = () => run({ reason: value("reason") || undefined }, "已不同意转办，原部门继续办理。"); break;
    case "hand_over": {
      inputs = [field("act-to", "转给", el("select", { id: "act-to" }, (a.choices || []).map((d) => el("option", { value: d }, d)))),
        text("reason", "转办理由"),
        el("p", { class: "muted" }, "由协调机构决定；决定前本部门时限照常计算。")];
      submit = () => run({ to: value("to"), reason: value("reason") }, "已申请转办，等待协调机构决定。");
      break;
    }
    case "reassign": {
      inputs = [field("act-from", "原部门", el("select", { id: "act-from" }, (a.from || []).map((d) => el("option", { value: d }, d)))),
        field("act-to", "改派给", el("select", { id: "act-to" }, (a.choices || []).map((d) => el("option", { value: d }, d)))),
        text("reason", "改派理由")];
      submit = () => run({ from: value("from"), to: value("to"), reason: value("reason") }, "已改派，新部门将收到报到通知。");
      break;
    }
    case "duplicate": {
      const choices = el("div", { id: "act-of-choices" }, el("p", { class: "muted" }, "查找相似事项…"));
      api("GET", `/v1/cases/${c.id}/similar`).then((data) => {
        choices.replaceChildren(...data.items.map((x) => el("label", { class: "inline" },
          el("input", { type: "radio", name: "act-of", value: x.id }), ` ${x.title}（${x.township || ""}，${when(x.opened_at)}）`)));
        if (!data.items.length) choices.replaceChildren(el("p", { class: "muted" }, "近期没有相似事项，可填写原事项编号。"));
      }).catch(() => choices.replaceChildren());
      inputs = [el("p", { class: "muted" }, "标记后本事项关闭，各部门时限停止，本单位跟进原事项；可随时取消标记。"), choices,
        field("act-of", "或粘贴原事项的案件页地址（或编号）", el("input", { id: "act-of", type: "text", autocomplete: "off" }))];
      submit = () => {
        const picked = document.querySelector("input[name=act-of]:checked");
        // A pasted case-page address works as well as the bare id.
        const typed = (value("of") || "").match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i);
        return run({ of: (picked && picked.value) || (typed ? typed[0] : value("of")) }, "已标记为重复，本事项关闭并跟进原事项。");
      };
      break;
    }
    case "decline": inputs = [text("reason", "不属于本部门职责的理由")]; submit = () => run({ reason: value("reason") }, "已提出异议，等待协调机构指定。"); break;
    case "progress": inputs = [text("note", "进展情况")]; submit = () => run({ note: value("note") }, "进展已记录，吹哨单位可见。"); break;
    case "handled": inputs = [text("summary", "办理结果")]; submit = () => run({ summary: value("summary") }, "已报告办结。"); break;
    case "reopen":
      inputs = [text("reason", "需要重新办理的原因")];
      submit = () => run({ reason: value("reason") }, "已退回重新办理。"); break;
    case "withdraw": inputs = [text("reason", "撤回原因", false)]; submit = () => run({ reason: value("reason") || undefined }, "已撤回。"); break;
    case "reply": inputs = [text("body", "回应内容")]; submit = () => run({ body: value("body") }, "已回应。"); break;
    case "resolve": inputs = [text("summary", "解决情况")]; submit = () => run({ summary: value("summary") }, "已解决，等待提交人评价。"); break;
    case "refuse": inputs = [text("reason", "不批准的理由", false)]; submit = () => run({ reason: value("reason") || undefined }, `已不批准第${a.number}号延期申请。`); break;
    case "rate":
      inputs = [field("act-satisfaction", "评价", satisfactionSelect("act-satisfaction"))];
      submit = () => run({ satisfaction: value("satisfaction") }, "感谢评价。"); break;
    case "confirm": {
      inputs = [field("act-satisfaction", "整体评价", satisfactionSelect("act-satisfaction")),
        ...(a.departments || []).map((d, i) => field(`act-rate-${i}`, `${d} 的评价`, el("select", { id: `act-rate-${i}`, "data-dept": d, class: "dept-rating" },
          el("option", { value: "" }, "同整体评价"), Object.entries(SATISFACTION_ZH).map(([v, l]) => el("option", { value: v }, l)))))];
      submit = () => {
        const ratings = {};
        document.querySelectorAll("#action-form .dept-rating").forEach((s) => { if (s.value) ratings[s.dataset.dept] = s.value; });
        return run({ satisfaction: value("satisfaction"), ratings }, "已确认办结并评价。");
      };
      break;
    }
    case "assign": case "departments": {
      const boxes = (a.choices || []).map((d) => el("label", { class: "inline" }, el("input", { type: "checkbox", name: "act-dept", value: d }), " " + d));
      inputs = [el("fieldset", { class: "depts" }, el("legend", {}, a.action === "assign" ? "负责部门" : "增加召集的部门"), boxes)];
      submit = () => run({ departments: [...document.querySelectorAll("input[name=act-dept]:checked")].map((i) => i.value) },
        a.action === "assign" ? "已指定负责部门，并通知其报到。" : "已召集，部门将收到通知。");
      break;
    }
    case "extension": {
      inputs = [
        el("p", { class: "muted" }, `为 ${clockZh(a.clock)} 申请延期，由督查室审批；审批前原时限不变。`),
        field("act-amount", "延长", el("input", { id: "act-amount", type: "number", min: "1", value: "1", inputmode: "numeric" })),
        field("act-unit", "单位", el("select", { id: "act-unit" }, el("option", { value: "working_days" }, "工作日"), el("option", { value: "hours" }, "小时"))),
        text("reason", "延期理由"),
      ];
      submit = () => run({ clock: a.clock, [value("unit")]: Number(value("amount")), reason: value("reason") }, "已申请延期，等待督查室审批。");
      break;
    }
    default:
      return say("页面不认识这个操作：" + a.action);
  }
  form.replaceChildren(el("div", { class: "action-form", "data-form": a.action },
    el("h4", {}, actionLabel(a)), inputs,
    el("p", {}, el("button", { id: "act-submit", onclick: submit }, "提交"), " ",
      el("button", { class: "secondary", id: "act-cancel", onclick: () => form.replaceChildren() }, "取消"))));
  const first = form.querySelector("textarea, select, input");
  if (first) first.focus();
}

// ------------------------------------------------------------------ timeline

/** One line of history in Chinese: who did what. */
function describe(e) {
  const ratings = (r) => Object.entries(r || {}).map(([d, s]) => `${d}${SATISFACTION_ZH[s]}`).join("，");
  switch (e.type) {
    case "whistle_raised": return [`吹哨，召集 ${e.departments.join("、")}`, e.urgency === "urgent" ? "（紧急）" : ""];
    case "department_acknowledged": return [`${e.department} 报到`];
    case "department_declined": return [`${e.department} 提出异议`, e.reason];
    case "departments_assigned": return [`指定 ${e.departments.join("、")} 负责`, e.settles.length ? `（处理 ${e.settles.join("、")} 的异议）` : ""];
    case "departments_added": return [`增加召集 ${e.departments.join("、")}`];
    case "progress_noted": return [`${e.department} 进展`, e.note];
    case "department_handled": return [`${e.department} 报告办结`, e.summary];
    case "whistle_resolved": return ["各部门均已办结，等待吹哨单位确认"];
    case "whistle_confirmed": return [`确认办结，评价：${SATISFACTION_ZH[e.satisfaction]}`, ratings(e.ratings)];
    case "whistle_reopened": return ["退回重新办理", e.reason];
    case "whistle_withdrawn": return ["撤回吹哨", e.reason || ""];
    case "feedback_submitted": return [`提交意见（${TOPIC_ZH[e.topic] || e.topic}）${e.anonymous ? "，匿名" : ""}`];
    case "feedback_replied": return ["回应", e.body];
    case "feedback_resolved": return ["解决", e.summary];
    case "feedback_rated": return [`评价：${SATISFACTION_ZH[e.satisfaction]}`];
    case "feedback_reopened": return ["重新提出", e.reason];
    case "extension_requested": return [`申请延期（第${e.number}号）：${clockZh(e.clock)} 延长${spanZh(e.span)}`, e.reason];
    case "extension_approved": return [`批准第${e.number}号延期申请`];
    case "extension_refused": return [`不批准第${e.number}号延期申请`, e.reason || ""];
    case "sla_warned": return [`预警：${clockZh(e.clock)} 将于 ${when(e.due_at)} 到期`];
    case "sla_breached": return [`超时：${clockZh(e.clock)} 已于 ${when(e.due_at)} 到期`];
    case "sla_escalated": return [`升级督办（${e.level}级）：${clockZh(e.clock)}`];
    case "alert_acknowledged": return ["督查室已知悉预警"];
    case "marked_duplicate": return ["标记为重复事项，跟进原事项"];
    case "duplicate_unlinked": return ["取消重复标记，恢复办理"];
    case "comment_added": return [`留言（第${e.number}条）`, e.body];
    case "comment_retracted": return [`撤回第${e.number}条留言`];
    case "attachment_added": return [`上传附件：${e.name}`];
    case "hand_over_proposed": return [`申请转办（第${e.number}号）：${e.from} → ${e.to}`, e.reason];
    case "hand_over_accepted": return [`同意第${e.number}号转办`];
    case "hand_over_refused": return [`不同意第${e.number}号转办`, e.reason || ""];
    case "department_reassigned": return [`改派：${e.from} → ${e.to}`, e.reason];
    default: return [e.type];
  }
}

function timeline(c, headers, reload) {
  const retracted = new Set((c.history || []).filter((e) => e.type === "comment_retracted").map((e) => e.number));
  const retract = new Map((c.actions || []).filter((a) => a.action === "retract_comment").map((a) => [a.number, a]));
  const items = (c.history || []).map((e) => {
    let [what, detail] = describe(e);
    if (e.type === "comment_added" && retracted.has(e.number)) detail = "（已撤回）";
    const who = actorZh(e.actor);
    // "住建局 住建局 报到" reads "住建局 报到".
    if (who && what.startsWith(who + " ")) what = what.slice(who.length + 1);
    return el("li", { class: "event", "data-type": e.type },
      el("time", { datetime: e.at }, when(e.at)), " ",
      el("strong", {}, who), " ", what,
      detail ? el("div", { class: e.type === "comment_added" ? "comment-body" : "muted" }, detail) : "",
      e.type === "comment_added" && retract.has(e.number)
        ? el("button", { class: "secondary small", "data-action": "retract_comment", "data-number": e.number,
          onclick: () => { const a = retract.get(e.number); act(a.method, a.path, undefined, "留言已撤回。", () => reload(), headers); } }, "撤回")
        : "");
  });
  return el("section", {}, el("h3", {}, "办理记录"), el("ol", { class: "timeline", id: "timeline" }, items));
}
