// How long a step took, has been running, or usually takes, and how long a workflow has been silent,
// as the dashboard words them. Pure: no DOM and no clock of its own; the caller passes "now", so one
// tick refreshes every card with the same instant.

/** An active step past this multiple of its expected duration is "slower than usual". */
export const SLOW_FACTOR = 1.5;

/** Milliseconds since the epoch of an RFC 3339 time (any number of fraction digits), or null. */
export function parseTime(text) {
  if (typeof text !== "string") return null;
  // The hub writes microseconds; Date.parse is only specified for milliseconds.
  const trimmed = text.replace(/(\.\d{3})\d+/, "$1");
  const ms = Date.parse(trimmed);
  return Number.isNaN(ms) ? null : ms;
}

/** "45 s", "2 min 10 s", "1 h 5 min": whole units, seconds dropped past an hour. */
export function formatDuration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  if (total < 60) return `${total} s`;
  if (total < 3600) {
    const minutes = Math.floor(total / 60);
    const rest = total % 60;
    return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
  }
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
}

/** "usually about 1 min 40 s": a median, so rounded to what a person would say. */
export function formatUsual(expectedSeconds) {
  if (expectedSeconds < 1) return "usually under 1 s";
  let rounded = Math.round(expectedSeconds);
  if (rounded >= 600) rounded = Math.round(rounded / 60) * 60;
  else if (rounded >= 60) rounded = Math.round(rounded / 10) * 10;
  return `usually about ${formatDuration(rounded)}`;
}

/**
 * What a step's row shows about time: `{text, title, slow}`, or null when there is nothing to say
 * (a pending step, or times the hub did not send).
 *
 * A completed step shows how long it took ("skipped" when the workflow jumped past it: it started
 * and ended at the same instant). The active step shows its elapsed time, with the owner's usual
 * time when the hub knows one. An active step without a start of its own started when the step
 * before it completed.
 *
 * When a provisioning fails, the hub marks the steps before the failed one completed at the moment
 * of the failure, including one that was still running (a workflow presumed lost at Creating Server
 * fails at Installing Dependencies). Such a step's end is the failure's, not one the workflow
 * reported, so it shows how long before the failure it started rather than how long it took.
 */
export function stepTiming(steps, index, now) {
  const step = steps[index];
  const expected = typeof step.expectedSeconds === "number" ? step.expectedSeconds : null;
  if (step.state === "completed") {
    const start = parseTime(step.startedAt);
    const end = parseTime(step.completedAt);
    if (start === null || end === null) return null;
    if (step.startedAt === step.completedAt) return { text: "skipped", title: "The workflow went past this step.", slow: false };
    const seconds = (end - start) / 1000;
    const failure = steps.find((other, at) => at > index && other.state === "error");
    if (failure && step.completedAt === failure.completedAt && start < end) {
      const before = seconds < 1 ? "under 1 s" : formatDuration(seconds);
      return {
        text: `started ${before} before the failure`,
        title: `The workflow reported no end for this step; the provisioning failed ${new Date(end).toLocaleString()}.`,
        slow: false,
      };
    }
    const took = seconds < 1 ? "under 1 s" : formatDuration(seconds);
    const usual = expected === null ? "" : ` (${formatUsual(expected)})`;
    return { text: took, title: `Took ${took}${usual}.`, slow: false };
  }
  if (step.state === "active") {
    const start = parseTime(step.startedAt) ?? (index > 0 ? parseTime(steps[index - 1].completedAt) : null);
    if (start === null) return null;
    // Clamped at 0: the browser's clock may run a little behind the hub's.
    const elapsed = Math.max(0, (now - start) / 1000);
    const text = expected === null ? formatDuration(elapsed) : `${formatDuration(elapsed)}, ${formatUsual(expected)}`;
    const slow = expected !== null && elapsed > expected * SLOW_FACTOR;
    return { text, title: `Started ${new Date(start).toLocaleString()}.`, slow };
  }
  if (step.state === "error") {
    const start = parseTime(step.startedAt);
    const end = parseTime(step.completedAt);
    if (start === null || end === null || end <= start) return null;
    const after = formatDuration((end - start) / 1000);
    return { text: `failed after ${after}`, title: `Failed ${new Date(end).toLocaleString()}.`, slow: false };
  }
  return null;
}

/** The stalled notice's sentence: who has gone quiet, and for how long. */
export function silenceText(status, stalledSinceMs, now) {
  const silent = formatDuration(Math.max(0, (now - stalledSinceMs) / 1000));
  return status === "running"
    ? `No heartbeat from the agent for ${silent}.`
    : `No word from the workflow for ${silent}.`;
}
