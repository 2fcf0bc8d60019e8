// Overview, job list, task managers and replicas: one render function per page.
import {
  get, getUnlessSame, html, badge, counts, time, duration, number, table, panel, TERMINAL,
} from "./util.js";

function jobRows(jobs) {
  return jobs.map((j) => html`<tr class="link" data-job="${j.jid}">
    <td><a href="#/jobs/${j.jid}">${j.name}</a><div class="muted mono">${j.jid}</div></td>
    <td>${time(j["start-time"])}</td>
    <td>${duration(j.duration)}</td>
    <td>${j["end-time"] > 0 ? time(j["end-time"]) : "-"}</td>
    <td>${counts(j.tasks)}</td>
    <td>${badge(j.state)}</td>
  </tr>`);
}

const RECENT_JOBS = 10; // on the overview; the Jobs page lists them all
const JOB_HEADERS = ["Job", "Start time", "Duration", "End time", "Tasks", "Status"];

function byStatus(jobs) {
  const tally = new Map();
  jobs.forEach((j) => tally.set(j.state, (tally.get(j.state) || 0) + 1));
  return [...tally.entries()].sort((a, b) => b[1] - a[1]);
}

export async function overview() {
  const [ov, list, leader] = await Promise.all([
    get("overview"), get("jobs/overview"), get("cluster/leader").catch(() => null),
  ]);
  const jobs = list.jobs || [];
  const running = jobs.filter((j) => !TERMINAL.has(j.state));
  const recent = jobs.filter((j) => TERMINAL.has(j.state))
    .sort((a, b) => (b["end-time"] || 0) - (a["end-time"] || 0)).slice(0, RECENT_JOBS);
  const statuses = byStatus(jobs);
  const card = (label, value, id) => html`<div class="card" id="${id}"><div class="label">${label}</div><div class="value">${value}</div></div>`;
  return html`
    <div class="cards">
      ${card("Task Managers", number(ov.taskmanagers), "card-taskmanagers")}
      ${card("Available task slots", html`${number(ov["slots-available"])} <small>of ${number(ov["slots-total"])}</small>`, "card-slots")}
      ${card("Running jobs", number(ov["jobs-running"]), "card-running")}
      ${card("Finished", number(ov["jobs-finished"]), "card-finished")}
      ${card("Canceled", number(ov["jobs-cancelled"]), "card-canceled")}
      ${card("Failed", number(ov["jobs-failed"]), "card-failed")}
      ${leader ? card("Leader", html`<span class="mono" style="font-size:20px">${leader["leader-id"] || "none"}</span> <small>epoch ${leader.epoch}</small>`, "card-leader") : ""}
    </div>
    ${panel(html`Jobs by status`, statuses.length
      ? html`<div class="body" id="jobs-by-status">${statuses.map(([s, n]) => html`<span style="margin-right:18px">${badge(s)} ${n}</span>`)}</div>`
      : html`<div class="empty">No jobs.</div>`)}
    ${panel(html`Running jobs`, table(JOB_HEADERS, jobRows(running), "No running jobs.", "jobs"))}
    ${panel(html`Recently completed jobs`, table(JOB_HEADERS, jobRows(recent), "No completed jobs.", "jobs"))}
  `;
}

export async function jobs() {
  const list = await get("jobs/overview");
  const all = (list.jobs || []).slice().sort((a, b) => (b["start-time"] || 0) - (a["start-time"] || 0));
  const running = all.filter((j) => !TERMINAL.has(j.state));
  const done = all.filter((j) => TERMINAL.has(j.state));
  return html`
    ${panel(html`Running jobs <span class="muted">${running.length}</span>`, table(JOB_HEADERS, jobRows(running), "No running jobs.", "jobs"), "running-jobs")}
    ${panel(html`Completed jobs <span class="muted">${done.length}</span>`, table(JOB_HEADERS, jobRows(done), "No completed jobs.", "jobs"), "completed-jobs")}
  `;
}

const ARCHIVE_HEADERS = ["Job", "Final status", "Start time", "End time", "Duration"];

// The last archived-jobs list and its ETag: refreshed only when the history server's
// answer changed.
const archived = {};

