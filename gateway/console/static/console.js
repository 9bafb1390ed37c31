// What every console page shares: signing in with an API key (kept in sessionStorage, sent as
// X-API-Key exactly as the SDK sends it), calls to the JSON endpoints, and formatting.

const KEY = "anvil-console-key";

export class SignedOut extends Error {}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

// GET or send JSON to the server as the signed-in user; a refused key signs the page out
export async function api(path, { method = "GET", body } = {}) {
  const headers = { "X-API-Key": apiKey() || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    throw new SignedOut(answer.detail || "the key was refused");
  }
  if (!response.ok) throw new Error(answer.detail || `${method} ${path}: HTTP ${response.status}`);
  return answer;
}

// Show the sign-in form until a key the server accepts is given, then run `start(user)`.
export function signIn(start) {
  const form = document.getElementById("signin");
  const main = document.getElementById("content");
  const status = document.getElementById("signed-in");
  const error = document.getElementById("signin-error");

  async function enter() {
    try {
      const me = await api("/console/api/me");
      form.hidden = true;
      main.hidden = false;
      status.hidden = false;
      document.getElementById("user-id").textContent = me.user_id;
      await start(me);
    } catch (exc) {
      if (!(exc instanceof SignedOut)) throw exc;
      showForm(exc.message);
    }
  }

  function showForm(message) {
    form.hidden = false;
    main.hidden = true;
    status.hidden = true;
    error.textContent = message || "";
    form.querySelector("input").focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = form.querySelector("input");
    sessionStorage.setItem(KEY, input.value.trim());
    input.value = "";
    enter();
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  if (apiKey()) enter(); else showForm("");
}

// Run `poll` now and every `ms` milliseconds after it finishes; a sign-out stops it
export function every(ms, poll) {
  async function tick() {
    try {
      await poll();
    } catch (exc) {
      if (exc instanceof SignedOut) { location.reload(); return; }
      notice(exc.message);
    }
    setTimeout(tick, ms);
  }
  return tick();
}

export function notice(message) {
  const box = document.getElementById("notice");
  if (box) box.textContent = message;
}

// an element with text and attributes, e.g. el("td", "3", { class: "num" })
export function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

export function when(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function number(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  if (Number.isInteger(value)) return value.toLocaleString();
  return Number(value).toPrecision(digits);
}

// a path segment of a REST route (run ids hold ':'; checkpoint ids are "<kind>/<name>")
export function segments(...parts) {
  return parts.map((part) => part.split("/").map(encodeURIComponent).join("/")).join("/");
}
