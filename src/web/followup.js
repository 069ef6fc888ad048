// The anonymous submitter's page (#/follow-up): the follow-up code is the only key. No token
// is used or kept, and nothing on the page identifies the submitter; the code stays in this
// page's memory only.
"use strict";

import { el, api, say } from "./core.js";
import { renderCase } from "./case.js";

export function followUpPage(root) {
  const input = el("input", { id: "follow-up-code", type: "password", autocomplete: "off", placeholder: "fu-…", "aria-label": "查询码" });
  const result = el("div", { id: "follow-up-case" });
  const look = async () => {
    const code = input.value.trim();
    if (!code) { say("请输入提交意见时得到的查询码"); return; }
    const headers = { "X-Follow-Up-Code": code };
    const show = async () => {
      try {
        const c = await api("GET", "/v1/follow-up", undefined, headers);
        say("");
        renderCase(result, c, headers, show);
      } catch (e) {
        result.replaceChildren();
        say(e.code === "not_found" ? "没有与该查询码对应的意见，请核对查询码" : e.message, false, e.detail);
      }
    };
    await show();
  };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") look(); });
  root.replaceChildren(
    el("section", {},
      el("h2", {}, "匿名意见查询 ", el("span", { class: "muted" }, "Follow up anonymous feedback")),
      el("p", { class: "muted" }, "输入匿名提交意见时得到的查询码，查看减负办的回应与解决情况，并进行评价或重新提出。系统不记录您的身份，本页不保存查询码。"),
      el("label", { for: "follow-up-code" }, "查询码"), input,
      el("p", {}, el("button", { id: "follow-up-open", onclick: look }, "查询"), " ",
        el("a", { href: "#/" }, "返回登录"))),
    result);
  input.focus();
}
