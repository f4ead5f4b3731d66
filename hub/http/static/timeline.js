// An agent's timeline: its history from GET /api/agents/{id}/events in a modal dialog, newest first,
// a page at a time, and kept current while open: each new version of the agent adds the events
// since the newest shown at the top. Everything from the server is inserted as text, never as HTML.
import { AuthError } from "./statushub.js";
import { parseTime } from "./durations.js";

const PAGE_SIZE = 25;
const KIND_TEXT = {
  status: "Callback",
  stalled: "Stalled",
  resumed: "Resumed",
  timed_out: "Timed out",
};

export class TimelineDialog {
  /**
   * @param {HTMLDialogElement} dialog the #timeline dialog of index.html
   * @param {import("./statushub.js").StatusHubClient} client
   * @param {(error: Error) => void} onAuthError a refused token: the page says so and stops
   */
  constructor(dialog, client, onAuthError) {
    this.dialog = dialog;
    this.client = client;
    this.onAuthError = onAuthError;
    this.agentId = null;
    this.next = null;
    this.opener = null;
    // Each open (and each page asked for) gets a number: an answer for an older one is dropped,
    // so a slow page of one agent never lands in the list of the next agent opened.
    this.request = 0;
    // Each open gets a number too; a refresh belongs to the open it started in.
    this.opened = 0;
    this.firstPageShown = false;
    this.refreshing = null; // the open whose refresh is in flight, or null
    this.refreshAgain = false; // a version came while one was in flight, or before the first page
    this.list = dialog.querySelector(".events");
    this.state = dialog.querySelector(".timeline-state");
    this.older = dialog.querySelector(".timeline-older");
    this.retry = dialog.querySelector(".timeline-retry");
    this.closeButton = dialog.querySelector(".timeline-close");
    this.closeButton.addEventListener("click", () => dialog.close());
    // Both ask for the page that is next: "Try again" after the first page failed, "Load older
    // events" for the page after the last one shown (again, when that failed).
    this.older.addEventListener("click", () => this.#load());
    this.retry.addEventListener("click", () => this.#load());
    dialog.addEventListener("close", () => {
      this.request += 1;
      this.opened += 1;
      this.agentId = null;
      this.opener?.focus();
      this.opener = null;
    });
    // A click on the backdrop (the dialog element itself, outside its content) closes it.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
  }

  /** Show the timeline of one agent, from its newest event. */
  open(agentId, agentName, opener) {
    this.agentId = agentId;
    this.next = null;
    this.opener = opener;
    this.opened += 1;
    this.firstPageShown = false;
    this.refreshAgain = false;
    this.dialog.querySelector(".timeline-agent").textContent = agentName;
    this.dialog.dataset.agentId = agentId;
    this.list.replaceChildren();
    this.older.hidden = true;
    this.retry.hidden = true;
    if (!this.dialog.open) this.dialog.showModal();
    this.#load();
  }

  async #load() {
    const request = ++this.request;
    const agentId = this.agentId;
    const before = this.next;
    this.older.disabled = true;
    this.retry.disabled = true;
    this.#say(before === null ? "Loading the timeline…" : "Loading older events…");
    let page;
    try {
      page = await this.client.listEvents(agentId, { limit: PAGE_SIZE, before });
    } catch (error) {
      if (request !== this.request || this.#refused(error)) return;
      // The same page can be asked for again: the first through "Try again", an older one
      // through "Load older events", which stays.
      // fetch() rejects with a TypeError when no answer came at all (offline, connection refused).
      const what = before === null ? "the timeline" : "older events";
      this.#say(error instanceof TypeError ? `Could not reach the hub to load ${what}.` : error.message, true);
      this.retry.hidden = before !== null;
      this.retry.disabled = false;
      this.older.hidden = before === null;
      this.older.disabled = false;
      this.#keepFocus();
      return;
    }
    if (request !== this.request) return;
    this.list.append(...page.events.map(eventItem));
    this.next = page.next ?? null;
    this.retry.hidden = true;
    this.older.hidden = this.next === null;
    this.older.disabled = false;
    this.#keepFocus();
    this.#sayCount();
    if (before === null) {
      this.firstPageShown = true;
      // A version that came while the first page loaded may have been answered before its event.
      if (this.refreshAgain) this.refresh(agentId);
    }
  }

  /** A newer version of `agentId` arrived: when its timeline is open, add its new events on top. */
  refresh(agentId) {
    if (agentId !== this.agentId) return;
    if (!this.firstPageShown || this.refreshing === this.opened) {
      this.refreshAgain = true; // one more look once the first page or the refresh in flight is done
      return;
    }
    this.#refresh();
  }

  async #refresh() {
    const opened = this.opened;
    const agentId = this.agentId;
    this.refreshing = opened;
    try {
      do {
        this.refreshAgain = false;
        let page;
        try {
          page = await this.client.listEvents(agentId, { limit: PAGE_SIZE });
        } catch (error) {
          // Unless the token was refused, what is shown stays, and the agent's next version looks again.
          if (opened === this.opened) this.#refused(error);
          return;
        }
        if (opened !== this.opened) return;
        this.#merge(page);
      } while (this.refreshAgain);
    } finally {
      if (this.refreshing === opened) this.refreshing = null;
    }
  }

  // The events of the newest page that are newer than the newest shown go on top. When all of them
  // are, more happened than a page holds: the list starts over from that page (its "older" cursor
  // included), and a page of older events still loading for the list before is dropped.
  #merge(page) {
    const newest = this.list.firstElementChild?.dataset.eventId;
    const fresh = newest === undefined ? page.events : page.events.filter((e) => BigInt(e.id) > BigInt(newest));
    if (fresh.length === 0) return;
    if (newest === undefined || (fresh.length === page.events.length && page.next)) {
      this.request += 1;
      this.list.replaceChildren(...page.events.map(eventItem));
      this.next = page.next ?? null;
      this.older.hidden = this.next === null;
      this.older.disabled = false;
      this.retry.hidden = true;
      this.#keepFocus();
    } else {
      this.list.prepend(...fresh.map(eventItem));
    }
    this.#sayCount(fresh.length);
  }

