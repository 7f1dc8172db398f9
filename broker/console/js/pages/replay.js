// Replays one recording with asciinema-player: seek, speed, and the command timeline (the
// recording's "m" markers: each command that ran, each one blocked, the session's start and
// end) as a list that jumps the player to each one.

import { el, fill } from "../dom.js";
import { clock } from "../format.js";
import { sessionFacts, showStreams } from "./streams.js";

const SPEEDS = [0.5, 1, 2, 4, 8];

export function render(context, root, id) {
  const header = el("dl", { class: "facts", id: "recording-facts" });
  const controls = el("div", { class: "replay-controls" });
  const terminal = el("div", { class: "terminal", id: "replay-terminal" });
  const timeline = el("ol", { class: "timeline", id: "timeline" });
  const verdict = el("p", { class: "muted", id: "recording-verdict" });
  root.append(
    el("p", {}, el("a", { href: "#/recordings" }, "← Recordings")),
    el("h1", {}, "Recording ", el("code", {}, id)),
    header, verdict, controls,
    el("div", { class: "replay" }, terminal,
      el("section", { class: "markers" }, el("h2", {}, "Commands and events"), timeline)),
  );

  let player = null;
  let cast = null;
  let markers = [];
  let stopped = false;

  function create(speed, startAt) {
    if (player) player.dispose();
    fill(terminal);
    player = AsciinemaPlayer.create({ data: cast }, terminal, {
      speed, startAt, fit: "width", idleTimeLimit: 2, preload: true, controls: true,
    });
    player.addEventListener("marker", ({ index }) => highlight(index));
  }

  function highlight(index) {
    for (const item of timeline.children) {
      item.classList.toggle("current", Number(item.dataset.index) === index);
    }
  }

  async function load() {
    try {
      // A channel without a terminal is recorded as exact bytes per stream: no player then.
      const info = await context.api.get(`/api/v1/recordings/${id}/info`);
      if (info.format === "bytes") {
        const summary = await context.api.get(`/api/v1/recordings/${id}/streams`);
        if (stopped) return;
        showStreams(context, { header, verdict, holder: terminal, timeline }, id, summary);
        return;
      }
      cast = await context.api.text(`/api/v1/recordings/${id}`);
    } catch (error) {
      context.failed(error);
      return;
    }
    if (stopped) return;
    const { head, events } = parse(cast);
    showHeader(header, head, events);
    markers = events.filter((e) => e[1] === "m");
    fill(timeline, markers.map(([time, , label], index) =>
      el("li", { "data-index": index },
        el("button", {
          type: "button", class: "marker", "data-index": index,
          onclick: async () => {
            await player.seek({ marker: index });
            highlight(index);
          },
        }, el("span", { class: "time" }, clock(time)), " ", el("span", { class: "label" }, label)))));
    if (markers.length === 0) fill(timeline, el("li", { class: "muted" }, "No markers in this recording."));
    const speed = el("select", { id: "speed", "aria-label": "Speed" },
      SPEEDS.map((s) => el("option", { value: s, selected: s === 1 }, `${s}×`)));
    speed.addEventListener("change", () => create(Number(speed.value), player.getCurrentTime()));
    fill(controls, el("label", {}, el("span", {}, "Speed"), speed));
    create(1, 0);
    verify();
  }

  async function verify() {
    try {
      const result = await context.api.get(`/api/v1/recordings/${id}/verify`);
      if (!stopped) fill(verdict, `Integrity: ${result.detail}`);
    } catch (error) {
      if (!stopped) fill(verdict, `Integrity not checked: ${error.message}`);
    }
  }

  load();
  return () => {
    stopped = true;
    if (player) player.dispose();
  };
}

/** The header and events of an asciicast v2 text; lines that are not JSON are skipped. */
function parse(text) {
  const lines = text.split("\n").filter((l) => l.trim());
  let head = {};
  const events = [];
  lines.forEach((line, n) => {
    try {
      const value = JSON.parse(line);
      if (n === 0) head = value;
      else if (Array.isArray(value)) events.push(value);
    } catch {
      // A line cut short by a crash: the player skips it too.
    }
  });
  return { head, events };
}

function showHeader(node, head, events) {
  const facts = head.portcullis || {};
  const last = events.length ? events[events.length - 1][0] : 0;
  const pairs = [
    ...sessionFacts(facts),
    ["Started", head.timestamp ? new Date(head.timestamp * 1000).toISOString() : ""],
    ["Length", clock(last)],
    ["Terminal", `${head.width}×${head.height}`],
  ];
  fill(node, pairs.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}
