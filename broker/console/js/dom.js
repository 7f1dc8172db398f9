// Building the page. Every text from the API goes in as a text node, never as markup: user
// names, command lines and reasons come from people who may be hostile.

/** An element: `el("a", {href: "#/x", class: "y"}, "text", child, ...)`. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces what `node` holds. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A table from rows: `columns` are [heading, row => cell] pairs. */
export function table(columns, rows, options = {}) {
  const head = el("tr", {}, columns.map(([heading]) => el("th", {}, heading)));
  const body = rows.map((row) =>
    el("tr", options.rowAttributes ? options.rowAttributes(row) : {},
      columns.map(([, cell]) => el("td", {}, cell(row)))),
  );
  if (rows.length === 0) {
    body.push(el("tr", {}, el("td", { colspan: columns.length, class: "empty" },
      options.empty || "nothing here")));
  }
  return el("table", { class: options.class || "list" }, el("thead", {}, head), el("tbody", {}, body));
}

/** Shows a message at the top of the page (an error when `error`). */
export function flash(text, error = false) {
  const node = document.getElementById("flash");
  node.textContent = text;
  node.className = error ? "error" : "info";
  node.hidden = !text;
}

/** A labelled input. */
export function field(label, attributes) {
  return el("label", {}, el("span", {}, label), el("input", attributes));
}
