// A recording of a channel without a terminal (exec, sftp, scp, rsync): its facts, whether it
// verifies, its timeline of markers (start, end, each sftp file operation), and each stream (stdout, stderr, stdin) with its length, a download of its exact
// bytes, and a preview when the bytes are text.

import { el, fill } from "../dom.js";
import { bytes, clock } from "../format.js";

/** Who, where and what of a recording (its header's session facts), as term/value pairs. */
export function sessionFacts(facts) {
  return [
    ["User", facts.user],
    ["Target", facts.target],
    ["Login", facts.login],
    ["Kind", facts.command ? `${facts.kind}: ${facts.command}` : facts.kind],
    ["From", facts.client],
    ["Session", facts.session ? el("code", {}, facts.session) : ""],
  ];
}

export function showStreams(context, parts, id, summary) {
  const pairs = [
    ...sessionFacts(summary),
    ["Length", clock(summary.length_s)],
    ["Recorded as", "exact bytes per stream (no terminal)"],
  ];
  fill(parts.header, pairs.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  fill(parts.verdict, `Integrity: ${summary.detail}`);
  // The channel's own timeline: how it started and ended, and (sftp) each file operation.
  const markers = (summary.markers || []).map((m) =>
    el("li", { class: "marker" }, el("span", { class: "muted" }, `${clock(m.at_s)} `), m.text));
  if (summary.more_markers) {
    markers.push(el("li", { class: "muted" }, `… and ${summary.more_markers} more`));
  }
  fill(parts.timeline, markers.length
    ? markers
    : el("li", { class: "muted" }, "No terminal: nothing to replay."));
  const intact = summary.status === "intact";
  fill(parts.holder, el("div", { class: "streams", id: "recording-streams" },
    summary.streams.map((stream) => el("section", { class: "stream", "data-stream": stream.name },
      el("h2", {}, `${stream.name} `, el("span", { class: "muted" }, bytes(stream.bytes))),
      stream.bytes > 0
        ? el("button", {
          type: "button", class: "download", "data-stream": stream.name,
          onclick: () => download(context, id, stream.name, !intact),
        }, intact ? "Download" : "Download the part that verifies")
        : el("p", { class: "muted" }, "Empty."),
      stream.bytes > 0 && (stream.text
        ? el("pre", { class: "preview" }, stream.preview)
        : el("p", { class: "muted" }, "Binary: no preview."))))));
}

/** Saves a stream's bytes as a file (the token goes in a header, so no plain link). */
async function download(context, id, name, force) {
  try {
    const suffix = force ? "?force=true" : "";
    const response = await context.api.fetch("GET", `/api/v1/recordings/${id}/streams/${name}${suffix}`);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `${id}.${name}` });
    document.body.append(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(url);
  } catch (error) {
    context.failed(error);
  }
}
