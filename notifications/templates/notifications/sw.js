// Push service worker of mimamori: shows a pushed notification and opens its link.
self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = { title: event.data && event.data.text() }; }
  event.waitUntil(self.registration.showNotification(data.title || "mimamori", {
    body: data.body || "",
    tag: data.id ? "notification-" + data.id : undefined,
    requireInteraction: !!data.urgent,
    data: { url: data.url || "/notifications/" },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/notifications/";
  event.waitUntil(clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    for (const w of windows) {
      if (new URL(w.url).origin === self.location.origin && "focus" in w) { w.navigate(url); return w.focus(); }
    }
    return clients.openWindow(url);
  }));
});
