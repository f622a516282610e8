// The composer's two doors: the slash menu (read-only flows, launches at once) and the
// Orchestrator button (the launcher over the whole catalog). Both open an orchestrator pane.
(function () {
  "use strict";
  const flows = JSON.parse(document.getElementById("slash-flows").textContent);
  const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
  const panes = document.getElementById("orchestrator-panes");
  const launcher = document.getElementById("launcher");
  let launcherPane = null;

  async function launch(fields) {
    const body = new URLSearchParams(fields);
    const response = await fetch("/launch/", {
      method: "POST", body, headers: { "X-CSRFToken": csrf }, credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({ error: "the server did not answer" }));
    if (!response.ok) throw new Error(data.error || "launch failed");
    openPane(data);
    return data;
  }

  function openPane(run) {
    const pane = document.createElement("section");
    pane.className = "orchestrator-pane";
    pane.dataset.run = run.id;
    const head = document.createElement("header");
    const title = document.createElement("a");
    title.href = run.url;
    title.textContent = `${run.flow} · ${run.band}`;
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "×";
    close.setAttribute("aria-label", "close pane");
    close.addEventListener("click", () => pane.remove());
    head.append(title, close);
    const frame = document.createElement("iframe");
    frame.src = `${run.url}?embed=1`;
    frame.title = `${run.flow} run`;
    pane.append(head, frame);
    panes.prepend(pane);
  }

  function setupComposer(form) {
    const host = form.closest(".host-pane");
    const input = form.querySelector("textarea");
    const menu = form.querySelector(".slash-menu");
    const error = form.querySelector(".composer-error");
    let active = 0;
    let shown = [];

    const target = () => host.querySelector("input[name=target]").value;
    const command = () => input.value.match(/^\/([a-z-]*)(?:\s+([\s\S]*))?$/);

    function render() {
      const match = command();
      if (!match || input.value.includes(" ")) { menu.hidden = true; shown = []; return; }
      shown = flows.filter((f) => f.slug.startsWith(match[1]));
      active = Math.min(active, Math.max(0, shown.length - 1));
      menu.replaceChildren(...shown.map((f, i) => {
        const item = document.createElement("div");
        item.className = "slash-item" + (i === active ? " active" : "");
        item.setAttribute("role", "option");
        item.dataset.slug = f.slug;
        const name = document.createElement("strong");
        name.textContent = `/${f.slug}`;
        const about = document.createElement("span");
        about.textContent = f.description;
        item.append(name, about);
        item.addEventListener("mousedown", (e) => { e.preventDefault(); choose(f.slug); });
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
      if (!match) return;
      error.hidden = true;
      try {
        await launch({ flow: match[1], focus: match[2] || "", target: target(), band: "small",
                       origin: "slash", host_pane: host.dataset.pane });
        input.value = "";
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    }

    input.addEventListener("input", () => { active = 0; render(); });
    input.addEventListener("keydown", (event) => {
      if (!menu.hidden && shown.length) {
        if (event.key === "ArrowDown") { active = (active + 1) % shown.length; render(); event.preventDefault(); return; }
        if (event.key === "ArrowUp") { active = (active + shown.length - 1) % shown.length; render(); event.preventDefault(); return; }
        if (event.key === "Escape") { menu.hidden = true; event.preventDefault(); return; }
        if (event.key === "Enter" || event.key === "Tab") { choose(shown[active].slug); event.preventDefault(); return; }
      }
      if (event.key === "Enter" && !event.shiftKey && command()) { event.preventDefault(); submit(); }
    });
    form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
    form.querySelector(".orchestrator-button").addEventListener("click", () => {
      launcherPane = host;
      launcher.querySelector("input[name=target]").value = target();
      launcher.querySelector(".launcher-error").hidden = true;
      launcher.showModal();
    });
  }

  document.querySelectorAll(".composer").forEach(setupComposer);
  launcher.querySelector("[data-testid=launch]").addEventListener("click", async () => {
    const form = launcher.querySelector("form");
    const error = launcher.querySelector(".launcher-error");
    const fields = Object.fromEntries(new FormData(form));
    try {
      await launch({ ...fields, origin: "button", host_pane: launcherPane ? launcherPane.dataset.pane : "none" });
      launcher.close();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });
})();
