// The composer's two doors: the slash menu (read-only flows, launches at once) and the
// Orchestrator button (the launcher over the whole catalog). Both launch through the launch
// API a host app uses (/api/v1/runs, here with the session and the CSRF token) and open an
// orchestrator pane, which the server remembers (with each pane's project) for the next
// visit, on any device. The panes talk back with the postMessage events any host receives
// (docs/embedding.md): this page is the contract's first user.
(function () {
  "use strict";
  const flows = JSON.parse(document.getElementById("slash-flows").textContent);
  const bandFacts = JSON.parse(document.getElementById("band-facts").textContent);
  const PROTOCOL = "orchestrator-pane";
  const VERSION = 1;
  const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
  const panes = document.getElementById("orchestrator-panes");
  const launcher = document.getElementById("launcher");
  let launcherPane = null;
  let lastComposer = document.querySelector(".composer textarea");

  function post(url, fields) {
    return fetch(url, {
      method: "POST", body: new URLSearchParams(fields), headers: { "X-CSRFToken": csrf },
      credentials: "same-origin",
    });
  }

  async function launch(fields) {
    const response = await fetch("/api/v1/runs", {
      method: "POST", body: JSON.stringify(fields), credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    });
    const data = await response.json().catch(() => ({ error: "the server did not answer" }));
    if (!response.ok) throw new Error(data.error || "launch failed");
    // The workspace's own part: remember the pane, and draw it from the server's partial.
    const opened = await post("/workspace/layout/", { open: data.id });
    if (!opened.ok) throw new Error("the run started but its pane could not be opened; it is in Runs");
    openPane(await opened.text());
    return data;
  }

  // A run a pane opened (its Re-run): a pane of its own, remembered, beside the others.
  async function openRun(id) {
    if (panes.querySelector(`.orchestrator-pane[data-run="${CSS.escape(id)}"]`)) return;
    const opened = await post("/workspace/layout/", { open: id });
    if (opened.ok) openPane(await opened.text());
  }

  // The pane's markup comes from the server (the same partial a reload renders).
  function openPane(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html.trim();
    const pane = holder.content.firstElementChild;
    panes.prepend(pane);
    pane.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // Closing a pane only hides it: its run goes on, and stays in the runs history.
  panes.addEventListener("click", (event) => {
    const close = event.target.closest("[data-close]");
    if (!close) return;
    const pane = close.closest(".orchestrator-pane");
    pane.remove();
    post("/workspace/layout/", { close: pane.dataset.run });
  });

  // Fuzzy: a prefix beats a substring beats letters in order (best when they start words of
  // the slug, close together and early); the matched letters are marked.
  function fuzzy(query, text) {
    if (!query) return { score: 0, hits: [] };
    const at = text.indexOf(query);
    if (at >= 0) {
      const hits = Array.from({ length: query.length }, (_, i) => at + i);
      return { score: at === 0 ? 0 : 10 + at, hits };
    }
    const hits = [];
    let from = 0;
    for (const ch of query) {
      const found = text.indexOf(ch, from);
      if (found < 0) return null;
      hits.push(found);
      from = found + 1;
    }
    const wordStarts = hits.filter((i) => i === 0 || text[i - 1] === "-").length;
    const spread = hits[hits.length - 1] - hits[0] - (hits.length - 1);
    return { score: 100 + 2 * hits[0] + spread - 5 * wordStarts, hits };
  }
  function rank(query) {
    return flows
      .map((flow, order) => ({ flow, order, match: fuzzy(query, flow.slug) }))
      .filter((item) => item.match)
      .sort((a, b) => a.match.score - b.match.score || a.order - b.order);
  }
  function marked(text, hits) {
    const name = document.createElement("strong");
    name.append("/");
    [...text].forEach((ch, i) => {
      if (hits.includes(i)) {
        const mark = document.createElement("mark");
        mark.textContent = ch;
        name.append(mark);
      } else {
        name.append(ch);
      }
    });
    return name;
  }

  function setupComposer(form) {
    const host = form.closest(".host-pane");
    const input = form.querySelector("textarea");
    const menu = form.querySelector(".slash-menu");
    const error = form.querySelector(".composer-error");
    const hint = form.querySelector(".composer-hint");
    const targetInput = host.querySelector("input[name=target]");
    let active = 0;
    let shown = [];
    let saving = null;

    const target = () => targetInput.value;
    const command = () => input.value.match(/^\/([a-z-]*)(?:\s+([\s\S]*))?$/);

    function render() {
      const match = command();
      if (!match || input.value.includes(" ")) { menu.hidden = true; shown = []; return; }
      shown = rank(match[1]);
      active = Math.min(active, Math.max(0, shown.length - 1));
      menu.replaceChildren(...shown.map(({ flow, match: found }, i) => {
        const item = document.createElement("div");
        item.className = "slash-item" + (i === active ? " active" : "");
        item.setAttribute("role", "option");
        item.dataset.slug = flow.slug;
        const about = document.createElement("span");
        about.textContent = flow.description;
        item.append(marked(flow.slug, found.hits), about);
        item.addEventListener("mousedown", (e) => { e.preventDefault(); choose(flow.slug); });
        return item;
      }));
      menu.hidden = shown.length === 0;
    }

    function choose(slug) {
      input.value = `/${slug} `;
      menu.hidden = true;
      input.focus();
    }

    async function submit() {
      const match = command();
      error.hidden = true;
      if (!match) {
        // Only flows launch here; there is no model to chat with behind this box.
        hint.textContent = input.value.trim()
          ? "Only flows launch from here: start with / and a flow, e.g. /code-review the auth module."
          : "Type / for the flows.";
        hint.hidden = false;
        return;
      }
      hint.hidden = true;
      try {
        await launch({ flow: match[1], focus: match[2] || "", target: target(), band: "small",
                       fast: false, origin: "slash", host_pane: host.dataset.pane });
        input.value = "";
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    }

    input.addEventListener("focus", () => { lastComposer = input; });
    // Focus leaving the composer closes its menu, so only one menu is ever open; a click on
    // the menu itself keeps the focus (its items' mousedown is prevented) and so the menu.
    form.addEventListener("focusout", (event) => {
      if (!form.contains(event.relatedTarget)) menu.hidden = true;
    });
    input.addEventListener("input", () => { active = 0; hint.hidden = true; render(); });
    input.addEventListener("keydown", (event) => {
      if (!menu.hidden && shown.length) {
        if (event.key === "ArrowDown") { active = (active + 1) % shown.length; render(); event.preventDefault(); return; }
        if (event.key === "ArrowUp") { active = (active + shown.length - 1) % shown.length; render(); event.preventDefault(); return; }
        if (event.key === "Escape") { menu.hidden = true; event.preventDefault(); return; }
        if (event.key === "Enter" || event.key === "Tab") { choose(shown[active].flow.slug); event.preventDefault(); return; }
      }
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); submit(); }
    });
    form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
    form.querySelector(".orchestrator-button").addEventListener("click", () => {
      launcherPane = host;
      launcher.querySelector("input[name=target]").value = target();
      launcher.querySelector(".launcher-error").hidden = true;
      describeBands();
      launcher.showModal();
    });
    // Each pane's project is remembered for the next visit (saved a moment after typing).
    targetInput.addEventListener("input", () => {
      clearTimeout(saving);
      saving = setTimeout(() => post("/workspace/layout/", { pane: host.dataset.pane, target: target() }), 400);
    });
  }

  // Each band says which agents it runs and how long such runs took here (server-computed).
  const launcherForm = launcher.querySelector("form");
  function describeBands() {
    const facts = bandFacts[launcherForm.elements.flow.value] || {};
    launcher.querySelectorAll(".band-about").forEach((about) => {
      const fact = facts[about.dataset.band];
      about.textContent = fact ? ` — ${fact.agents}; ${fact.took}` : "";
    });
  }
  launcherForm.elements.flow.addEventListener("change", describeBands);

  document.querySelectorAll(".composer").forEach(setupComposer);
  // "Re-run with changes" lands here with the launcher filled in by the server: open it.
  if (launcher.hasAttribute("data-open-filled")) { describeBands(); launcher.showModal(); }
  launcher.querySelector("[data-testid=launcher-close]").addEventListener("click", () => launcher.close());
  // The Launch button and Enter in any field submit the form; it launches, never closes.
  launcherForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = launcher.querySelector(".launcher-error");
    const fields = Object.fromEntries(new FormData(launcherForm));
    error.hidden = true;
    try {
      await launch({
        flow: fields.flow, target: fields.target || "", band: fields.band || "small",
        fast: fields.fast === "1", web: fields.web === "1", focus: fields.focus || "",
        origin: "button", host_pane: launcherPane ? launcherPane.dataset.pane : "none",
      });
      launcher.close();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });

  // "/" or Ctrl+K (Cmd+K) from anywhere on the page: to the composer last used.
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
    const slash = event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey;
    const palette = event.key.toLowerCase() === "k" && (event.ctrlKey || event.metaKey);
    if (!slash && !palette) return;
    if (launcher.open) return;
    event.preventDefault();
    toComposer(slash);
  });
  // From the page, or from a pane (its composer.focus event): to the composer last used.
  function toComposer(slash) {
    if (launcher.open) return;
    window.focus();
    lastComposer.focus();
    if (slash && !lastComposer.value) {
      lastComposer.value = "/";
      lastComposer.dispatchEvent(new Event("input"));
    }
  }

  // A report sent to chat from any pane of this browser shows in the chat pane at once.
  const chatBody = document.querySelector("[data-pane=chat] .host-pane-body");
  function scrollChat() { chatBody.scrollTop = chatBody.scrollHeight; }
  async function refreshChat() {
    const response = await fetch("/workspace/chat/", { credentials: "same-origin" });
    if (!response.ok) return;
    const holder = document.createElement("template");
    holder.innerHTML = (await response.text()).trim();
    const log = holder.content.getElementById("chat-log");
    if (!log) return;
    document.getElementById("chat-log").replaceWith(log);
    if (window.orchestratorLocalTimes) window.orchestratorLocalTimes(log);
    scrollChat();
  }
  // The panes' events (docs/embedding.md), from this page's own frames only.
  function frameOf(source) {
    return [...panes.querySelectorAll(".orchestrator-pane iframe")].find((f) => f.contentWindow === source);
  }
  window.addEventListener("message", (event) => {
    const message = event.data;
    if (event.origin !== location.origin) return;
    if (!message || typeof message !== "object" || message.protocol !== PROTOCOL || message.version !== VERSION) return;
    const frame = frameOf(event.source);
    if (!frame) return;
    const status = frame.closest(".orchestrator-pane").querySelector(".pane-status");
    if (message.type === "run.status" && typeof message.label === "string") {
      status.textContent = message.label;
    } else if (message.type === "report.ready") {
      status.textContent = `report ready${message.confidence ? ` · confidence ${message.confidence}` : ""}`;
    } else if (message.type === "report.send-to-chat") {
      refreshChat();
    } else if (message.type === "run.opened" && typeof message.opened === "string") {
      openRun(message.opened);
    } else if (message.type === "composer.focus") {
      toComposer(message.key === "/");
    }
  });

  if ("BroadcastChannel" in window) {
    new BroadcastChannel("orchestrator-chat").addEventListener("message", (event) => {
      if (event.data && event.data.type === "chat") refreshChat();
    });
  }
  scrollChat();
})();
