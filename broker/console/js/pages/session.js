// One live session: its facts, its terminal as it happens, its file transfers (sftp, scp)
// operation by operation, and (operate scope) a kill button that asks for a reason.

import { el, fill, flash, table } from "../dom.js";
import { bytes, duration, when } from "../format.js";

const REFRESH_MS = 2000;

export function render(context, root, id) {
  const facts = el("dl", { class: "facts", id: "session-facts" });
  const terminal = el("div", { class: "terminal", id: "live-terminal" });
  const state = el("p", { class: "muted", id: "live-state" }, "connecting…");
  root.append(
    el("p", {}, el("a", { href: "#/sessions" }, "← Live sessions")),
    el("h1", {}, "Session ", el("code", {}, id)),
    facts,
  );
  if (context.canOperate) root.append(killForm(context, id));
  const transfers = el("div", { id: "session-transfers" });
  root.append(el("h2", {}, "Live terminal"), state, terminal,
    el("h2", {}, "File transfers"), transfers);

  let player = null;
  let connected = false;
  let stopped = false;
  let timer = null;

  async function showTransfers() {
    try {
      const result = await context.api.get("/api/v1/transfers", { session: id, limit: 500 });
      if (!stopped) fill(transfers, transferTable(result.transfers));
    } catch (error) {
      if (!stopped) context.failed(error);
    }
  }

  async function refresh() {
    showTransfers();
    try {
      const s = await context.api.get(`/api/v1/sessions/${id}`);
      if (stopped) return;
      if (s.ended) {
        fill(state, `This session has ended. Reason: ${s.ended.reason.replaceAll("_", " ")}.`);
        state.dataset.ended = "true";
        root.querySelector("#kill-form")?.remove();
        return;
      }
      showFacts(facts, s);
      // Watch only what is live: an ended session has no terminal to connect to.
      if (!connected) {
        connected = true;
        connect();
      }
    } catch (error) {
      if (stopped) return;
      if (error.status === 404) {
        fill(state, "This session has ended.");
        state.dataset.ended = "true";
        root.querySelector("#kill-form")?.remove();
        return;
      }
      context.failed(error);
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  async function connect() {
    try {
      const { ticket } = await context.api.post(`/api/v1/sessions/${id}/live-ticket`);
      if (stopped) return;
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const url = `${scheme}//${location.host}/api/v1/sessions/${id}/live?ticket=${encodeURIComponent(ticket)}`;
      player = AsciinemaPlayer.create(
        // A ticket opens one connection: never reconnect with it.
        { driver: "websocket", url, bufferTime: 0, reconnectDelay: () => 2147483647 },
        terminal,
        { fit: "width", controls: false, autoPlay: true },
      );
      player.addEventListener("playing", () => fill(state, "live"));
      player.addEventListener("ended", () => {
        fill(state, "This session has ended.");
        state.dataset.ended = "true";
      });
    } catch (error) {
      if (stopped) return;
      if (error.status === 404) fill(state, "Nothing to show: the session has no terminal (yet), or it ended.");
      else context.failed(error);
    }
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (player) player.dispose();
  };
}

function showFacts(node, s) {
  const pairs = [
    ["User", s.user],
    ["Target", s.target || "(bastion)"],
    ["Upstream login", s.login],
    ["Signed in with", s.method],
    ["From", s.client],
    ["Started", `${when(s.started_at)} (${duration(s.duration_s)} ago)`],
    ["Last activity", when(s.last_activity)],
    ["From client / to client", `${bytes(s.bytes_from_client)} / ${bytes(s.bytes_to_client)}`],
    ["Channels", s.channels],
    ["Recordings", (s.recordings || []).map((r) => el("a", { href: `#/recordings/${r}` }, r))],
  ];
  // Several nodes: which one runs it.
  if (s.node && s.node !== "local") pairs.splice(2, 0, ["Node", s.node]);
  fill(node, pairs.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

/** File operations, newest first: what was done to which path, and what came of it. */
function transferTable(events) {
  return table([
    ["Time", (e) => when(e.time)],
    ["Operation", (e) => e.event.replace(/^(sftp|scp)\./, "")],
    ["Path", (e) => el("code", {}, e.from && e.to ? `${e.from} → ${e.to}` : e.path || "")],
    ["Details", (e) => transferDetails(e)],
    ["Outcome", (e) => e.outcome || (e.event === "scp.file" ? "sent" : "")],
  ], events.slice().reverse(), {
    empty: "No file transfers in this session.",
    rowAttributes: (e) => ({ "data-event": e.event }),
  });
}

function transferDetails(e) {
  const parts = [];
  if (e.mode) parts.push(e.mode);
  if (e.bytes_read) parts.push(`read ${bytes(e.bytes_read)}`);
  if (e.bytes_written) parts.push(`wrote ${bytes(e.bytes_written)}`);
  if (e.size !== undefined && e.size !== null) parts.push(bytes(e.size));
  if (e.points_to) parts.push(`→ ${e.points_to}`);
  if (e.attributes) parts.push(e.attributes);
  if (e.sha256) parts.push(el("code", { title: e.sha256 }, `sha256 ${e.sha256.slice(0, 16)}…`));
  if (e.error) parts.push(e.error);
  return el("span", {}, ...parts.flatMap((part, i) => (i ? [", ", part] : [part])));
}

function killForm(context, id) {
  const reason = el("input", {
    id: "kill-reason", name: "reason", placeholder: "why (shown to the user)",
  });
  const button = el("button", { type: "submit", class: "danger", id: "kill" }, "Kill session");
  const form = el("form", { id: "kill-form", class: "inline" },
    el("label", {}, el("span", {}, "Reason"), reason), button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reason.value.trim();
    if (!text) {
      flash("A kill needs a reason: the user sees it.", true);
      return;
    }
    button.disabled = true;
    try {
      await context.api.post(`/api/v1/sessions/${id}/kill`, { reason: text });
      flash(`Session killed: ${text}`);
      form.remove();
    } catch (error) {
      button.disabled = false;
      context.failed(error);
    }
  });
  return form;
}
