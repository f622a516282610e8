// The embedded pane's side of the host contract (docs/embedding.md, version in #pane-host):
// it tells the framing page about the run, and obeys the few commands the page may send.
// Both only with an origin the server allows (the site and ORCHESTRATOR_EMBED_ORIGINS):
// a message is never posted to "*", and one from any other origin or of any other shape is
// ignored.
(function () {
  "use strict";
  const pane = document.querySelector(".pane[data-run]");
  if (!pane || window.parent === window) return;
  const config = JSON.parse(document.getElementById("pane-host").textContent);
  const PROTOCOL = "orchestrator-pane";
  const run = pane.dataset.run;

  // The framing page's origin: Chromium and Safari name it; elsewhere the referrer's origin
  // (a wrong guess only means the message is not delivered: postMessage checks it).
  function parentOrigin() {
    if (location.ancestorOrigins && location.ancestorOrigins.length) return location.ancestorOrigins[0];
    try { return new URL(document.referrer).origin; } catch (e) { return null; }
  }
  const host = parentOrigin();
  const heard = config.origins.includes(host);

  // Re-run in a frame: the new run opens in a pane of its own beside this one (the host's
  // part: `run.opened`); a frame no allowed host listens to opens it in place instead.
  document.body.addEventListener("orchestrator:run-opened", (event) => {
    const opened = event.detail || {};
    if (typeof opened.run !== "string" || typeof opened.pane_url !== "string") return;
    if (heard) post("run.opened", { opened: opened.run, pane_url: opened.pane_url });
    else location.assign(`${opened.pane_url}?embed=1`);
  });
  if (!heard) return;

  function post(type, fields) {
    window.parent.postMessage(
      Object.assign({ protocol: PROTOCOL, version: config.version, type: type, run: run }, fields),
      host);
  }

  function report() {
    const article = document.querySelector("#report article.report");
    if (!article) return null;
    return {
      summary: document.getElementById("report-summary").value,
      confidence: article.dataset.confidence,
      markdown: document.getElementById("report-source").value,
    };
  }

  // run.status on load and on every change of status or words; report.ready once.
  let lastStatus = null;
  let reportSent = false;
  function tell() {
    const badge = document.querySelector("[data-testid=run-status]");
    if (badge) {
      const now = { status: badge.dataset.status, label: badge.dataset.label,
                    finished: badge.hasAttribute("data-finished") };
      const key = JSON.stringify(now);
      if (key !== lastStatus) { lastStatus = key; post("run.status", now); }
    }
    const written = report();
    if (written && !reportSent) {
      reportSent = true;
      post("report.ready", { status: badge ? badge.dataset.status : "",
                             summary: written.summary, confidence: written.confidence });
    }
  }
  document.addEventListener("htmx:oobAfterSwap", tell);
  tell();

  // "Send to chat" (once the server accepted it): the report goes to the host's own chat.
  document.body.addEventListener("htmx:afterRequest", (event) => {
    const button = event.detail.elt;
    if (!button.matches || !button.matches("[data-testid=send-to-chat]") || !event.detail.successful) return;
    const written = report();
    if (written) post("report.send-to-chat", written);
  });

  // "/" and Ctrl+K (Cmd+K) belong to the host's composer, which a frame cannot reach.
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
    const slash = event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey;
    const palette = event.key.toLowerCase() === "k" && (event.ctrlKey || event.metaKey);
    if (!slash && !palette) return;
    event.preventDefault();
    post("composer.focus", { key: slash ? "/" : "ctrl+k" });
  });

  // Commands from the host: exactly these shapes, for this run, from the framing page.
  const commands = {
    "run.cancel": () => {
      const cancel = document.querySelector("[data-testid=cancel]");
      if (cancel) cancel.click();
    },
    "agent.expand": (message) => {
      if (typeof message.agent !== "string") return;
      const details = [...pane.querySelectorAll("details[data-key]")]
        .find((d) => d.dataset.key === message.agent);
      if (!details) return;
      details.open = true;
      details.scrollIntoView({ block: "start" });
    },
    "report.scroll": () => {
      const target = document.getElementById("report");
      if (target) target.scrollIntoView({ block: "start" });
    },
  };
  window.addEventListener("message", (event) => {
    const message = event.data;
    if (event.source !== window.parent || event.origin !== host) return;
    if (!message || typeof message !== "object" || message.protocol !== PROTOCOL) return;
    if (message.version !== config.version || message.run !== run) return;
    if (Object.prototype.hasOwnProperty.call(commands, message.type)) commands[message.type](message);
  });
})();
