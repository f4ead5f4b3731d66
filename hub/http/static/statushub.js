// status-hub client: live agent statuses over one websocket, with a REST polling fallback.
//
//   import { StatusHubClient } from "/static/statushub.js";
//   const hub = new StatusHubClient({ token, onStatus: (s) => render(s), onConnection: (c) => badge(c) });
//   const agents = await hub.listAgents();   // [{id, name, status}], status may be null
//   hub.watch(agents.map((a) => a.id));
//   const { events, next } = await hub.listEvents(agents[0].id);   // its history, newest first
//   const elapsed = hub.serverNow() - Date.parse(step.startedAt);  // the hub's clock, not the browser's
//
// Every status carries a per-agent `version`; the client hands on only versions newer than the
// last one it delivered, whichever path (socket, poll, list) brought them.

const SUBPROTOCOL = "status-hub.v1";
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_UNAVAILABLE = 4503;
const CLOSE_TOO_SLOW = 4408;
const CLOSE_SERVICE_RESTART = 1012;
const CLOSE_SILENT = 4000; // our own: the server stopped talking (no ping within the deadline)
// The Date header has whole seconds: clocks within this of each other are taken to agree, and a
// new reading within CLOCK_STEP_MS of the offset in use leaves it (so times shown do not jitter).
const CLOCK_SLACK_MS = 2000;
const CLOCK_STEP_MS = 1000;

/** Thrown by listAgents() (and reported through onError with code 4401) when the token is refused. */
export class AuthError extends Error {}

