// The admin API, called with the bearer token the user signed in with. The token lives in
// sessionStorage (this tab only, gone when it closes) and is sent in a header, never as a
// cookie, so another site cannot make the browser act with it.

const TOKEN_KEY = "portcullis.token";

/** An API call that did not succeed: its HTTP status and the server's plain message. */
export class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  /** The token saved in this tab, if any. */
  static saved() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? new Api(token) : null;
  }

  save() {
    sessionStorage.setItem(TOKEN_KEY, this.token);
  }

  static forget() {
    sessionStorage.removeItem(TOKEN_KEY);
  }

  get(path, query = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(key, value);
    }
    const suffix = params.toString() ? `?${params}` : "";
    return this.call("GET", path + suffix);
  }

  post(path, body = {}) {
    return this.call("POST", path, body);
  }

  delete(path) {
    return this.call("DELETE", path);
  }

  /** The raw text of a GET (a recording). */
  async text(path) {
    const response = await this.fetch("GET", path);
    return response.text();
  }

  async call(method, path, body) {
    const response = await this.fetch(method, path, body);
    return response.json();
  }

  async fetch(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiFailure(0, `the bastion did not answer (${error.message})`);
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const json = await response.json();
        if (json && json.error) message = json.error;
      } catch {
        // Not JSON: the status says enough.
      }
      throw new ApiFailure(response.status, message);
    }
    return response;
  }
}
