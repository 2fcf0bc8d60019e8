// Fetching and formatting shared by every page. No dependencies, no build step.

const TOKEN_KEY = "jm-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Where the dashboard was served from ("/" or "/v1/"): every API path is relative to it.
const base = new URL(".", document.baseURI);

// The journal offset the last answer reflects (every replica sends it).
export const lastServed = { offset: "" };

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (Array.isArray(body.errors) && body.errors.length) message = body.errors.join("; ");
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message);
}

export async function get(path) {
  const response = await fetch(new URL(path, base), {
    headers: { Accept: "application/json" },
    cache: "no-store",
  });
  if (!response.ok) throw await failure(response);
  lastServed.offset = response.headers.get("X-JM-Journal-Offset") || lastServed.offset;
  return response.json();
}

// A read whose server may answer 304 Not Modified (the history server's overview, a few
// MiB with thousands of archived jobs): `memo` keeps the last answer and its ETag, sent
// back as If-None-Match, so an unchanged answer is not sent again.
export async function getUnlessSame(path, memo) {
  const headers = { Accept: "application/json" };
  if (memo.etag && memo.value !== undefined) headers["If-None-Match"] = memo.etag;
  const response = await fetch(new URL(path, base), { headers, cache: "no-store" });
  if (response.status === 304 && memo.value !== undefined) return memo.value;
  if (!response.ok) throw await failure(response);
  lastServed.offset = response.headers.get("X-JM-Journal-Offset") || lastServed.offset;
  memo.value = await response.json();
  memo.etag = response.headers.get("ETag");
  return memo.value;
}

// A write: sends the token (Authorization: Bearer) when the user entered one.
export async function send(method, path, token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(new URL(path, base), { method, headers, cache: "no-store" });
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

// Tagged template that escapes every interpolated value unless it is raw(...).
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1];
  });
  return new Raw(out);
}

class Raw {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
}

export function raw(text) {
  return new Raw(String(text));
}

function render(value) {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === null || value === undefined || value === false) return "";
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export function escape(value) {
  return render(value);
}

export const TERMINAL = new Set(["FINISHED", "CANCELED", "FAILED"]);

export const TASK_STATES = [
  "CREATED", "SCHEDULED", "DEPLOYING", "INITIALIZING", "RUNNING", "FINISHED",
  "CANCELING", "CANCELED", "FAILED", "RECONCILING",
];

export function badge(state) {
  const name = String(state || "UNKNOWN").toUpperCase();
  return html`<span class="badge" data-state="${name}" style="background: var(--${name}, #8c8c8c)">${name}</span>`;
}

// Flink's per-state task counts ({"RUNNING": 2, ...}, any case) as small badges; zeros left out.
export function counts(tasks) {
  const entries = Object.entries(tasks || {})
    .map(([k, v]) => [k.toUpperCase(), Number(v) || 0])
    .filter(([k, v]) => v > 0 && TASK_STATES.includes(k)); // not "total", "pending"
  if (!entries.length) return html`<span class="muted">-</span>`;
  entries.sort((a, b) => TASK_STATES.indexOf(a[0]) - TASK_STATES.indexOf(b[0]));
  return html`<span class="counts">${entries.map(
    ([k, v]) => html`<span class="badge" title="${k}" style="background: var(--${k}, #8c8c8c)">${v}</span>`,
  )}</span>`;
}

export function time(ms) {
  if (ms === null || ms === undefined || ms < 0) return "-";
  const d = new Date(Number(ms));
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "-";
  let s = Math.floor(Number(ms) / 1000);
  if (s < 1) return `${Math.round(Number(ms))} ms`;
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return [d && `${d}d`, (d || h) && `${h}h`, (d || h || m) && `${m}m`, `${s}s`].filter(Boolean).join(" ");
}

export function number(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "-";
  return Number(n).toLocaleString("en-US");
}

export function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function table(headers, rows, empty = "Nothing here yet.", cls = "") {
  if (!rows.length) return html`<div class="empty">${empty}</div>`;
  return html`<table class="${cls}"><thead><tr>${headers.map((h) =>
    h.startsWith("#") ? html`<th class="num">${h.slice(1)}</th>` : html`<th>${h}</th>`,
  )}</tr></thead><tbody>${rows}</tbody></table>`;
}

export function panel(title, body, id = "") {
  return html`<section class="panel" ${id ? raw(`id="${escape(id)}"`) : ""}><h2>${title}</h2>${body}</section>`;
}
