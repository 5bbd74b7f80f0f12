// Live events over the tenant's websocket; reconnects with backoff. Events may have been
// missed while disconnected, or when the server found its channel layer had forgotten
// the socket ({"type": "resync"}): then pages get "mimamori:resync" and catch up from
// the database.
(function () {
  const dot = document.getElementById("live");
  const list = document.getElementById("events");
  const words = document.getElementById("live-words");
  const timeZone = document.body.dataset.timeZone || "Asia/Tokyo";
  // Times in the tenant's time zone, whatever the device's clock says.
  const timeFormat = new Intl.DateTimeFormat(document.documentElement.lang || "ja",
    { timeZone, month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" });
  function formatTime(value) { return timeFormat.format(value instanceof Date ? value : new Date(value)); }
  window.mimamori = Object.assign(window.mimamori || {}, { formatTime, timeZone });

  // Events carry ids, not names: the resident's name only if this page already shows it
  // (an element with data-resident-name and data-resident or data-resident-row = the id).
  function residentName(id) {
    if (!id) return "";
    const el = document.querySelector(`[data-resident-name][data-resident="${id}"], [data-resident-name][data-resident-row="${id}"]`);
    return el ? el.dataset.residentName : "";
  }
  // The words for an event in the page's language, or "" for an event people need not see.
  // Never the event's type: it is an internal name.
  function sentence(event) {
    if (event.type === "notification.created" || event.type === "notification.failed") return event.text || "";
    const entry = words && words.querySelector(`[data-type="${event.type}"]`);
    if (!entry) return "";
    const name = event.type === "user.joined" ? (event.user && event.user.name) || "" : residentName(event.resident);
    return name ? entry.dataset.named.replace("{name}", name) : entry.textContent;
  }
  let delay = 1000;
  let connectedOnce = false;
  let leaving = false;
  window.addEventListener("beforeunload", () => { leaving = true; });
  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/events/");
    ws.onopen = () => { dot && dot.classList.add("on"); delay = 1000; };
    ws.onmessage = (msg) => {
      const event = JSON.parse(msg.data);
      document.dispatchEvent(new CustomEvent("mimamori:event", { detail: event }));
      // A page already on its way elsewhere (the form that changed the password, which
      // ends the person's other sessions) goes there: a reload would race its answer.
      if (event.type === "session.ended") { if (!leaving) location.reload(); return; }
      if (event.type === "resync" || (event.type === "hello" && connectedOnce)) {
        document.dispatchEvent(new CustomEvent("mimamori:resync"));
      }
      if (event.type === "hello") connectedOnce = true;
      if (event.type === "hello" || event.type === "pong" || event.type === "resync") return;
      const text = sentence(event);
      if (!text) return;  // an event with no words for people (a step notified, a read)
      const item = document.createElement("li");
      item.textContent = `${text} · ${formatTime(event.last_contact_at || new Date())}`;
      list.prepend(item);
      while (list.children.length > 5) list.lastElementChild.remove();
    };
    ws.onclose = (e) => {
      dot && dot.classList.remove("on");
      if (e.code === 4401 || e.code === 4403) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
