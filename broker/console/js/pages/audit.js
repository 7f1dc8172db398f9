// The audit log: commands (by a regular expression over the line) and all events.

import { el, fill, table } from "../dom.js";
import { when } from "../format.js";

const LIMIT = 500;

export function render(context, root) {
  const commandForm = el("form", { class: "filters", id: "command-search" },
    el("label", {}, el("span", {}, "Command matches"), el("input", { name: "q", placeholder: "regular expression" })),
    el("label", {}, el("span", {}, "User"), el("input", { name: "user" })),
    el("label", {}, el("span", {}, "Target"), el("input", { name: "target" })),
    el("button", { type: "submit" }, "Search commands"));
  const commands = el("div", { id: "commands" });
  const eventForm = el("form", { class: "filters", id: "event-search" },
    el("label", {}, el("span", {}, "Event"), el("input", { name: "event", placeholder: "e.g. session.killed" })),
    el("label", {}, el("span", {}, "User"), el("input", { name: "user" })),
    el("label", {}, el("span", {}, "Since"), el("input", { name: "since", type: "datetime-local" })),
    el("button", { type: "submit" }, "Search events"));
  const events = el("div", { id: "events" });
  root.append(el("h1", {}, "Audit"), el("h2", {}, "Commands"), commandForm, commands,
    el("h2", {}, "Events"), eventForm, events);

  async function searchCommands() {
    const data = new FormData(commandForm);
    try {
      const result = await context.api.get("/api/v1/commands", {
        q: data.get("q"), user: data.get("user").trim(), target: data.get("target").trim(), limit: LIMIT,
      });
      fill(commands, table([
        ["Time", (e) => when(e.time)],
        ["User", (e) => e.user],
        ["Target", (e) => e.target],
        ["Command", (e) => el("code", { class: "command" }, e.line)],
        ["Rule", (e) => e.rule || ""],
        ["Outcome", (e) => e.outcome],
        ["Session", (e) => e.session ? el("code", {}, e.session.slice(0, 12)) : ""],
      ], result.commands.slice().reverse(), {
        empty: "No commands match.",
        rowAttributes: (e) => ({ "data-outcome": e.outcome }),
      }));
    } catch (error) {
      context.failed(error);
    }
  }

  async function searchEvents() {
    const data = new FormData(eventForm);
    const since = data.get("since") ? new Date(data.get("since")).toISOString() : "";
    try {
      const result = await context.api.get("/api/v1/audit", {
        event: data.get("event").trim(), user: data.get("user").trim(), since, limit: LIMIT,
      });
      fill(events, table([
        ["Time", (e) => when(e.time)],
        ["Event", (e) => e.event],
        ["User", (e) => e.user || ""],
        ["Details", (e) => el("code", { class: "details" }, details(e))],
      ], result.events.slice().reverse(), { empty: "No events match." }));
    } catch (error) {
      context.failed(error);
    }
  }

  commandForm.addEventListener("submit", (event) => {
    event.preventDefault();
    searchCommands();
  });
  eventForm.addEventListener("submit", (event) => {
    event.preventDefault();
    searchEvents();
  });
  searchCommands();
  searchEvents();
}

/** The rest of an event's fields, as `key=value` pairs. */
function details(event) {
  const skip = new Set(["time", "event", "user", "mac"]);
  return Object.entries(event)
    .filter(([key]) => !skip.has(key))
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
}
