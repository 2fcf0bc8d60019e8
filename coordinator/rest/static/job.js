// One job: its header, then the tabs Overview (graph + vertices), Exceptions, Checkpoints, Timeline.
import {
  get, html, badge, counts, time, duration, number, bytes, table, panel, TERMINAL, ApiError,
} from "./util.js";
import { graph, nodesOf } from "./graph.js";

const TABS = [
  ["overview", "Overview"], ["exceptions", "Exceptions"], ["checkpoints", "Checkpoints"], ["timeline", "Timeline"],
];

function header(job, tab, asOf) {
  const cancellable = !TERMINAL.has(job.state) && job.state !== "CANCELLING" && !asOf;
  return html`<section class="panel" id="job-header">
    <div class="jobhead">
      <div>
        <h2><span id="job-name">${job.name}</span> <span id="job-state">${badge(job.state)}</span></h2>
        <div class="mono muted">${job.jid}</div>
        <dl>
          <dt>Start time</dt><dd>${time(job["start-time"])}</dd>
          <dt>Duration</dt><dd>${duration(job.duration)}</dd>
          <dt>End time</dt><dd>${job["end-time"] > 0 ? time(job["end-time"]) : "-"}</dd>
          <dt>Restarts</dt><dd>${job["jm-restarts"] ?? "-"}</dd>
          ${job["jm-artifact"] ? html`<dt>Code</dt><dd id="job-artifact" title="sha256 ${job["jm-artifact"].sha256}">${job["jm-artifact"].name} ${job["jm-artifact"].version} <span class="mono muted">${job["jm-artifact"].sha256.slice(0, 12)}</span></dd>` : ""}
        </dl>
        ${job["jm-waiting-reason"] ? html`<div class="muted">Waiting: ${job["jm-waiting-reason"]}</div>` : ""}
      </div>
      <div>${cancellable ? html`<button class="danger" id="cancel-job" data-jid="${job.jid}" data-name="${job.name}">Cancel job</button>` : ""}</div>
    </div>
    <nav class="tabs">${TABS.map(([id, label]) =>
      html`<a href="#/jobs/${job.jid}/${id}" id="tab-${id}" class="${id === tab ? "active" : ""}">${label}</a>`)}</nav>
  </section>`;
}

function vertexRows(job) {
  return (job.vertices || []).map((v) => {
    const m = v.metrics || {};
    return html`<tr data-vertex="${v.id}">
      <td>${v.name}<div class="muted mono">${v.id}</div></td>
      <td>${badge(v.status)}</td>
      <td class="num">${v.parallelism}</td>
      <td class="num">${number(m["read-records"])}</td>
      <td class="num">${number(m["write-records"])}</td>
      <td class="num">${bytes(m["read-bytes"])}</td>
      <td class="num">${bytes(m["write-bytes"])}</td>
      <td class="num">${m["accumulated-busy-time"] === undefined ? "-" : duration(m["accumulated-busy-time"])}</td>
      <td class="num">${m["accumulated-backpressured-time"] === undefined ? "-" : duration(m["accumulated-backpressured-time"])}</td>
      <td>${counts(v.tasks)}</td>
    </tr>`;
  });
}

const VERTEX_HEADERS = ["Vertex", "Status", "#Parallelism", "#Records received", "#Records sent",
  "#Bytes received", "#Bytes sent", "#Busy", "#Backpressured", "Tasks"];

function jobBody(job) {
  return html`<div class="graph" id="job-graph">${graph(nodesOf(job))}</div>
    ${table(VERTEX_HEADERS, vertexRows(job), "No vertices.")}`;
}

async function overviewTab(job) {
  return panel(html`Vertices`, jobBody(job), "vertices");
}

// `path`: where the job's answers are: "jobs/<id>" (the coordinator holds it) or
// "history/jobs/<id>" (archived: the history server's, relayed by the coordinator).
async function exceptionsTab(path) {
  const ex = await get(`${path}/exceptions?maxExceptions=20`);
  const entries = (ex.exceptionHistory && ex.exceptionHistory.entries) || [];
  const rows = entries.map((e) => html`<tr>
    <td>${time(e.timestamp)}</td>
    <td>${e.exceptionName}${e.stacktrace ? html`<pre class="trace">${e.stacktrace}</pre>` : ""}</td>
    <td>${e.taskName || "-"}</td>
    <td class="mono">${e.taskManagerId || e.location || "-"}</td>
  </tr>`);
  // Latest first, as Flink's exception history: the first entry is the root cause
  // of the job's current (or last) failure.
  const root = entries[0];
  return html`
    ${panel(html`Root exception`, root
      ? html`<div class="body"><div class="muted">${time(root.timestamp)}${root.taskName ? ` · ${root.taskName}` : ""}</div>
          <b>${root.exceptionName}</b><pre class="trace">${root.stacktrace}</pre></div>`
      : html`<div class="empty">No root exception: the job has not failed.</div>`, "root-exception")}
    ${panel(html`Exception history <span class="muted">${rows.length}</span>`,
      table(["Time", "Exception", "Task", "Location"], rows, "No exceptions."), "exception-history")}`;
}

