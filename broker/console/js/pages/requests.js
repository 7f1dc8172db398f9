// Open requests, access and command reviews alike, refreshed every three seconds;
// approve (with an optional comment) or deny (with a reason) with the operate scope.

import { el, fill, flash, table } from "../dom.js";
import { duration, when } from "../format.js";

const REFRESH_MS = 3000;

export function render(context, root) {
  const holder = el("div", { id: "requests" }, el("p", { class: "muted" }, "loading…"));
  const history = el("div", { id: "requests-history" });
  root.append(el("h1", {}, "Pending requests"), holder, el("h2", {}, "Recently decided"), history);

  let timer = null;
  let stopped = false;
  let shown = "";
  let latest = 0;
  // A refresh must not wipe what someone is typing into a comment or reason.
  const busy = () => holder.contains(document.activeElement) && document.activeElement.tagName === "INPUT";

  async function refresh() {
    // Called by the timer and after each decision: only the latest call goes on.
    clearTimeout(timer);
    const mine = ++latest;
    try {
      if (!busy()) {
        const [open, all] = await Promise.all([
          context.api.get("/api/v1/requests"),
          context.api.get("/api/v1/requests", { all: "true" }),
        ]);
        if (stopped || mine !== latest) return;
        // Redraw only what changed: a row must not vanish under the reviewer's pointer.
        const seen = JSON.stringify([open.requests, all.requests]);
        if (seen === shown) {
          timer = setTimeout(refresh, REFRESH_MS);
          return;
        }
        shown = seen;
        fill(holder, table(columns(context, refresh, true), open.requests, {
          empty: "Nothing waiting for a decision.",
          rowAttributes: (r) => ({ "data-request": r.id, "data-kind": r.kind }),
        }));
        const decided = all.requests.filter((r) => r.state !== "pending").slice(-20).reverse();
        fill(history, table(columns(context, refresh, false), decided, { empty: "None yet." }));
      }
    } catch (error) {
      if (!stopped && mine === latest) context.failed(error);
    }
    if (!stopped && mine === latest) timer = setTimeout(refresh, REFRESH_MS);
  }
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function columns(context, refresh, pending) {
  const list = [
    ["#", (r) => String(r.id)],
    ["Kind", (r) => r.kind === "command" ? "command review" : "access"],
    ["User", (r) => r.user],
    ["Target", (r) => r.target],
    ["What", (r) => r.kind === "command"
      ? [el("code", { class: "command" }, r.command?.line), ` (rule ${r.command?.rule})`]
      : `${duration(r.duration_s)} as ${r.role}`],
    ["Reason", (r) => r.reason],
    ["Approvers", (r) => (r.approvers || []).join(", ")],
    ["Asked", (r) => when(r.created_at)],
  ];
  if (pending) {
    list.push(["Approvals", (r) => `${(r.approved_by || []).length} of ${r.approvals_needed}`]);
    if (context.canOperate) list.push(["Decision", (r) => decision(context, r, refresh)]);
  } else {
    list.push(["Outcome", (r) => {
      const by = r.decided_by || (r.approved_by || []).join(", ");
      return [r.state, by ? ` by ${by}` : "", r.decision_reason ? `: ${r.decision_reason}` : ""];
    }]);
  }
  return list;
}

function decision(context, request, refresh) {
  const note = el("input", { name: "note", placeholder: "comment, or reason to deny", class: "note" });
  const act = (verb) => async () => {
    const text = note.value.trim();
    if (verb === "deny" && !text) {
      flash("A denial needs a reason: the requester sees it.", true);
      note.focus();
      return;
    }
    const body = verb === "approve" ? (text ? { comment: text } : {}) : { reason: text };
    try {
      await context.api.post(`/api/v1/requests/${request.id}/${verb}`, body);
      flash(`Request #${request.id} ${verb === "approve" ? "approved" : "denied"}.`);
      note.blur();
      refresh();
    } catch (error) {
      context.failed(error);
    }
  };
  return el("span", { class: "decision" }, note,
    el("button", { type: "button", class: "approve", onclick: act("approve") }, "Approve"),
    el("button", { type: "button", class: "deny danger", onclick: act("deny") }, "Deny"));
}
