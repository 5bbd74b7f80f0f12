// The concerns board: redrawn on every concern event; after a reconnect it first asks
// for the events it missed (after the last id it saw), so nothing is skipped.
(function () {
  const board = document.getElementById("board");
  let last = Number(board.dataset.lastEvent || 0);
  let connectedOnce = false;

  async function redraw() {
    const response = await fetch(board.dataset.rowsUrl, { credentials: "same-origin" });
    if (response.ok) board.innerHTML = await response.text();
  }

  async function replay() {
    const response = await fetch(`${board.dataset.eventsUrl}?after=${last}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const { events } = await response.json();
    if (events.length) {
      last = events[events.length - 1].id;
      await redraw();
    }
  }

  document.addEventListener("mimamori:event", (e) => {
    const ev = e.detail;
    if (ev.type === "hello") {
      if (connectedOnce) replay();
      connectedOnce = true;
      return;
    }
    if (!ev.type.startsWith("concern.") || !ev.id) return;
    if (ev.id <= last) return;
    last = ev.id;
    redraw();
  });
})();
