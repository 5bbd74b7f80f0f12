// Keeps the volunteer's "my residents" page usable without a network. The page, and the
// scripts and styles it loads, come from the network when there is one (and are kept);
// when there is none, the last copy kept is shown. Check-ins made then wait in the
// page's own queue on the phone. Signing out deletes the copy (see js/signed-out.js).
const CACHE = "mimamori-my-residents";
const PAGE = "{{ page_url|escapejs }}";
const STATIC = "{{ static_url|escapejs }}";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  const isPage = request.mode === "navigate" && url.pathname === PAGE;
  if (!isPage && !url.pathname.startsWith(STATIC)) return;
  const key = isPage ? PAGE : request;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(request);
      // Only a page actually shown to a signed-in volunteer is kept, never a redirect to sign-in.
      if (response.ok && !response.redirected && response.type === "basic") {
        await cache.put(key, response.clone());
      }
      return response;
    } catch (err) {
      const kept = await cache.match(key);
      if (kept) return kept;
      throw err;
    }
  })());
});
