// Sign in with an API token (as configured in [[admin.tokens]]).

import { el, field, flash } from "../dom.js";

export function render(root, submit) {
  const input = field("API token", {
    type: "password", name: "token", id: "token", autocomplete: "off", required: true,
  });
  const button = el("button", { type: "submit", id: "signin" }, "Sign in");
  const form = el("form", { class: "signin" },
    el("h1", {}, "Sign in"),
    el("p", {}, "Use an admin API token. It stays in this browser tab only."),
    input, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = form.elements.token.value.trim();
    if (!token) return;
    button.disabled = true;
    try {
      await submit(token);
    } catch (error) {
      flash(error.status === 401 ? "That token was not accepted." : error.message, true);
      button.disabled = false;
    }
  });
  root.append(form);
  form.elements.token.focus();
}
