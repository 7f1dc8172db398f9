// Locked users; lock one (ending their sessions) or lift a lock, with the operate scope.

import { el, fill, flash, table } from "../dom.js";
import { when } from "../format.js";

export function render(context, root) {
  const holder = el("div", { id: "locks" }, el("p", { class: "muted" }, "loading…"));
  root.append(el("h1", {}, "Locks"));
  if (context.canOperate) root.append(lockForm(context, () => refresh()));
  root.append(holder);

  async function refresh() {
    try {
      const { locks } = await context.api.get("/api/v1/locks");
      const columns = [
        ["User", (l) => l.user],
        ["Reason", (l) => l.reason],
        ["By", (l) => l.by],
        ["Since", (l) => when(l.since)],
        ["Until", (l) => l.until ? when(l.until) : "lifted by hand"],
      ];
      if (context.canOperate) {
        columns.push(["", (l) => el("button", {
          type: "button", class: "unlock",
          onclick: async () => {
            try {
              await context.api.delete(`/api/v1/locks/${encodeURIComponent(l.user)}`);
              flash(`${l.user} is unlocked.`);
              refresh();
            } catch (error) {
              context.failed(error);
            }
          },
        }, "Unlock")]);
      }
      fill(holder, table(columns, locks, {
        empty: "Nobody is locked.",
        rowAttributes: (l) => ({ "data-user": l.user }),
      }));
    } catch (error) {
      context.failed(error);
    }
  }
  refresh();
}

function lockForm(context, done) {
  const form = el("form", { class: "filters", id: "lock-form" },
    el("label", {}, el("span", {}, "User"), el("input", { name: "user", required: true })),
    el("label", {}, el("span", {}, "Reason"), el("input", { name: "reason", required: true })),
    el("label", {}, el("span", {}, "For"), el("select", { name: "for" },
      el("option", { value: "" }, "until lifted"),
      el("option", { value: "900" }, "15 minutes"),
      el("option", { value: "3600" }, "1 hour"),
      el("option", { value: "86400" }, "1 day"))),
    el("button", { type: "submit", class: "danger" }, "Lock"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { user: data.get("user").trim(), reason: data.get("reason").trim() };
    if (data.get("for")) {
      body.until = new Date(Date.now() + Number(data.get("for")) * 1000).toISOString();
    }
    try {
      const result = await context.api.post("/api/v1/locks", body);
      flash(`${body.user} is locked; ${result.sessions_ended} live session(s) ended.`);
      form.reset();
      done();
    } catch (error) {
      context.failed(error);
    }
  });
  return form;
}
