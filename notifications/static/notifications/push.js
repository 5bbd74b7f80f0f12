// Turns web push on or off for this phone: registers the service worker, subscribes
// with the server's VAPID key and sends the subscription to the server.
(function () {
  const box = document.getElementById("push");
  if (!box) return;
  const labels = JSON.parse(document.getElementById("push-labels").textContent);
  const state = box.querySelector("[data-push-state]");
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  function say(text) { state.textContent = text; }
  function keyBytes(base64url) {
    const padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }
  function post(subscription) {
    return fetch(box.dataset.endpoint, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ subscription: subscription }),
    }).then((r) => r.json().then((data) => { if (!r.ok) throw new Error((data.errors || []).join(" ")); }));
  }
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    say(labels.unsupported);
    box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    return;
  }
  box.querySelector("[data-push-on]").addEventListener("click", async () => {
    try {
      if ((await Notification.requestPermission()) !== "granted") { say(labels.denied); return; }
      const reg = await navigator.serviceWorker.register(box.dataset.worker, { scope: "/notifications/" });
      await navigator.serviceWorker.ready;
      const sub = (await reg.pushManager.getSubscription()) ||
        (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(box.dataset.key) }));
      await post(sub.toJSON());
      say(labels.on);
    } catch (err) { say(labels.failed.replace("%(reason)s", err.message)); }
  });
  box.querySelector("[data-push-off]").addEventListener("click", async () => {
    try {
      const reg = await navigator.serviceWorker.getRegistration("/notifications/");
      const sub = reg && (await reg.pushManager.getSubscription());
      if (sub) await sub.unsubscribe();
      await post(null);
      say(labels.off);
    } catch (err) { say(labels.failed.replace("%(reason)s", err.message)); }
  });
})();
