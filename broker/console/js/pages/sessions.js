// Live sessions, refreshed every two seconds.

import { el, fill, table } from "../dom.js";
import { bytes, duration, when } from "../format.js";

const REFRESH_MS = 2000;

export function render(context, root) {
  const status = el("p", { class: "muted", id: "sessions-status" }, "loading…");
  const holder = el("div", { id: "sessions" });
  root.append(el("h1", {}, "Live sessions"), status, holder);

  let timer = null;
  let stopped = false;
  async function refresh() {
    try {
      const { sessions } = await context.api.get("/api/v1/sessions");
      if (stopped) return;
      // Several nodes: say which runs each session.
      const nodes = sessions.some((s) => s.node && s.node !== "local")
        ? [["Node", (s) => s.node]]
        : [];
      fill(holder, table([
        ["Session", (s) => el("a", { href: `#/sessions/${s.id}`, class: "session-link" }, s.id.slice(0, 12))],
        ...nodes,
        ["User", (s) => s.user],
        ["Target", (s) => s.target || "(bastion)"],
        ["Login", (s) => s.login || ""],
        ["From", (s) => s.client],
        ["Started", (s) => when(s.started_at)],
        ["For", (s) => duration(s.duration_s)],
        ["Last activity", (s) => (s.last_activity ? when(s.last_activity) : "")],
        ["In / out", (s) => `${bytes(s.bytes_from_client)} / ${bytes(s.bytes_to_client)}`],
      ], sessions, {
        empty: "No live sessions.",
        rowAttributes: (s) => ({ "data-session": s.id, "data-user": s.user }),
      }));
      fill(status, `${sessions.length} live · updated ${when(new Date().toISOString())}`);
    } catch (error) {
      if (!stopped) context.failed(error);
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
