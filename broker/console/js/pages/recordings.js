// Recordings, newest first, filtered by user, target and start time.

import { el, fill, table } from "../dom.js";
import { bytes, when } from "../format.js";

export function render(context, root) {
  const form = el("form", { class: "filters", id: "recording-filters" },
    el("label", {}, el("span", {}, "User"), el("input", { name: "user" })),
    el("label", {}, el("span", {}, "Target"), el("input", { name: "target" })),
    el("label", {}, el("span", {}, "Since"), el("input", { name: "since", type: "datetime-local" })),
    el("button", { type: "submit" }, "Search"));
  const holder = el("div", { id: "recordings" }, el("p", { class: "muted" }, "loading…"));
  root.append(el("h1", {}, "Recordings"), form, holder);

  async function search() {
    const data = new FormData(form);
    const since = data.get("since") ? new Date(data.get("since")).toISOString() : "";
    try {
      const { recordings } = await context.api.get("/api/v1/recordings", {
        user: data.get("user").trim(), target: data.get("target").trim(), since,
      });
      recordings.sort((a, b) => (b.id > a.id ? 1 : -1));
      fill(holder, table([
        ["Recording", (r) => el("a", { href: `#/recordings/${r.id}`, class: "recording-link" }, r.id)],
        ["User", (r) => r.user],
        ["Target", (r) => r.target],
        ["Login", (r) => r.login],
        ["Kind", (r) => r.command ? `${r.kind}: ${r.command}` : r.kind],
        ["Started", (r) => when(r.started_at)],
        ["Size", (r) => bytes(r.size)],
      ], recordings, {
        empty: "No recordings match.",
        rowAttributes: (r) => ({ "data-recording": r.id, "data-session": r.session }),
      }));
    } catch (error) {
      context.failed(error);
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  search();
}
