// Light or dark: the system's choice unless the toggle says otherwise. The choice is kept in
// localStorage "theme" (auto | light | dark), the same key and attribute the Django admin's own
// toggle uses, so the app and the admin always agree. Loaded in <head> to avoid a flash.
(function () {
  "use strict";
  const MODES = ["auto", "light", "dark"];
  const root = document.documentElement;

  function stored() {
    try {
      const mode = localStorage.getItem("theme");
      return MODES.includes(mode) ? mode : "auto";
    } catch (e) {
      return "auto"; // storage refused (private mode): follow the system
    }
  }
  function apply(mode) {
    root.dataset.theme = mode;
    const button = document.querySelector("[data-testid=theme-toggle]");
    if (button) {
      button.textContent = { auto: "◐ auto", light: "☀ light", dark: "☾ dark" }[mode];
      button.title = `Theme: ${mode === "auto" ? "following the system" : mode} (click to change)`;
    }
  }
  function cycle() {
    const mode = MODES[(MODES.indexOf(stored()) + 1) % MODES.length];
    try { localStorage.setItem("theme", mode); } catch (e) { /* this page only */ }
    apply(mode);
  }

  apply(stored());
  // Another page of the app (a pane's frame, the admin) changed it.
  window.addEventListener("storage", (event) => { if (event.key === "theme") apply(stored()); });
  document.addEventListener("DOMContentLoaded", () => {
    apply(stored());
    const button = document.querySelector("[data-testid=theme-toggle]");
    if (button) button.addEventListener("click", cycle);
  });
})();
