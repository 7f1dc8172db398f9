// The console's frame: sign-in, navigation and the router. Each page is a module with
// `render(context, root, ...params)` that may return a function to call when the page is
// left (stop refreshing, close the live terminal).

import { Api, ApiFailure } from "./api.js";
import { el, fill, flash } from "./dom.js";
import * as signin from "./pages/signin.js";
import * as sessions from "./pages/sessions.js";
import * as session from "./pages/session.js";
import * as recordings from "./pages/recordings.js";
import * as replay from "./pages/replay.js";
import * as requests from "./pages/requests.js";
import * as locks from "./pages/locks.js";
import * as audit from "./pages/audit.js";

const ROUTES = [
  [/^#\/sessions\/([0-9a-f]+)$/, session, "sessions"],
  [/^#\/sessions$/, sessions, "sessions"],
  [/^#\/recordings\/([0-9a-f-]+)$/, replay, "recordings"],
  [/^#\/recordings$/, recordings, "recordings"],
  [/^#\/requests$/, requests, "requests"],
  [/^#\/locks$/, locks, "locks"],
  [/^#\/audit$/, audit, "audit"],
];

const main = document.getElementById("main");
let leave = null;

/** What every page gets: the API, who is signed in, and whether they may act. */
function context(api, me) {
  const scopes = new Set(me.scopes);
  return {
    api,
    me,
    canOperate: scopes.has("operate") || scopes.has("admin"),
    go: (hash) => {
      if (location.hash === hash) route(api, me);
      else location.hash = hash;
    },
    failed: (error) => failed(error),
  };
}

/** Shows an API failure; a token that stopped working signs the user out. */
function failed(error) {
  if (error instanceof ApiFailure && error.status === 401) {
    Api.forget();
    start();
    flash("Your token was not accepted; sign in again.", true);
    return;
  }
  flash(error.message || String(error), true);
}

function route(api, me) {
  if (leave) {
    leave();
    leave = null;
  }
  flash("");
  const hash = location.hash || "#/sessions";
  for (const [pattern, page, section] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("current", link.dataset.page === section);
    }
    const root = fill(main);
    root.dataset.page = section;
    try {
      leave = page.render(context(api, me), root, ...match.slice(1)) || null;
    } catch (error) {
      failed(error);
    }
    return;
  }
  location.hash = "#/sessions";
}

function signedIn(api, me) {
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  fill(document.getElementById("who"), el("span", { class: "token" }, me.name),
    ` (${me.scopes.join(", ")})`);
  window.onhashchange = () => route(api, me);
  route(api, me);
}

async function start() {
  window.onhashchange = null;
  if (leave) {
    leave();
    leave = null;
  }
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  fill(document.getElementById("who"));
  const api = Api.saved();
  if (api) {
    try {
      signedIn(api, await api.get("/api/v1/me"));
      return;
    } catch (error) {
      Api.forget();
      if (!(error instanceof ApiFailure && error.status === 401)) flash(error.message, true);
    }
  }
  main.dataset.page = "signin";
  signin.render(fill(main), async (token) => {
    const candidate = new Api(token);
    const me = await candidate.get("/api/v1/me");
    candidate.save();
    flash("");
    signedIn(candidate, me);
  });
}

document.getElementById("signout").addEventListener("click", () => {
  Api.forget();
  location.hash = "";
  start();
});

start();
