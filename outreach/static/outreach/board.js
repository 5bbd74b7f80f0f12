// The concerns board: redrawn from the server on every concern event newer than the last
// id it saw, so an event dropped on the way is covered by the next one; after a reconnect
// or a resync it asks for the events it missed (after that id), so nothing stays stale.
(function () {
  const board = document.getElementById("board");
  let last = Number(board.dataset.lastEvent || 0);

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

  document.addEventListener("mimamori:resync", replay);
  document.addEventListener("mimamori:event", (e) => {
    const ev = e.detail;
    if (!ev.type.startsWith("concern.") || !ev.id) return;
    if (ev.id <= last) return;
    last = ev.id;
    redraw();
  });
})();
