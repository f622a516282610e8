// An action the server refuses (any 4xx or 5xx answer to an htmx request) shows the server's
// sentence beside the control that asked, in an aria-live line: htmx itself swaps nothing
// for an error answer, so without this the click would seem to do nothing. One handler for
// every action on every page.
(function () {
  "use strict";
  const MAX_CHARS = 400;

  // The sentence of an answer: an error page (the full-page 403) by its refusal line or its
  // heading, any other answer (a view's bare sentence) by its text. Parsed inertly, as a
  // document nothing of which runs or loads, and read as text only.
  function sentence(xhr) {
    const page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
    const line = page.querySelector("[data-testid=refusal]") || page.querySelector("main h1");
    let text = ((line || page.body || {}).textContent || "").replace(/\s+/g, " ").trim();
    if (!text) text = `The server refused this (${xhr.status}).`;
    return text.length > MAX_CHARS ? `${text.slice(0, MAX_CHARS)}…` : text;
  }

  // The line right after the control (a form's own, for a button in a form).
  function lineFor(control) {
    const anchor = control.closest("form") || control;
    let line = anchor.nextElementSibling;
    if (!line || !line.matches("[data-action-error]")) {
      line = document.createElement("span");
      line.className = "action-error";
      line.dataset.actionError = "";
      line.dataset.testid = "action-error";
      line.setAttribute("role", "status");
      line.setAttribute("aria-live", "polite");
      anchor.after(line);
    }
    return line;
  }

  document.addEventListener("htmx:responseError", (event) => {
    const control = event.detail.elt;
    if (!control || !control.isConnected) return;
    lineFor(control).textContent = sentence(event.detail.xhr);
  });
  // A later success of the same control clears its old refusal.
  document.addEventListener("htmx:afterRequest", (event) => {
    if (!event.detail.successful) return;
    const control = event.detail.elt;
    const anchor = control && control.isConnected ? control.closest("form") || control : null;
    const line = anchor ? anchor.nextElementSibling : null;
    if (line && line.matches("[data-action-error]")) line.remove();
  });
})();
