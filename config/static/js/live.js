// Live events over the tenant's websocket; reconnects with backoff. Events may have been
// missed while disconnected, or when the server found its channel layer had forgotten
// the socket ({"type": "resync"}): then pages get "mimamori:resync" and catch up from
// the database.
(function () {
  const dot = document.getElementById("live");
  const list = document.getElementById("events");
  let delay = 1000;
  let connectedOnce = false;
  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/events/");
    ws.onopen = () => { dot && dot.classList.add("on"); delay = 1000; };
    ws.onmessage = (msg) => {
      const event = JSON.parse(msg.data);
      document.dispatchEvent(new CustomEvent("mimamori:event", { detail: event }));
      if (event.type === "session.ended") { location.reload(); return; }
      if (event.type === "resync" || (event.type === "hello" && connectedOnce)) {
        document.dispatchEvent(new CustomEvent("mimamori:resync"));
      }
      if (event.type === "hello") connectedOnce = true;
      if (event.type === "hello" || event.type === "pong" || event.type === "resync") return;
      const item = document.createElement("li");
      item.textContent = event.text || event.type;
      list.prepend(item);
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