// Ended jobs that left the coordinator's memory, from the history server (jm history),
// which the coordinator relays under history/; /config says whether one is configured.
export async function archive() {
  const config = await get("config");
  const title = (n) => html`Archived jobs${n === undefined ? "" : html` <span class="muted">${n}</span>`}`;
  const problem = (text) => panel(title(), html`<div class="empty problem" id="archive-problem">${text}</div>`, "archived-jobs");
  if (!(config.features || {})["web-history"]) {
    return problem(html`No history server is configured: this coordinator lists only the jobs it
      holds. Set <code>historyserver.web.url</code> (<code>--history-url</code>) to the URL of
      <code>jm history</code> to list the jobs that left its memory.`);
  }
  let list;
  try {
    list = await getUnlessSame("history/jobs/overview", archived);
  } catch (e) {
    return problem(`The history server does not answer: ${e.message}`);
  }
  const jobs = (list.jobs || []).slice().sort((a, b) => (b["end-time"] || 0) - (a["end-time"] || 0));
  const rows = jobs.map((j) => html`<tr class="link" data-job="${j.jid}">
    <td><a href="#/jobs/${j.jid}">${j.name}</a><div class="muted mono">${j.jid}</div></td>
    <td>${badge(j.state)}</td>
    <td class="nowrap">${time(j["start-time"])}</td>
    <td class="nowrap">${j["end-time"] > 0 ? time(j["end-time"]) : "-"}</td>
    <td>${duration(j.duration)}</td>
  </tr>`);
  return panel(title(jobs.length), table(ARCHIVE_HEADERS, rows,
    "No archived jobs yet: the history server lists a job once it ended.", "archived"),
  "archived-jobs");
}

// Flink's timeSinceLastHeartbeat is the heartbeat's timestamp despite its name;
// jm-heartbeat-age-ms is the age the replica measured (null: none seen yet).
function heartbeatAge(tm, now) {
  if (tm["jm-heartbeat-age-ms"] !== undefined) return tm["jm-heartbeat-age-ms"];
  return tm.timeSinceLastHeartbeat ? now - tm.timeSinceLastHeartbeat : null;
}

export async function taskmanagers() {
  const answer = await get("taskmanagers");
  const now = Date.now();
  const rows = (answer.taskmanagers || []).map((tm) => {
    const age = heartbeatAge(tm, now);
    return html`<tr data-tm="${tm.id}">
      <td class="mono">${tm.id}<div class="muted">${tm["jm-incarnation"] || ""}</div></td>
      <td>${tm.path || "-"}</td>
      <td class="num">${number(tm.slotsNumber)}</td>
      <td class="num">${number(tm.freeSlots)}</td>
      <td title="${tm.timeSinceLastHeartbeat ? time(tm.timeSinceLastHeartbeat) : ""}">${age === null ? "none yet" : `${duration(age)} ago`}</td>
      <td class="nowrap">${time(tm["jm-registered-at"])}</td>
      <td class="num">${tm.hardware && tm.hardware.cpuCores ? tm.hardware.cpuCores : "-"}</td>
      <td>${(tm["jm-operators"] || []).join(", ") || "-"}</td>
    </tr>`;
  });
  return panel(html`Task Managers <span class="muted">${rows.length}</span>`,
    table(["ID", "Address", "#Slots", "#Free slots", "Last heartbeat", "Registered", "#CPU cores", "Operators"],
      rows, "No task manager has joined."),
    "taskmanagers");
}

export async function replicas() {
  const leader = await get("cluster/leader");
  const rows = (leader.replicas || []).map((r) => {
    const isLeader = r.id === leader["leader-id"];
    const role = isLeader ? "LEADER" : String(r.role || "STANDBY").toUpperCase();
    return html`<tr data-replica="${r.id}">
      <td class="mono">${r.id}${r.id === leader["answered-by"] ? html` <span class="muted">(this page)</span>` : ""}</td>
      <td><span class="badge" style="background: ${isLeader ? "var(--FINISHED)" : "#8c8c8c"}">${role}</span></td>
      <td class="num">${r.epoch}</td>
      <td class="num">${number(r["applied-offset"])}</td>
      <td class="num">${number(r.lag)}</td>
      <td>${r["age-ms"] === undefined ? "-" : `${duration(r["age-ms"])} ago`}</td>
      <td class="mono">${r.digest ? r.digest.slice(0, 12) : "-"}</td>
      <td class="${r.problem ? "error" : "muted"}">${r.problem || "-"}</td>
    </tr>`;
  });
  const card = (label, value, id = "") => html`<div class="card" id="${id}"><div class="label">${label}</div><div class="value">${value}</div></div>`;
  return html`
    <div class="cards">
      ${card("Leader", html`<span class="mono" style="font-size:20px">${leader["leader-id"] || "none"}</span>`, "card-leader")}
      ${card("Epoch", leader.epoch)}
      ${card("Leader since", html`<span style="font-size:18px" title="${time(leader["leader-since"])}">${time(leader["leader-since"]).slice(11, 19)}</span>`)}
      ${card("Answered by", html`<span class="mono" style="font-size:20px">${leader["answered-by"]}</span> <small>${leader["answered-by-role"]}</small>`)}
      ${card("Journal offset", number(leader["jm-journal-offset"]))}
    </div>
    ${panel(html`Replicas <span class="muted">${rows.length}</span>`,
      table(["Replica", "Role", "#Epoch", "#Applied offset", "#Lag", "Published", "State digest", "Problem"],
        rows, "No replica has published its position yet."), "replicas")}
  `;
}
