// The pane's few behaviours htmx cannot express: subscribe an expanded agent to its stream,
// resume after a reconnect from the last event held, copy the report, tick elapsed times.
(function () {
  "use strict";
  const pane = document.querySelector(".pane[ws-connect]");
  if (!pane) return;
  let socket = null;

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

  function tick() {
    const now = Date.now() / 1000;
    document.querySelectorAll(".elapsed[data-started]").forEach((el) => {
      const started = Number(el.dataset.started);
      if (!started) { el.textContent = ""; return; }
      const end = Number(el.dataset.finished) || now;
      el.textContent = `${Math.max(0, end - started).toFixed(1)}s`;
    });
  }
  setInterval(tick, 500);
  document.addEventListener("htmx:oobAfterSwap", tick);
  tick();
})();
