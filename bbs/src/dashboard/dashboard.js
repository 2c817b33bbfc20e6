// The BBS dashboard: polls the admin address's JSON (same origin, relative URLs) and follows its
// event stream. Every value from the server reaches the page through textContent, dataset or
// element properties, never through HTML parsing.
"use strict";

const POLL_MS = 2000;
// Cells cost a few reads per cell: they are re-read every this many polls (and on events).
const CELLS_EVERY = 5;
const EVENTS_KEPT = 100;
const RECONNECT_MS = 3000;
const STATES = ["UNCLAIMED", "CLAIMED", "RUNNING", "CRASHED"];

const page = {
  after: null,
  next: null,
  stream: null,
  reconnect: null,
  soon: null,
  leading: false,
  events: false,
  polls: 0,
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function byId(id) {
  return document.getElementById(id);
}

function show(id, message) {
  const node = byId(id);
  node.textContent = message || "";
  node.hidden = !message;
}

function when(ns) {
  if (!ns) return "";
  return new Date(Math.floor(ns / 1e6)).toLocaleTimeString();
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(path + ": " + (body.error || response.status));
  return body;
}

function meter(label, used, capacity, unit) {
  const row = el("div", "capacity");
  row.append(el("span", "capacity-label", label));
  const bar = el("meter");
  bar.min = 0;
  bar.max = Math.max(capacity, 1);
  bar.value = Math.min(used, bar.max);
  bar.low = bar.max * 0.6;
  bar.high = bar.max * 0.85;
  bar.optimum = 0;
  row.append(bar);
  row.append(el("span", "capacity-text", used + " / " + capacity + (unit ? " " + unit : "")));
  return row;
}

function renderCells(view) {
  const cards = view.cells.map((cell) => {
    const card = el("article", "cell-card");
    card.dataset.cellId = cell.cell_id;
    card.append(el("h3", "cell-id", cell.cell_id));
    card.append(el("p", "meta", [cell.zone || "no zone", cell.rep_address].join(" · ")));
    card.append(meter("memory", cell.used.memory_mb, cell.capacity.memory_mb, "MB"));
    card.append(meter("disk", cell.used.disk_mb, cell.capacity.disk_mb, "MB"));
    card.append(meter("containers", cell.used.containers, cell.capacity.containers, ""));
    let counts = cell.instances + " instances, " + cell.tasks + " tasks";
    if (cell.truncated) counts += " (at least: too many to read)";
    card.append(el("p", "meta", counts));
    return card;
  });
  if (cards.length === 0) cards.push(el("p", "empty", "No live cells."));
  byId("cells").replaceChildren(...cards);
  byId("cells-more").textContent = view.more_cells ? "… and " + view.more_cells + " more cells" : "";
}

function instanceNode(guid, instance) {
  const state = STATES.includes(instance.state) ? instance.state : "UNKNOWN";
  const node = el("li", "instance state-" + state);
  node.dataset.processGuid = guid;
  node.dataset.index = String(instance.index);
  node.dataset.state = state;
  node.append(el("span", "index", instance.index));
  node.append(el("span", "state", state));
  if (instance.presence !== "ORDINARY") node.append(el("span", "presence", instance.presence));
  if (instance.cell_id) node.append(el("span", "cell", instance.cell_id));
  const why = instance.placement_error || instance.crash_reason;
  if (why) node.append(el("span", "why", why));
  if (instance.crash_count) node.append(el("span", "crashes", "crashes: " + instance.crash_count));
  node.title = [state, instance.cell_id, why, when(instance.since)].filter(Boolean).join("\n");
  return node;
}

function renderLrps(view) {
  const cards = view.lrps.map((lrp) => {
    const card = el("article", "lrp");
    card.dataset.processGuid = lrp.process_guid;
    card.append(el("h3", "process-guid", lrp.process_guid));
    const meta = [lrp.domain, lrp.desired_instances + " desired", lrp.memory_mb + " MB", lrp.disk_mb + " MB disk"];
    card.append(el("p", "meta", meta.join(" · ")));
    const counts = Object.entries(lrp.states).map(([state, n]) => n + " " + state);
    card.append(el("p", "meta", counts.join(", ") || "no instances"));
    const list = el("ol", "instances");
    list.append(...lrp.instances.map((instance) => instanceNode(lrp.process_guid, instance)));
    card.append(list);
    if (lrp.more_instances) card.append(el("p", "more", "… and " + lrp.more_instances + " more instances"));
    return card;
  });
  if (cards.length === 0) cards.push(el("p", "empty", "No desired LRPs" + (page.after ? " on this page." : ".")));
  byId("lrps").replaceChildren(...cards);
  page.next = view.next_after;
  const more = view.more_lrps;
  byId("lrps-more").textContent = more.count ? "… and " + (more.at_least ? "at least " : "") + more.count + " more LRPs" : "";
  byId("next-page").disabled = !page.next;
  byId("first-page").disabled = !page.after;
}

function renderTasks(view) {
  const states = Object.entries(view.states).map(([state, n]) => n + " " + state);
  const total = (view.total.at_least ? "at least " : "") + view.total.count + " tasks";
  byId("task-states").textContent = total + ": " + states.join(", ");
  const rows = view.recent.map((task) => {
    const row = el("tr", "task state-" + task.state);
    row.dataset.taskGuid = task.task_guid;
    for (const value of [task.task_guid, task.domain, task.state, task.cell_id, task.failure_reason, when(task.updated_at)]) {
      row.append(el("td", "", value));
    }
    return row;
  });
  if (rows.length === 0) {
    const none = el("tr", "empty");
    const cell = el("td", "", "No tasks.");
    cell.colSpan = 6;
    none.append(cell);
    rows.push(none);
  }
  byId("task-rows").replaceChildren(...rows);
}

function renderStatus(status) {
  page.leading = status.leading;
  page.events = status.events;
  const role = byId("role");
  role.textContent = status.leading ? "leader" : "standby";
  role.className = "role " + (status.leading ? "leading" : "standby");
  if (status.leading) {
    show("banner", status.events ? "" : "This BBS serves no event stream; the page polls every " + POLL_MS / 1000 + " s.");
  } else {
    const where = status.leader ? " The leader's gRPC address is " + status.leader + "; open its admin address for live events." : "";
    show("banner", "This BBS is a standby: it reads the database but sees no events." + where);
  }
}

async function refresh(withCells) {
  const lrpsPath = "api/lrps" + (page.after ? "?after=" + encodeURIComponent(page.after) : "");
  const cellsToo = withCells || page.polls % CELLS_EVERY === 0;
  page.polls += 1;
  try {
    const [status, cells, lrps, tasks] = await Promise.all([
      getJson("api/status"),
      cellsToo ? getJson("api/cells") : null,
      getJson(lrpsPath),
      getJson("api/tasks"),
    ]);
    renderStatus(status);
    if (cells) renderCells(cells);
    renderLrps(lrps);
    renderTasks(tasks);
    show("error", "");
    byId("updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (page.events && !page.stream && !page.reconnect) connect();
  } catch (error) {
    show("error", "Cannot refresh: " + error.message);
  }
}

// A burst of events refreshes once.
function refreshSoon() {
  if (page.soon) return;
  page.soon = setTimeout(() => {
    page.soon = null;
    refresh(true);
  }, 250);
}

function logEvent(stream, event) {
  const line = el("li", "event " + stream);
  line.dataset.kind = event.kind;
  line.append(el("span", "time", new Date().toLocaleTimeString()));
  line.append(el("span", "kind", event.kind));
  const subject = event.guid + (event.index !== null && event.index !== undefined ? "/" + event.index : "");
  line.append(el("span", "subject", subject));
  if (event.state) line.append(el("span", "state state-" + event.state, event.state));
  if (event.cell_id) line.append(el("span", "cell", event.cell_id));
  if (event.detail) line.append(el("span", "why", event.detail));
  const list = byId("events");
  list.prepend(line);
  while (list.children.length > EVENTS_KEPT) list.lastElementChild.remove();
}

function streamStatus(text, live) {
  const status = byId("events-status");
  status.textContent = text;
  status.className = "events-status" + (live ? " live" : "");
}

function disconnect(reason) {
  if (page.stream) page.stream.close();
  page.stream = null;
  streamStatus(reason, false);
  if (!page.reconnect) {
    page.reconnect = setTimeout(() => {
      page.reconnect = null;
      refresh();
    }, RECONNECT_MS);
  }
}

function connect() {
  const stream = new EventSource("api/events");
  page.stream = stream;
  streamStatus("connecting…", false);
  stream.addEventListener("open", () => streamStatus("live", true));
  for (const name of ["instance", "task"]) {
    stream.addEventListener(name, (message) => {
      logEvent(name, JSON.parse(message.data));
      refreshSoon();
    });
  }
  // The server ended the stream: this BBS stopped leading, or the page fell behind and missed
  // events. Re-list and subscribe again.
  stream.addEventListener("closed", (message) => {
    const reason = JSON.parse(message.data).reason;
    disconnect("dropped: " + reason + "; reconnecting");
    refreshSoon();
  });
  stream.onerror = () => {
    if (stream.readyState === EventSource.CLOSED) disconnect("not connected; retrying");
    else streamStatus("reconnecting…", false);
  };
}

function start() {
  byId("next-page").addEventListener("click", () => {
    if (!page.next) return;
    page.after = page.next;
    refresh();
  });
  byId("first-page").addEventListener("click", () => {
    page.after = null;
    refresh();
  });
  refresh();
  setInterval(refresh, POLL_MS);
}

start();
