// Times in the reader's own time zone: every <time datetime> shows a clock time (24 h), and
// the full date and time on hover. Runs on load and after every htmx swap.
(function () {
  "use strict";
  const clock = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });
  const day = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  const today = () => day.format(new Date());

  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]:not([data-local])").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) return;
      const date = day.format(when);
      // A clock time alone when it is today; the date too otherwise (the history's rows).
      el.textContent = el.hasAttribute("data-date") && date !== today()
        ? `${date} ${clock.format(when)}` : clock.format(when);
      el.title = full.format(when);
      el.dataset.local = "1";
    });
  }
  window.orchestratorLocalTimes = localTimes;
  document.addEventListener("DOMContentLoaded", () => localTimes(document));
  document.addEventListener("htmx:afterSettle", () => localTimes(document));
  document.addEventListener("htmx:oobAfterSwap", () => localTimes(document));
})();