  // A refused token closes the dialog, and the page says so and stops; whether it was that.
  #refused(error) {
    if (!(error instanceof AuthError)) return false;
    this.dialog.close();
    this.onAuthError(error);
    return true;
  }

  #sayCount(added = 0) {
    const count = this.list.children.length;
    if (count === 0) {
      this.#say("No events yet: nothing has been reported for this agent.");
      return;
    }
    const news = added === 0 ? "" : `${added} new ${added === 1 ? "event" : "events"}; `;
    const all = this.next === null ? "; that is all of them." : ".";
    this.#say(`${news}${count} ${count === 1 ? "event" : "events"}, newest first${all}`);
  }

  // A button that was clicked and is now hidden (Try again after it worked, Load older events after
  // the last page) took the focus with it: it goes to the button that is there now, or Close.
  #keepFocus() {
    if (!this.dialog.open || this.dialog.contains(document.activeElement)) return;
    const target = [this.retry, this.older].find((button) => !button.hidden) ?? this.closeButton;
    target.focus();
  }

  #say(text, isError = false) {
    this.state.textContent = text;
    if (isError) this.state.dataset.error = "true";
    else delete this.state.dataset.error;
  }
}

function eventItem(event) {
  const item = document.createElement("li");
  item.className = "event";
  item.dataset.kind = event.kind;
  item.dataset.applied = String(Boolean(event.applied));
  item.dataset.eventId = event.id;

  const at = document.createElement("time");
  at.className = "event-time";
  const ms = parseTime(event.at);
  at.dateTime = event.at;
  if (ms !== null) {
    const date = new Date(ms);
    const today = date.toDateString() === new Date().toDateString();
    at.textContent = today ? date.toLocaleTimeString() : date.toLocaleString();
    at.title = date.toLocaleString();
  } else {
    at.textContent = event.at;
  }

  const body = document.createElement("div");
  body.className = "event-body";
  const title = document.createElement("p");
  title.className = "event-title";
  const kind = document.createElement("span");
  kind.className = "event-kind";
  kind.textContent = KIND_TEXT[event.kind] ?? event.kind;
  title.append(kind);
  for (const [name, value] of [["event-status", event.status], ["event-step", event.step]]) {
    if (!value) continue;
    const part = document.createElement(name === "event-step" ? "code" : "span");
    part.className = name;
    part.textContent = value;
    title.append(" ", part);
  }
  body.append(title);
  if (event.error) {
    const error = document.createElement("p");
    error.className = "event-error";
    error.textContent = event.error;
    body.append(error);
  }
  const meta = document.createElement("p");
  meta.className = "event-meta";
  const parts = [event.applied ? "applied" : "not applied (no change)", `v${event.version}`];
  if (event.deliveryId) parts.push(`delivery ${event.deliveryId}`);
  meta.textContent = parts.join(" · ");
  body.append(meta);

  item.append(at, body);
  return item;
}
