// The unread count next to the bell: fetched, then kept current by live events.
(function () {
  function show(count) {
    document.querySelectorAll("[data-unread-count]").forEach((el) => {
      el.textContent = count > 99 ? "99+" : String(count);
      el.hidden = !count;
    });
  }
  document.addEventListener("mimamori:event", (e) => {
    const event = e.detail || {};
    if ((event.type === "notification.created" || event.type === "notification.read") && typeof event.unread === "number") {
      show(event.unread);
    }
  });
  function refetch() {
    fetch("/notifications/unread-count/", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => { if (data && typeof data.unread === "number") show(data.unread); })
      .catch(() => {});
  }
  // After a reconnect or a resync, events may have been missed: ask the database again.
  document.addEventListener("mimamori:resync", refetch);
  refetch();
})();
