// The hub's own dashboard: the token owner's agents, each with its five provisioning steps, kept
// live by StatusHubClient. Everything from the server is inserted as text, never as HTML.
import { AuthError, StatusHubClient } from "./statushub.js";
import { parseTime, silenceText, stepTiming } from "./durations.js";
import { TimelineDialog } from "./timeline.js";

const TOKEN_KEY = "status-hub.token";
const COOKIE_NAME = "status_hub_token";
const LIST_REFRESH_MS = 30000;
const UI_STEPS = [
  ["queued", "Queued"],
  ["creating_server", "Creating Server"],
  ["installing_dependencies", "Installing Dependencies"],
  ["configuring_agent", "Configuring Agent"],
  ["running", "Running"],
];
const STATUS_TEXT = {
  none: "Not provisioned",
  pending: "Queued",
  provisioning: "Provisioning",
  running: "Running",
  failed: "Failed",
  stopped: "Stopped",
};
const STATE_TEXT = { completed: "done", active: "in progress", pending: "pending", error: "failed" };
const META_LABELS = { ip_address: "IP address", server_id: "Server ID", region: "Region", hostname: "Hostname" };
const CONNECTION_TEXT = {
  live: ["Live", "Updates arrive over a websocket as they happen."],
  reconnecting: ["Reconnecting…", "The live connection dropped; reconnecting."],
  polling: ["Polling", "Websockets are unavailable: checking for updates every few seconds."],
  offline: ["Offline", "Not receiving updates."],
};

const STALL_HINT = {
  running: "The agent may be down or cut off from the hub.",
  other: "The workflow may have been cancelled, timed out or lost its runner.",
};

const $ = (selector, root = document) => root.querySelector(selector);
const cards = new Map(); // agentId -> {element, version, heartbeatAt, steps, stalledSince}
let client = null;
let timeline = null;

main();

async function main() {
  const token = takeToken();
  if (!token) {
    showConnection("offline");
    showNotice(
      "No dashboard token",
      "Open this dashboard through the link your application gives you (it ends in #token=…). " +
        "The token then stays in this browser tab only.",
    );
    return;
  }
  $("#owner").dataset.owner = ownerOf(token) ?? "";
  client = new StatusHubClient({
    token,
    onStatus: (status) => renderStatus(status),
    onConnection: (state) => showConnection(state),
    onError: (error) => handleError(error),
  });
  timeline = new TimelineDialog($("#timeline"), client, (error) =>
    handleError({ agentId: null, code: 4401, message: error.message }),
  );
  await loadAgents();
  // One timer for every card: heartbeats, the active steps' elapsed times and stalled notices.
  window.setInterval(tick, 1000);
}

// The token comes from the fragment (never sent to any server, unlike a query) or a cookie the
// main application set, and then lives in sessionStorage so a reload of this tab still works.
function takeToken() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const fromFragment = fragment.get("token");
  if (fromFragment) {
    fragment.delete("token");
    const rest = fragment.toString();
    const url = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
    window.history.replaceState(window.history.state, "", url);
    sessionStorage.setItem(TOKEN_KEY, fromFragment);
    return fromFragment;
  }
  const cookie = document.cookie.split("; ").find((part) => part.startsWith(`${COOKIE_NAME}=`));
  return sessionStorage.getItem(TOKEN_KEY) || (cookie ? decodeURIComponent(cookie.split("=")[1]) : null);
}

async function loadAgents() {
  let agents;
  try {
    agents = await client.listAgents();
  } catch (error) {
    if (error instanceof AuthError) {
      handleError({ agentId: null, code: 4401, message: error.message });
      return;
    }
    showNotice("The hub is unreachable", `${error.message} Retrying in a few seconds.`);
    window.setTimeout(loadAgents, 5000);
    return;
  }
  hideNotice();
  $("#loading").hidden = true;
  syncCards(agents);
  window.setTimeout(loadAgents, LIST_REFRESH_MS); // agents created since appear without a reload
}

function syncCards(agents) {
  const seen = new Set();
  for (const agent of agents) {
    seen.add(agent.id);
    if (!cards.has(agent.id)) $("#agents").append(createCard(agent));
    if (agent.status) renderStatus(agent.status);
  }
  const gone = [...cards.keys()].filter((id) => !seen.has(id));
  for (const id of gone) {
    cards.get(id).element.remove();
    cards.delete(id);
  }
  client.unwatch(gone);
  client.watch(agents.map((agent) => agent.id));
  $("#empty").hidden = cards.size > 0;
  refreshOverview();
}

function createCard(agent) {
  const element = $("#agent-card").content.firstElementChild.cloneNode(true);
  element.dataset.agentId = agent.id;
  const nameId = `agent-${agent.id}-name`;
  $(".agent-name", element).id = nameId;
  $(".agent-name", element).textContent = agent.name;
  $(".agent-id", element).textContent = agent.id;
  element.setAttribute("aria-labelledby", nameId);
  const open = $(".timeline-open", element);
  open.setAttribute("aria-label", `Timeline of ${agent.name}`);
  open.addEventListener("click", () => timeline.open(agent.id, agent.name, open));
  cards.set(agent.id, { element, version: 0, heartbeatAt: null, steps: [], status: null, stalledSince: null });
  renderSteps(element, UI_STEPS.map(([key, label]) => ({ key, label, state: "pending" })), null);
  $(".pill", element).textContent = STATUS_TEXT.none;
  $(".summary-text", element).textContent = "Waiting for the first provisioning.";
  return element;
}