export class StatusHubClient {
  /**
   * @param {object} options
   * @param {string} [options.baseUrl] the hub's origin, e.g. "https://hub.example.com" (default: this page's)
   * @param {string} options.token a dashboard JWT; sent as a header or websocket subprotocol, never in a URL
   * @param {(status: object) => void} [options.onStatus] each newer status of a watched agent
   * @param {(state: "live"|"reconnecting"|"polling"|"offline") => void} [options.onConnection]
   * @param {(error: {agentId: string|null, code: number, message: string}) => void} [options.onError]
   * @param {number} [options.pollInterval] milliseconds between polls while the socket is down (3000)
   * @param {number} [options.failuresBeforePolling] socket failures in a row before polling starts (2)
   * @param {number} [options.maxBackoff] cap of the reconnect delay in milliseconds (10000)
   * @param {number} [options.silenceTimeout] reconnect when the server says nothing for this long (50000)
   */
  constructor({
    baseUrl = window.location.origin,
    token,
    onStatus = () => {},
    onConnection = () => {},
    onError = () => {},
    pollInterval = 3000,
    failuresBeforePolling = 2,
    maxBackoff = 10000,
    silenceTimeout = 50000,
  }) {
    if (!token) throw new AuthError("A dashboard token is required.");
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.options = { pollInterval, failuresBeforePolling, maxBackoff, silenceTimeout };
    this.handlers = { onStatus, onConnection, onError };
    this.token = token;
    this.watched = new Set();
    this.versions = new Map(); // agentId -> newest version delivered
    this.etags = new Map(); // agentId -> ETag of the last polled body
    this.state = null;
    this.socket = null;
    this.failures = 0;
    this.pollGeneration = 0;
    this.closed = false;
    this.socketRefused = false;
    // How far the hub's clock is ahead of this browser's, read from the Date header of its answers.
    this.clockOffsetMs = 0;
    this.timers = { reconnect: 0, poll: 0, silence: 0, stable: 0 };
    this.onOnline = () => this.#reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  /** The current connection state: "live", "reconnecting", "polling" or "offline". */
  get connection() {
    return this.state;
  }

  /**
   * The hub's time now, in milliseconds since the epoch: this browser's clock corrected by the offset
   * read from the hub's answers. Compare the hub's times with it ("running for 2 min"), so that a
   * browser whose clock is minutes off still shows true durations.
   */
  serverNow() {
    return Date.now() + this.clockOffsetMs;
  }

  /** The token owner's agents, `[{id, ownerId, name, createdAt, status}]`; their statuses count as delivered. */
  async listAgents() {
    const response = await this.#get("/api/agents");
    if (!response.ok) throw await this.#httpError(response, "Listing the agents");
    const agents = await response.json();
    for (const agent of agents) if (agent.status) this.#newer(agent.status);
    return agents;
  }

  /**
   * One page of an agent's history, newest first: `{events, next}`. Pass `next` back as `before`
   * for the page of older events; it is null on the oldest page. `limit` is 1 to 200 (the hub's
   * default: 50).
   */
  async listEvents(agentId, { limit, before } = {}) {
    const query = new URLSearchParams();
    if (limit !== undefined) query.set("limit", String(limit));
    if (before !== undefined && before !== null) query.set("before", String(before));
    const suffix = query.toString() ? `?${query}` : "";
    const response = await this.#get(`/api/agents/${encodeURIComponent(agentId)}/events${suffix}`);
    if (!response.ok) throw await this.#httpError(response, "Reading the agent's history");
    return response.json();
  }

  /** Start receiving the statuses of these agents (opens the socket on first use). */
  watch(agentIds) {
    const added = [...agentIds].filter((id) => !this.watched.has(id));
    for (const id of added) this.watched.add(id);
    if (this.closed) return;
    if (!this.socket && !this.timers.reconnect && !this.socketRefused) this.#connect();
    else if (added.length) this.#subscribe(added);
    if (this.state === "polling") for (const id of added) this.#pollOne(id);
  }

  /** Stop receiving these agents' statuses; watching them again starts from a fresh snapshot. */
  unwatch(agentIds) {
    const removed = [...agentIds].filter((id) => this.watched.delete(id));
    for (const id of removed) {
      this.versions.delete(id);
      this.etags.delete(id);
    }
    if (removed.length) this.#send({ type: "unsubscribe", agentIds: removed });
  }

  /** Close the socket, stop polling and reconnecting. */
  close() {
    this.closed = true;
    window.removeEventListener("online", this.onOnline);
    this.#stopPolling();
    for (const name of Object.keys(this.timers)) this.#clearTimer(name);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "Dashboard closed.");
    this.#setState("offline");
  }

  // --- websocket -------------------------------------------------------------------------------

  #connect() {
    this.#clearTimer("reconnect");
    if (this.closed) return;
    if (this.state !== "polling") this.#setState("reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.#socketUrl(), [SUBPROTOCOL, `bearer.${this.token}`]);
    } catch {
      // A token a subprotocol cannot carry, or a blocked URL: REST may still work.
      this.#socketFailed({ wasLive: false });
      return;
    }
    this.socket = socket;
    let heard = false;
    const hear = () => {
      this.#armSilence(() => finish(CLOSE_SILENT, ""));
      if (heard) return;
      heard = true;
      this.#clearTimer("stable");
      this.#becameLive();
    };
    const finish = (code, reason) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.#clearTimer("stable");
      this.#clearTimer("silence");
      // Closing is a no-op on a socket that already closed; on a half-open one it frees it now.
      socket.close(1000);
      this.#onClose(code, reason, heard);
    };
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.#subscribe([...this.watched]);
      this.#armSilence(() => finish(CLOSE_SILENT, ""));
      // A proxy that accepts and drops sockets at once would flip the badge to live for an
      // instant: the socket counts as live once the server speaks or it has stayed open a second.
      this.timers.stable = window.setTimeout(hear, 1000);
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      hear();
      this.#onFrame(event.data);
    });
    socket.addEventListener("close", (event) => finish(event.code, event.reason));
  }

  #becameLive() {
    this.failures = 0;
    this.#stopPolling();
    this.#setState("live");
  }

  #onClose(code, reason, wasLive) {
    if (this.closed) return;
    if (code === CLOSE_UNAUTHENTICATED) {
      this.#stop({ agentId: null, code, message: reason || "The dashboard token was refused." });
      return;
    }
    if (wasLive && (code === CLOSE_TOO_SLOW || code === CLOSE_SERVICE_RESTART || code === CLOSE_SILENT)) {
      // Expected on a deploy or a stalled tab: come back at once (jittered so a restart is not a stampede).
      this.#setState("reconnecting");
      this.#scheduleReconnect(200 + Math.random() * 1300);
      return;
    }
    if (code === CLOSE_FORBIDDEN) {
      // The hub refuses this page's Origin: no retry changes that, but REST answers a bearer token.
      this.socketRefused = true;
      this.handlers.onError({ agentId: null, code, message: reason || "The hub refused this page's origin." });
      this.#startPolling();
      return;
    }
    this.#socketFailed({ wasLive });
  }

  #socketFailed({ wasLive }) {
    // A socket that was live and dropped starts the count again; one that never got going adds to it.
    this.failures = wasLive ? 1 : this.failures + 1;
    if (this.failures >= this.options.failuresBeforePolling) this.#startPolling();
    else this.#setState("reconnecting");
    const step = Math.min(this.options.maxBackoff, 500 * 2 ** (this.failures - 1));
    this.#scheduleReconnect(step / 2 + Math.random() * (step / 2));
  }

  #scheduleReconnect(delay) {
    this.#clearTimer("reconnect");
    this.timers.reconnect = window.setTimeout(() => this.#connect(), delay);
  }

  #reconnectNow() {
    if (!this.closed && !this.socket && this.timers.reconnect) this.#connect();
  }

  #armSilence(onSilence) {
    // The hub pings every ~20 s; a socket silent for longer is half-open (a sleeping laptop, a
    // dropped NAT entry) and would otherwise look live forever.
    this.#clearTimer("silence");
    this.timers.silence = window.setTimeout(onSilence, this.options.silenceTimeout);
  }

  #subscribe(agentIds) {
    if (!agentIds.length) return;
    const versions = {};
    for (const id of agentIds) if (this.versions.has(id)) versions[id] = this.versions.get(id);
    this.#send({ type: "subscribe", agentIds, versions });
  }

  #send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  #onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "status") {
      this.#deliver(frame.data);
    } else if (frame.type === "error") {
      // One frame lists every agent refused for the same reason (agentId alone names just one).
      const agentIds = frame.agentIds ?? (frame.agentId ? [frame.agentId] : []);
      if (frame.code === CLOSE_FORBIDDEN || frame.code === 4404) agentIds.forEach((id) => this.watched.delete(id));
      for (const agentId of agentIds.length ? agentIds : [null]) {
        this.handlers.onError({ agentId, code: frame.code, message: frame.message });
      }
      if (agentIds.length && frame.code === CLOSE_UNAVAILABLE) {
        // The hub's database was briefly unreachable: ask again a little later.
        const retry = () => this.#subscribe(agentIds.filter((id) => this.watched.has(id)));
        window.setTimeout(retry, 2000 + Math.random() * 3000);
      }
    } else if (frame.type === "ping") {
      // The server's view of what we have; a higher number means a frame got lost on the way.
      const versions = frame.versions || {};
      for (const [id, version] of Object.entries(versions)) {
        if (this.watched.has(id) && version > (this.versions.get(id) ?? 0)) this.#pollOne(id);
      }
      // An agent we watch that the server does not list is not subscribed there: subscribe again.
      const missing = [...this.watched].filter((id) => !(id in versions));
      this.#subscribe(missing);
    }
  }

  #socketUrl() {
    const url = new URL("/api/ws", this.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  // --- polling ---------------------------------------------------------------------------------

  #startPolling() {
    if (this.state === "polling") return;
    this.#setState("polling");
    // A tick still awaiting its requests when polling stops and restarts must not start a
    // second loop: each loop carries its generation and ends when a newer one exists.
    const generation = ++this.pollGeneration;
    const tick = async () => {
      await Promise.all([...this.watched].map((id) => this.#pollOne(id)));
      if (generation !== this.pollGeneration || this.state !== "polling") return;
      const delay = this.options.pollInterval * (0.9 + Math.random() * 0.2);
      this.timers.poll = window.setTimeout(tick, delay);
    };
    this.timers.poll = window.setTimeout(tick, 0);
  }

  #stopPolling() {
    this.pollGeneration += 1;
    this.#clearTimer("poll");
  }

  async #pollOne(agentId) {
    const headers = {};
    const etag = this.etags.get(agentId);
    if (etag) headers["If-None-Match"] = etag;
    let response;
    try {
      response = await this.#get(`/api/agents/${encodeURIComponent(agentId)}/instance`, headers);
    } catch {
      return; // offline for now; the next tick tries again
    }
    if (response.status === 200) {
      const tag = response.headers.get("ETag");
      if (tag && this.watched.has(agentId)) this.etags.set(agentId, tag);
      this.#deliver(await response.json());
    } else if (response.status === 401) {
      this.#stop({ agentId: null, code: CLOSE_UNAUTHENTICATED, message: await detailOf(response) });
    } else if (response.status === 403) {
      this.watched.delete(agentId);
      this.handlers.onError({ agentId, code: CLOSE_FORBIDDEN, message: await detailOf(response) });
    }
    // 304: nothing new. 404: not provisioned yet (or gone); keep asking, it is cheap.
  }

  // --- shared ----------------------------------------------------------------------------------

  #deliver(status) {
    if (!status || !this.watched.has(status.agentId)) return;
    if (this.#newer(status)) this.handlers.onStatus(status);
  }

  #newer(status) {
    if (status.version <= (this.versions.get(status.agentId) ?? 0)) return false;
    this.versions.set(status.agentId, status.version);
    return true;
  }

  #stop(error) {
    this.close();
    this.handlers.onError(error);
  }

  async #get(path, headers = {}) {
    const sent = Date.now();
    const response = await fetch(this.baseUrl + path, {
      headers: { Accept: "application/json", Authorization: `Bearer ${this.token}`, ...headers },
      // We send If-None-Match ourselves and want the 304, not the browser cache's copy.
      cache: "no-store",
      credentials: "omit",
    });
    this.#readClock(response.headers.get("Date"), sent, Date.now());
    return response;
  }

  // The hub read its clock somewhere in the second its Date header names, at about the middle of the
  // round trip. No header (another origin that does not expose it), no reading.
  #readClock(date, sent, received) {
    const hub = date ? Date.parse(date) : Number.NaN;
    if (Number.isNaN(hub)) return;
    let offset = hub + 500 - (sent + received) / 2;
    if (Math.abs(offset) < CLOCK_SLACK_MS) offset = 0;
    if (Math.abs(offset - this.clockOffsetMs) >= CLOCK_STEP_MS) this.clockOffsetMs = Math.round(offset);
  }

  async #httpError(response, what) {
    const message = await detailOf(response);
    if (response.status === 401) return new AuthError(message);
    return new Error(`${what} failed with HTTP ${response.status}: ${message}`);
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.handlers.onConnection(state);
  }

  #clearTimer(name) {
    window.clearTimeout(this.timers[name]);
    this.timers[name] = 0;
  }
}

async function detailOf(response) {
  try {
    const body = await response.json();
    return body.detail || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}
