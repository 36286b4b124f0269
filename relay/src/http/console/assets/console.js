// sapbridge console: live updates of the overview (Server-Sent Events) and the
// explorer's copy button. No inline script anywhere: the Content-Security-Policy
// allows scripts only from the relay itself.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("[data-live]");
  if (live && window.EventSource) {
    const source = new EventSource(live.getAttribute("data-live"));
    source.addEventListener("overview", (event) => {
      // Server-rendered, escaped HTML of the relay's own overview.
      live.innerHTML = event.data;
      live.setAttribute("data-updated", new Date().toISOString());
    });
    source.addEventListener("error", () => {
      // The session ended (401) or the relay went away: stop, and say so.
      if (source.readyState === EventSource.CLOSED) {
        live.setAttribute("data-stale", "true");
      }
    });
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch (_) {
        // Clipboard refused (no secure context): select the text instead.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
    });
  }
});