function renderStatus(status) {
  const card = cards.get(status.agentId);
  // The client already drops stale versions; the list refresh can still bring an older one.
  if (!card || status.version <= card.version) return;
  const firstRender = card.version === 0;
  const before = card.status;
  card.version = status.version;
  card.heartbeatAt = status.lastHeartbeatAt ? parseTime(status.lastHeartbeatAt) : null;
  card.steps = status.steps;
  card.status = status.status;
  const { element } = card;
  element.dataset.status = status.status;
  setText($(".pill", element), STATUS_TEXT[status.status] ?? status.status);
  renderSummary(element, status);
  renderSteps(element, status.steps, status.error);
  renderMeta(element, status.metadata || {});
  renderStall(card, parseTime(status.stalledSince), before, firstRender);
  $(".version", element).textContent = `v${status.version}`;
  $(".version", element).title = `Status version ${status.version}, updated ${status.updatedAt}`;
  const now = client.serverNow();
  refreshHeartbeat(card);
  refreshTimes(card, now);
  refreshStall(card, now);
  refreshOverview();
  timeline.refresh(status.agentId);
}

function tick() {
  const now = client.serverNow();
  for (const card of cards.values()) {
    refreshHeartbeat(card);
    refreshTimes(card, now);
    refreshStall(card, now);
  }
}

// The notice itself ticks, so it is no live region (a screen reader would read it every second);
// a separate polite region says once that the workflow went quiet, and once that it spoke again.
// Only changes seen while the page is open are said: a card's first status is the state the page
// loaded with, shown but not announced (a page full of stalled cards would otherwise speak them all).
function renderStall(card, stalledSince, before, firstRender) {
  const was = card.stalledSince;
  card.stalledSince = stalledSince;
  const { element } = card;
  const notice = $(".stall", element);
  notice.hidden = stalledSince === null;
  element.toggleAttribute("data-stalled", stalledSince !== null);
  setText($(".stall-hint", notice), card.status === "running" ? STALL_HINT.running : STALL_HINT.other);
  if (firstRender) return;
  const announce = $(".announce", element);
  if (stalledSince !== null && was === null) {
    const since = new Date(stalledSince).toLocaleTimeString();
    const who = card.status === "running" ? "No heartbeat from the agent" : "No word from the workflow";
    setText(announce, `Stalled: ${who.toLowerCase()} since ${since}.`);
  } else if (stalledSince === null && was !== null) {
    // Said of what was silent: a workflow that resumes by reporting running was a workflow.
    setText(announce, before === "running" ? "The agent is heartbeating again." : "The workflow is reporting again.");
  }
}

function refreshStall(card, now) {
  if (card.stalledSince === null) return;
  const text = $(".stall-text", card.element);
  setText(text, silenceText(card.status, card.stalledSince, now));
  text.title = `Last word ${new Date(card.stalledSince).toLocaleString()}`;
}

function refreshTimes(card, now) {
  const items = $(".track", card.element).children;
  card.steps.forEach((step, index) => {
    const item = items[index];
    if (!item) return;
    const timing = stepTiming(card.steps, index, now);
    const time = $(".step-time", item);
    time.hidden = timing === null;
    setText(time, timing ? timing.text : "");
    if (timing) time.title = timing.title;
    else time.removeAttribute("title");
    const slow = Boolean(timing?.slow);
    $(".step-slow", item).hidden = !slow;
    item.toggleAttribute("data-slow", slow);
  });
}

function renderSummary(element, status) {
  const index = status.steps.findIndex((s) => s.state === "active" || s.state === "error");
  const step = status.steps[index];
  let text;
  if (status.status === "running") {
    const ip = status.metadata?.ip_address;
    text = ip ? `Running at ${ip}.` : "Running.";
  } else if (status.status === "failed") {
    text = `Failed at ${step ? step.label : "provisioning"}.`;
  } else if (status.status === "pending") {
    text = "Queued: waiting for the workflow to start.";
  } else if (step) {
    text = `Step ${index + 1} of ${status.steps.length}: ${step.label}.`;
  } else {
    text = `${STATUS_TEXT[status.status] ?? status.status}.`;
  }
  setText($(".summary-text", element), text);
  const workflowStep = $(".workflow-step", element);
  workflowStep.hidden = !status.currentStep;
  setText(workflowStep, status.currentStep ?? "");
  workflowStep.title = "The workflow's current step";
}

