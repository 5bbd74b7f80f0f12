// Shown only to people who are not signed in: the copy of a volunteer's residents kept
// for offline use goes with the session (check-ins not yet sent stay, in their own queue).
if (window.caches) caches.delete("mimamori-my-residents");
