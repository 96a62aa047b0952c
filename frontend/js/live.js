// Live data for a page: the server's event stream when it can be had, polling the same data when not.
//
// The browser's EventSource reconnects by itself after a dropped connection (resuming with
// Last-Event-ID). A stream the server refuses — 429 past the streams one client may open, 503 past
// the lab's total, any other error status — is closed for good instead: the page then polls at a
// modest interval, and the stream is tried again now and then (10 s, then up to every minute) so that
// the page goes live again once a slot frees up.

import { poller } from "./dom.js";

const RETRY_FIRST_MS = 10_000;
const RETRY_MAX_MS = 60_000;

/**
 * live({ stream, events, poll, pollMs, onState }) → { close(), restart(), pollNow(), get state() }
 *
 * stream:  () => the event stream's URL, asked at every (re)opening so it can carry a resume point;
 *          null for a page that only polls.
 * events:  { name: (data) => void }: each event's JSON data; after "end" the stream is closed and
 *          nothing more is read (the data no longer changes).
 * poll:    async () => done: reads the same data when there is no stream; true once nothing changes any more.
 * pollMs:  the polling interval.
 * onState: (state) => void, state one of "connecting", "live", "polling", "ended", "closed".
 */
export function live({ stream = null, events = {}, poll = null, pollMs = 5000, onState = () => {} }) {
  let source = null, polling = null, retryTimer = null, retryMs = RETRY_FIRST_MS;
  let state = null;

  const setState = (next) => {
    if (state === next) return;
    state = next;
    onState(next);
  };

  const stopPolling = () => { polling?.stop(); polling = null; };
  const closeStream = () => { source?.close(); source = null; clearTimeout(retryTimer); retryTimer = null; };

  // `now`: read at once (the stream just failed: what it would have said is not shown yet).
  const startPolling = (now = false) => {
    if (polling || !poll || state === "ended" || state === "closed") return;
    setState("polling");
    polling = poller(async () => {
      if (await poll()) { stopPolling(); closeStream(); setState("ended"); }
    }, pollMs);
    if (now) polling.now();
  };

  const finish = () => { closeStream(); stopPolling(); setState("ended"); };

  const open = () => {
    closeStream();
    if (!stream) { startPolling(); return; }
    const es = new EventSource(stream());
    source = es;
    if (!polling) setState("connecting");
    es.onopen = () => { stopPolling(); retryMs = RETRY_FIRST_MS; setState("live"); };
    for (const [name, handler] of Object.entries(events)) {
      if (name === "end") continue;
      es.addEventListener(name, (e) => { if (source === es) handler(JSON.parse(e.data)); });
    }
    es.addEventListener("end", (e) => {
      if (source !== es) return;
      finish();
      events.end?.(e.data ? JSON.parse(e.data) : null);
    });
    es.onerror = () => {
      // CONNECTING: the browser is reconnecting by itself. CLOSED: refused (429, 503, …): poll meanwhile.
      if (source !== es || es.readyState !== EventSource.CLOSED) return;
      source = null;
      startPolling(true);
      retryTimer = setTimeout(open, retryMs);
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    };
  };

  open();
  return {
    get state() { return state; },
    /** Open the stream again (e.g. a finished run queued again). */
    restart() { stopPolling(); state = null; open(); },
    /** Read now rather than at the next tick (after an action of the user's), when polling. */
    pollNow() { polling?.now(); },
    close() { closeStream(); stopPolling(); setState("closed"); },
  };
}
