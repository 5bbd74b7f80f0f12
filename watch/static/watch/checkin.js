// Volunteer check-ins that survive a lost network: every submission is stored on the
// phone with its idempotency key first, then sent; a retry of a sent one returns the
// original entry on the server, so nothing is lost and nothing is doubled. The queue is
// the signed-in person's own (a shared phone never sends one person's check-ins as
// another's), and a service worker keeps the page itself for opening without a network.
(function () {
  const labels = JSON.parse(document.getElementById("watch-labels").textContent);
  const KEY = `mimamori-checkin-queue:${labels.user}`;
  const status = document.getElementById("queue-status");
  const offline = document.getElementById("offline-status");
  let flushing = false;

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register(labels.worker, { scope: labels.scope }).catch(() => {});
  }
  function showOffline() {
    offline.hidden = navigator.onLine;
    offline.textContent = labels.offline;
  }
  window.addEventListener("offline", showOffline);
  window.addEventListener("online", showOffline);
  showOffline();

  const load = () => JSON.parse(localStorage.getItem(KEY) || "[]");
  const save = (queue) => localStorage.setItem(KEY, JSON.stringify(queue));
  const csrf = () => (document.cookie.match(/(?:^|; )mimamori_csrftoken=([^;]+)/) || [])[1] || "";
  const uuid = () => {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };

  function show(text) {
    status.hidden = !text;
    status.textContent = text || "";
  }

  function showQueue() {
    const n = load().length;
    show(n ? labels.queued.replace("%(count)s", n) : "");
  }

  // What became of a check-in is said next to the card that was tapped (a role="status"
  // line there), not somewhere the volunteer is not looking.
  function cardStatus(residentId, text, sent) {
    const card = document.querySelector(`[data-resident-row="${residentId}"]`);
    const line = card && card.querySelector(".checkin-status");
    if (!line) return;
    line.textContent = text;
    line.classList.toggle("sent", !!sent);
  }

  function enqueue(item) {
    const queue = load();
    queue.push({ ...item, idempotency_key: uuid(), occurred_at: new Date().toISOString() });
    save(queue);
    showQueue();
    cardStatus(item.resident, navigator.onLine ? labels.sending : labels.kept, false);
    flush();
  }

  async function flush() {
    if (flushing) return;
    flushing = true;
    try {
      let queue = load();
      while (queue.length) {
        const item = queue[0];
        let response;
        try {
          response = await fetch("/api/v1/contacts/", {
            method: "POST", credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
            body: JSON.stringify(item),
          });
        } catch (err) {
          cardStatus(item.resident, labels.kept, false);
          break; // offline: keep it, try again later
        }
        // Server trouble, too fast, or signed out (the session ended while offline): keep it
        // and try again later (after the next sign-in, for the last).
        if (response.status >= 500 || [401, 403, 429].includes(response.status)) {
          cardStatus(item.resident, labels.kept, false);
          break;
        }
        queue = load().filter((q) => q.idempotency_key !== item.idempotency_key);
        save(queue);
        if (!response.ok) {
          const body = await response.text();
          const reason = labels.rejected.replace("%(reason)s", body.slice(0, 200));
          show(reason);
          cardStatus(item.resident, reason, false);
          return;
        }
        markSent(item.resident);
      }
    } finally {
      flushing = false;
    }
    showQueue();
  }

  function markSent(residentId) {
    const card = document.querySelector(`[data-resident-row="${residentId}"]`);
    if (card) card.classList.add("sent");
    cardStatus(residentId, labels.recorded, true);
  }

  document.addEventListener("click", (e) => {
    const button = e.target.closest('button[data-action="fine"]');
    if (!button) return;
    const card = button.closest("[data-resident-row]");
    enqueue({ resident: Number(card.dataset.residentRow), channel: "visit", outcome: "fine", note: "" });
  });
  document.addEventListener("submit", (e) => {
    const form = e.target.closest("form.contact-form");
    if (!form) return;
    e.preventDefault();
    const data = new FormData(form);
    enqueue({ resident: Number(form.dataset.resident), channel: data.get("channel"),
              outcome: data.get("outcome"), note: data.get("note") || "" });
    form.reset();
    form.closest("details").open = false;
  });
  window.addEventListener("online", flush);
  setInterval(flush, 15000);
  showQueue();
  flush();
})();
