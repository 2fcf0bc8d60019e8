// The dashboard's router and refresh loop: hash routes, a page re-rendered every few seconds.
import { get, html, send, token, setToken, lastServed } from "./util.js";
import { overview, jobs, archive, taskmanagers, replicas } from "./pages.js";
import { jobPage } from "./job.js";

const REFRESH_MS = 3000;
const view = document.getElementById("view");
const banner = document.getElementById("banner");
let generation = 0;
let rendered = ""; // the view's last HTML: unchanged answers leave the DOM alone
let scrubbing = false;
let inFlight = 0; // a refresh waits for the one before: a slow replica still gets answered

// "#/jobs/<id>/timeline?at=12" -> {page: "job", jid, tab: "timeline", at: 12}
function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query || "");
  const at = params.has("at") ? Number(params.get("at")) : null;
  if (parts[0] === "jobs" && parts[1]) return { page: "job", jid: parts[1], tab: parts[2] || "overview", at };
  if (["jobs", "archive", "taskmanagers", "replicas"].includes(parts[0])) return { page: parts[0] };
  return { page: "overview" };
}

const TITLES = {
  overview: "Overview", jobs: "Jobs", archive: "Archived jobs", taskmanagers: "Task Managers", replicas: "Replicas",
};

async function content(r) {
  if (r.page === "job") return jobPage(r.jid, r.tab, r.at);
  const page = { overview, jobs, archive, taskmanagers, replicas }[r.page];
  return { title: TITLES[r.page], content: await page() };
}

async function render() {
  const mine = ++generation;
  const hash = location.hash;
  const r = route();
  inFlight += 1;
  try {
    await show(mine, hash, r);
  } finally {
    inFlight -= 1;
  }
}

function highlight(nav) {
  document.querySelectorAll("[data-nav]").forEach((a) => {
    a.classList.toggle("active", a.dataset.nav === nav);
  });
}

async function show(mine, hash, r) {
  if (r.page !== "job") highlight(r.page); // a job's entry is known once it was found
  try {
    const page = await content(r);
    if (mine !== generation || scrubbing) return;
    if (r.page === "job") highlight(page.nav);
    document.getElementById("page-title").textContent = page.title;
    document.title = `${page.title} · kafka-jobmanager`;
    const text = String(page.content);
    if (rendered !== text) {
      view.innerHTML = text;
      rendered = text;
    }
    banner.hidden = true;
    document.body.dataset.page = r.page === "job" ? `job-${r.tab}` : r.page;
    document.body.dataset.shown = hash; // what the view shows (tests wait on it)
  } catch (e) {
    if (mine !== generation) return;
    banner.textContent = e.status === 404 ? `Not found: ${e.message}` : `Cannot reach the REST API: ${e.message}`;
    banner.hidden = false;
  }
  const who = await get("healthz").catch(() => null);
  const replica = who ? `replica ${who["replica-id"]} (${who.role})` : "";
  const offset = lastServed.offset ? ` · journal offset ${lastServed.offset}` : "";
  document.getElementById("served-by").textContent = replica + offset;
  document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---------------------------------------------------------------- interactions

view.addEventListener("click", (event) => {
  const target = event.target;
  if (target.closest("a, button")) {
    if (target.closest("#cancel-job")) askCancel(target.closest("#cancel-job"));
    if (target.closest("#scrub-live")) {
      const r = route();
      location.hash = `#/jobs/${r.jid}/timeline`;
    }
    return;
  }
  const job = target.closest("tr[data-job]");
  if (job) location.hash = `#/jobs/${job.dataset.job}`;
  const event_ = target.closest("tr[data-offset]");
  if (event_) scrubTo(Number(event_.dataset.offset));
});

function scrubTo(offset) {
  const r = route();
  scrubbing = false;
  location.hash = `#/jobs/${r.jid}/timeline?at=${offset}`;
}

// Dragging the scrubber previews the event; letting go shows the job as it was then.
view.addEventListener("input", (event) => {
  if (event.target.id !== "scrubber") return;
  scrubbing = true;
  const offsets = event.target.dataset.offsets.split(",").map(Number);
  const i = Number(event.target.value);
  document.querySelectorAll("tr[data-offset]").forEach((row, j) => {
    row.classList.toggle("selected", j === i);
    row.classList.toggle("after", j > i);
  });
  document.getElementById("scrub-where").textContent = `Release to show the job at offset @${offsets[i]}`;
});
view.addEventListener("change", (event) => {
  if (event.target.id !== "scrubber") return;
  const offsets = event.target.dataset.offsets.split(",").map(Number);
  scrubTo(offsets[Number(event.target.value)]);
});

// ---------------------------------------------------------------- cancel

const dialog = document.getElementById("confirm");
const tokenInput = document.getElementById("token");
const dialogToken = document.getElementById("confirm-token");
const dialogError = document.getElementById("confirm-error");
let cancelling = null;

tokenInput.value = token();
dialogToken.addEventListener("input", () => { dialogError.hidden = true; });
tokenInput.addEventListener("change", () => setToken(tokenInput.value.trim()));

function askCancel(button) {
  cancelling = button.dataset.jid;
  document.getElementById("confirm-title").textContent = "Cancel job?";
  document.getElementById("confirm-text").innerHTML = String(
    html`Cancel <b>${button.dataset.name}</b> (<span class="mono">${cancelling}</span>)? All its tasks stop; a canceled job cannot be resumed.`,
  );
  dialogToken.value = token();
  dialogError.hidden = true;
  dialog.showModal();
}

document.getElementById("confirm-yes").addEventListener("click", async (event) => {
  event.preventDefault();
  const secret = dialogToken.value.trim();
  if (secret) {
    setToken(secret);
    tokenInput.value = secret;
  }
  try {
    await send("PATCH", `jobs/${cancelling}?mode=cancel`, secret);
    dialog.close();
    toast(`Cancellation of ${cancelling} requested`);
    render();
  } catch (e) {
    dialogError.textContent = e.status === 401 ? `Refused: ${e.message} (enter the API token)` : e.message;
    dialogError.hidden = false;
  }
});

function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.hidden = false;
  setTimeout(() => { el.hidden = true; }, 4000);
}

window.addEventListener("hashchange", () => {
  scrubbing = false;
  render();
});
setInterval(() => { if (!dialog.open && !inFlight) render(); }, REFRESH_MS);
render();
