// The import page follows a running import: it polls the job's status and reloads
// the page once the import has finished (imported or refused).
(function () {
  "use strict";
  const box = document.querySelector("[data-import-status]");
  if (!box) return;
  const set = (selector, text) => { const el = box.querySelector(selector); if (el) el.textContent = text; };

  async function poll() {
    try {
      const response = await fetch(box.dataset.importStatus, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const status = await response.json();
        if (status.finished) { window.location.reload(); return; }
        if (status.phase) set("[data-phase]", box.dataset["phase" + status.phase[0].toUpperCase() + status.phase.slice(1)]);
        const total = status.total || status.rows;
        set("[data-done]", status.done);
        set("[data-total]", total);
        const bar = box.querySelector("progress");
        if (bar) { bar.max = total; bar.value = status.done; }
      }
    } catch (error) {
      // Offline for a moment: try again on the next tick.
    }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 1000);
})();
