// The pane's few behaviours htmx cannot express: subscribe an expanded agent to its stream,
// resume after a reconnect from the last event held, copy the report, tick elapsed times,
// keep a live timeline moving, tell the workspace about chat.
(function () {
  "use strict";
  const pane = document.querySelector(".pane[ws-connect]");
  if (!pane) return;
  let socket = null;
  let skew = 0; // server clock minus this browser's clock, in ms
  let askedForSpan = null; // the axis span a refresh was last asked for

  function lastId(stepId) {
    const last = document.querySelector(`#stream-${stepId} > [data-id]:last-child`);
    return last ? Number(last.dataset.id) : 0;
  }
  function send(message) {
    if (socket) socket.send(JSON.stringify(message));
  }
  function expanded() {
    const have = {};
    pane.querySelectorAll("details[data-step][open]").forEach((d) => {
      have[d.dataset.step] = lastId(d.dataset.step);
    });
    return have;
  }

  pane.addEventListener("htmx:wsOpen", (event) => {
    socket = event.detail.socketWrapper;
    pane.dataset.connections = String(Number(pane.dataset.connections || 0) + 1);
    send({ type: "resume", have: expanded() });
  });
  pane.addEventListener("htmx:wsClose", () => { socket = null; });
  pane.addEventListener("toggle", (event) => {
    const details = event.target;
    if (!details.matches || !details.matches("details[data-step]")) return;
    const step = Number(details.dataset.step);
    send(details.open ? { type: "subscribe", step, after: lastId(step) }
                      : { type: "unsubscribe", step });
  }, true);

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    navigator.clipboard.writeText(source.value).then(
      () => { button.textContent = "Copied"; },
      () => { button.textContent = "Copy failed"; });
  });

  // A report sent to the workspace chat: every open workspace (this pane's host included)
  // shows it at once.
  document.body.addEventListener("htmx:afterRequest", (event) => {
    const button = event.detail.elt;
    if (!button.matches || !button.matches("[data-testid=send-to-chat]") || !event.detail.successful) return;
    if ("BroadcastChannel" in window) {
      const channel = new BroadcastChannel("orchestrator-chat");
      channel.postMessage({ type: "chat", run: pane.dataset.run });
      channel.close();
    }
  });

  function calibrate() {
    const clock = document.getElementById("run-clock");
    const serverNow = clock ? Number(clock.dataset.now) : 0;
    if (serverNow) skew = serverNow - Date.now();
  }
  const now = () => Date.now() + skew;

  // The rule of runs.labels.duration (with tenths): 12.3 s; 4 min 18.2 s; 1 h 02 min.
  function duration(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    if (seconds < 3600) {
      const tenths = Math.floor(seconds * 10);
      return `${Math.floor(tenths / 600)} min ${((tenths % 600) / 10).toFixed(1)} s`;
    }
    const minutes = Math.floor((seconds % 3600) / 60);
    return `${Math.floor(seconds / 3600)} h ${String(minutes).padStart(2, "0")} min`;
  }

  function tickElapsed(at) {
    document.querySelectorAll(".elapsed").forEach((el) => {
      const started = Number(el.dataset.started);
      if (!started) return;
      const end = Number(el.dataset.finished) || at;
      // Idle gaps before retries are not part of a run's elapsed time.
      el.textContent = duration(Math.max(0, end - started - (Number(el.dataset.idle) || 0)) / 1000);
    });
  }

  function tickTimeline(at) {
    const timeline = document.getElementById("run-timeline");
    if (!timeline || !timeline.classList.contains("live")) return;
    const span = Number(timeline.dataset.span);
    const elapsed = (at - Number(timeline.dataset.origin)) / 1000;
    if (!span || elapsed < 0) return;
    const percent = (seconds) => `${Math.min(100, Math.max(0, seconds / span * 100)).toFixed(3)}%`;
    timeline.querySelectorAll(".seg[data-open]").forEach((seg) => {
      seg.style.width = percent(Math.max(0, elapsed - Number(seg.dataset.start)));
    });
    const line = timeline.querySelector(".tl-now");
    if (line) line.style.setProperty("--at", Math.min(1, elapsed / span).toFixed(4));
    if (elapsed > span && askedForSpan !== span) {
      askedForSpan = span; // once per axis: the answer brings a longer one
      send({ type: "refresh" });
    }
  }

  // An agent waiting to retry: its "next try in N s" counts down between redraws, by the
  // rule of runs.labels (whole seconds, never below 1 s: the retry's own redraw ends it).
  function tickCountdowns(at) {
    document.querySelectorAll(".words[data-until]").forEach((el) => {
      const seconds = Math.max(1, Math.round((Number(el.dataset.until) - at) / 1000));
      const text = el.textContent.replace(/next try in \d+ s$/, `next try in ${seconds} s`);
      if (text !== el.textContent) el.textContent = text;
    });
  }

  function tick() {
    const at = now();
    tickElapsed(at);
    tickTimeline(at);
    tickCountdowns(at);
  }
  setInterval(tick, 100);
  document.addEventListener("htmx:oobAfterSwap", () => {
    calibrate();
    tick();
  });
  calibrate();
  tick();
})();