async function checkpointsTab(path) {
  let cp;
  try {
    cp = await get(`${path}/checkpoints`);
  } catch (e) {
    return panel(html`Checkpoints`, html`<div class="empty">${e.message}</div>`, "checkpoints");
  }
  const c = cp.counts || {};
  const history = cp.history || [];
  const latest = (cp.latest && cp.latest.completed) || null;
  const rows = history.map((h) => html`<tr data-checkpoint="${h.id}">
    <td class="num">${h.id}</td>
    <td>${badge(h.status)}</td>
    <td>${h.is_savepoint ? "savepoint" : h.checkpoint_type || "checkpoint"}</td>
    <td>${time(h.trigger_timestamp)}</td>
    <td>${time(h.latest_ack_timestamp)}</td>
    <td class="num">${duration(h.end_to_end_duration)}</td>
    <td class="num">${h.num_acknowledged_subtasks ?? "-"}/${h.num_subtasks ?? "-"}</td>
    <td class="num">${bytes(h.state_size ?? h.checkpointed_size)}</td>
    <td class="mono">${h.external_path || "-"}</td>
  </tr>`);
  const card = (label, value) => html`<div class="card"><div class="label">${label}</div><div class="value">${value}</div></div>`;
  return html`<div class="cards">
      ${card("Triggered", number(c.total))}${card("In progress", number(c.in_progress))}
      ${card("Completed", number(c.completed))}${card("Failed", number(c.failed))}${card("Restored", number(c.restored))}
    </div>
    ${panel(html`Latest completed`, latest
      ? html`<div class="body">#${latest.id} at ${time(latest.latest_ack_timestamp)} · ${bytes(latest.state_size)}${latest.external_path ? html` · <span class="mono">${latest.external_path}</span>` : ""}</div>`
      : html`<div class="empty">No completed checkpoint.</div>`)}
    ${panel(html`History <span class="muted">${history.length}</span>`,
      table(["#ID", "Status", "Type", "Triggered", "Latest ack", "#End to end", "#Acknowledged", "#State size", "Path"],
        rows, "No checkpoints: the job does not checkpoint, or none has been triggered yet."), "checkpoint-history")}`;
}

const EVENT_PAGE = 1000; // the most /jobs/{id}/events hands out at once
const MAX_EVENT_PAGES = 20;

// Every journal event of the job, following the pages the API hands out; an archived
// job's from its first journal offset to its last (`span`, from the history server).
async function allEvents(jid, span) {
  const events = [];
  let offset = span ? span.first : 0;
  for (let page = 0; page < MAX_EVENT_PAGES; page += 1) {
    const answer = await get(`jobs/${jid}/events?from=${offset}&limit=${EVENT_PAGE}`);
    events.push(...(answer.events || []).filter((e) => !span || e.offset <= span.last));
    const next = answer["next-offset"];
    if (next === undefined || next <= offset || next >= answer["end-offset"]) break;
    if (span && next > span.last) break;
    offset = next;
  }
  return events;
}

const eventType = (e) => e.type;
const eventTime = (e) => e.time;
const SUMMARY_MAX = 200;
const task = (t) => (t ? `${t.vertex_id}[${t.subtask_index}] attempt ${t.attempt}` : "?");

// A line a person reads: the fields that matter for the common events, the
// replica's own summary (clipped) for the rest.
function eventSummary(e) {
  const d = e.event || {};
  switch (e.type) {
    case "JobAccepted": {
      const sub = d.submission || {};
      const n = ((sub.job_graph || {}).vertices || []).length;
      return `"${sub.name}" accepted: ${n} vertices`;
    }
    case "JobStatusChanged":
      return `${d.from_status} → ${d.to_status}${d.cause ? ` (${d.cause})` : ""}`;
    case "ExecutionGraphCreated":
      return `run ${d.restart_count}: ${(d.subtasks || []).length} subtasks`;
    case "TaskAssigned":
      return `${task(d.task)} → ${d.slot ? `${d.slot.tm_id} slot ${d.slot.slot_index}` : "?"}`;
    case "CheckpointTriggered":
      return `${String(d.kind || "checkpoint").toLowerCase().replace(/_/g, " ")} ${d.checkpoint_id}`;
    case "CheckpointCompleted":
      return `checkpoint ${d.checkpoint_id}: ${bytes(d.state_size)} in ${duration(d.duration_ms)}`;
    case "TaskStateRecorded":
      return `${task(d.task)} → ${d.state}${d.error_name ? ` (${d.error_name})` : ""}`;
    default: {
      const text = e.summary || "";
      return text.length > SUMMARY_MAX ? `${text.slice(0, SUMMARY_MAX - 1)}…` : text;
    }
  }
}

const TYPE_COLORS = {
  JobAccepted: "CREATED", JobRejected: "FAILED", JobStatusChanged: "RUNNING",
  ExecutionGraphCreated: "SCHEDULED", TaskAssigned: "DEPLOYING", TaskStateRecorded: "INITIALIZING",
  CheckpointTriggered: "IN_PROGRESS", CheckpointCompleted: "FINISHED", CheckpointAborted: "CANCELED",
  JobCancelRequested: "CANCELING",
};

async function timelineTab(job, at, span) {
  const events = await allEvents(job.jid, span);
  const offsets = events.map((e) => e.offset);
  const index = at === null ? events.length - 1 : Math.max(0, offsets.indexOf(at));
  const chosen = events[index];
  const rows = events.map((e, i) => html`<tr class="link ${i === index && at !== null ? "selected" : ""} ${at !== null && i > index ? "after" : ""}" data-offset="${e.offset}">
    <td class="num mono">${e.offset}</td>
    <td class="nowrap">${time(eventTime(e))}</td>
    <td><span class="badge" style="background: var(--${TYPE_COLORS[eventType(e)] || "SUSPENDED"})">${eventType(e)}</span></td>
    <td class="details" title="${e.summary}">${eventSummary(e)}</td>
  </tr>`);
  const where = chosen
    ? html`${at === null ? "Live · latest event" : "As of event"} <b class="mono">@${chosen.offset}</b> ${eventType(chosen)} · ${time(eventTime(chosen))}`
    : "No events.";
  const scrubber = panel(html`Event timeline <span class="muted">${events.length} events from the journal</span>`, html`
    <div class="scrubber">
      <span class="muted">${events.length ? time(eventTime(events[0])) : ""}</span>
      <input type="range" id="scrubber" min="0" max="${Math.max(0, events.length - 1)}" value="${index}" step="1"
             data-offsets="${offsets.join(",")}" aria-label="Scrub the journal">
      <span class="muted">now</span>
      <span class="where" id="scrub-where">${where}</span>
      ${at !== null ? html`<button id="scrub-live">Back to live</button>` : ""}
    </div>`, "timeline");
  const from = span ? html` <span class="muted" id="timeline-from">from journal offset ${span.first} to ${span.last}</span>` : "";
  const list = panel(html`Events${from}`, table(["#Offset", "Time", "Event", "Details"], rows,
    "The journal holds no event of this job."), "timeline-events");
  return { scrubber, list };
}

// The job as the journal had it up to offset `at`, included (a replay on the replica);
// null when the job did not exist yet (or had left memory) at that point.
async function stateAt(jid, at) {
  const answer = await get(`jobs/${jid}/state?offset=${at}`);
  return answer.job;
}

// The job from the coordinator; once it left the coordinator's memory, from the
// history server (relayed under history/): {job, path, span} (span: its journal offsets).
async function findJob(jid) {
  try {
    return { job: await get(`jobs/${jid}`), path: `jobs/${jid}`, span: null };
  } catch (e) {
    if (e.status !== 404) throw e;
    const path = `history/jobs/${jid}`;
    try {
      const [job, span] = await Promise.all([get(path), get(`${path}/journal`)]);
      return { job, path, span };
    } catch (h) {
      throw new ApiError(404, `${e.message}. History server: ${h.message}`);
    }
  }
}

function archivedBanner(span) {
  return html`<div class="banner archived" id="archived-banner">Archived: this job left the
    coordinator's memory. Its details come from the history server; its
    ${number(span.events)} events are in the journal at offsets ${span.first} to ${span.last}.</div>`;
}

export async function jobPage(jid, tab, at) {
  const { job: live, path, span } = await findJob(jid);
  let shown = live;
  let banner = span ? archivedBanner(span) : "";
  if (tab === "timeline" && at !== null) {
    const then = await stateAt(jid, at);
    // Metrics are volatile (heartbeats), never in the journal: a past state has none.
    shown = then
      ? { ...then, vertices: (then.vertices || []).map((v) => ({ ...v, metrics: null })) }
      : { ...live, state: "NOT YET ACCEPTED", vertices: [] };
    banner = html`${banner}<div class="banner history" id="history-banner">Showing the job as it was at journal offset <b>${at}</b>,
      replayed from the journal: status ${badge(shown.state)} (live: ${badge(live.state)}).</div>`;
  }
  let body;
  if (tab === "exceptions") body = html`${banner}${await exceptionsTab(path)}`;
  else if (tab === "checkpoints") body = html`${banner}${await checkpointsTab(path)}`;
  else if (tab === "timeline") {
    const { scrubber, list } = await timelineTab(live, at, span);
    const then = at !== null ? panel(html`Vertices at offset ${at}`, jobBody(shown), "vertices-at") : "";
    body = html`${banner}${scrubber}${then}${list}`;
  } else body = html`${banner}${await overviewTab(live)}`;
  // The sidebar entry the job is listed under: an archived job's is "Archived jobs".
  const nav = span ? "archive" : "jobs";
  return { title: "Job", nav, content: html`${header(shown, tab, at !== null && tab === "timeline")}${body}` };
}