// Updated in place: replacing the items on every version (each heartbeat is one) would restart
// the active step's animation and make screen readers announce unchanged text again.
function renderSteps(element, steps, error) {
  const track = $(".track", element);
  const meter = element.querySelectorAll(".meter span");
  steps.forEach((step, index) => {
    if (meter[index]) meter[index].dataset.state = step.state;
    let item = track.children[index];
    if (!item || item.dataset.step !== step.key) {
      const fresh = createStepItem(step.key);
      if (item) item.replaceWith(fresh);
      else track.append(fresh);
      item = fresh;
    }
    if (item.dataset.state !== step.state) item.dataset.state = step.state;
    if (step.state === "active") item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
    setText($(".step-label", item), step.label);
    setText($(".step-state", item), STATE_TEXT[step.state] ?? step.state);
    const message = $(".step-error", item);
    message.hidden = step.state !== "error";
    setText(message, step.state === "error" ? error || "The workflow failed without a message." : "");
  });
  while (track.children.length > steps.length) track.lastElementChild.remove();
}

function createStepItem(key) {
  const item = document.createElement("li");
  item.className = "step";
  item.dataset.step = key;
  const marker = document.createElement("span");
  marker.className = "marker";
  marker.setAttribute("aria-hidden", "true");
  const body = document.createElement("div");
  body.className = "step-body";
  const parts = [["span", "step-label"], ["span", "step-state"], ["span", "step-time"], ["span", "step-slow"], ["p", "step-error"]];
  for (const [tag, name] of parts) {
    const part = document.createElement(tag);
    part.className = name;
    body.append(part);
  }
  $(".step-time", body).hidden = true;
  const slow = $(".step-slow", body);
  slow.textContent = "slower than usual";
  slow.hidden = true;
  item.append(marker, body);
  return item;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function renderMeta(element, metadata) {
  const list = $(".meta", element);
  const entries = Object.entries(metadata).filter(([, value]) => value !== null && typeof value !== "object");
  const signature = JSON.stringify(entries);
  if (list.dataset.signature === signature) return;
  list.dataset.signature = signature;
  list.hidden = entries.length === 0;
  list.replaceChildren(
    ...entries.map(([key, value]) => {
      const row = document.createElement("div");
      const term = document.createElement("dt");
      term.textContent = META_LABELS[key] ?? humanize(key);
      const detail = document.createElement("dd");
      detail.textContent = String(value);
      row.append(term, detail);
      return row;
    }),
  );
}

function refreshHeartbeat(card) {
  const element = $(".heartbeat", card.element);
  if (card.heartbeatAt === null) {
    element.textContent = "no heartbeat yet";
    element.removeAttribute("title");
    delete element.dataset.stale;
    return;
  }
  // Clamped at 0: the clock offset is known to about a second.
  const seconds = Math.max(0, Math.round((client.serverNow() - card.heartbeatAt) / 1000));
  setText(element, `last heartbeat ${ago(seconds)}`);
  element.title = new Date(card.heartbeatAt).toLocaleString();
  const alive = card.element.dataset.status === "running" || card.element.dataset.status === "provisioning";
  if (alive && seconds > 90) element.dataset.stale = "true";
  else delete element.dataset.stale;
}

function ago(seconds) {
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

function showConnection(state) {
  const badge = $("#connection");
  const [text, title] = CONNECTION_TEXT[state] ?? [state, ""];
  badge.dataset.connection = state;
  badge.title = title;
  $(".badge-label", badge).textContent = text;
}

function handleError({ agentId, code, message }) {
  if (code === 4401) {
    sessionStorage.removeItem(TOKEN_KEY); // a reload must not retry a refused token
    client?.close();
    const expired = /expired/i.test(message);
    showNotice(
      expired ? "Your dashboard link has expired" : "This dashboard link is not valid",
      `${message} Open a fresh link from your application.`,
    );
    $("#loading").hidden = true;
    return;
  }
  const card = agentId && cards.get(agentId);
  if (card) {
    card.element.dataset.status = "unavailable";
    $(".summary-text", card.element).textContent = message;
  }
}

function showNotice(title, text) {
  const notice = $("#notice");
  $(".notice-title", notice).textContent = title;
  $(".notice-text", notice).textContent = text;
  notice.hidden = false;
  $("#loading").hidden = true;
}

function hideNotice() {
  $("#notice").hidden = true;
}

function ownerOf(token) {
  // Display only: the hub verifies the token; this just says whose agents are shown.
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof payload.sub === "string" ? payload.sub : null;
  } catch {
    return null; // not a JWT we can read; the hub will say so
  }
}

function refreshOverview() {
  const counts = {};
  for (const { element } of cards.values()) counts[element.dataset.status] = (counts[element.dataset.status] ?? 0) + 1;
  const parts = [`${cards.size} ${cards.size === 1 ? "agent" : "agents"}`];
  const inProgress = (counts.pending ?? 0) + (counts.provisioning ?? 0);
  if (counts.running) parts.push(`${counts.running} running`);
  if (inProgress) parts.push(`${inProgress} provisioning`);
  if (counts.failed) parts.push(`${counts.failed} failed`);
  const stalled = [...cards.values()].filter((card) => card.stalledSince !== null).length;
  if (stalled) parts.push(`${stalled} stalled`);
  const owner = $("#owner");
  owner.textContent = [owner.dataset.owner, parts.join(" · ")].filter(Boolean).join(" — ");
  owner.hidden = false;
}

function humanize(key) {
  const words = key.replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
