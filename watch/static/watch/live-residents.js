// Live resident rows and cards: they follow contact and overdue events without a reload.
(function () {
  const labels = JSON.parse(document.getElementById("watch-labels").textContent);
  // "n/j H:i" in the tenant's time zone, as the server renders it, whatever the phone's zone.
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: labels.time_zone || undefined, month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23",
  });
  const fmt = (iso) => {
    const p = Object.fromEntries(parts.formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
    return `${p.month}/${p.day} ${p.hour}:${p.minute}`;
  };
  // After a reconnect or a resync events may have been missed: the page is read again from
  // the server, so its picture is never silently stale. Blocks marked data-live-refresh
  // (the overview's rows and counts) are replaced; cards keep their forms, only their
  // fields and overdue mark change.
  async function catchUp() {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    document.querySelectorAll("[data-live-refresh]").forEach((here) => {
      const there = fresh.querySelector(`[data-live-refresh="${here.dataset.liveRefresh}"]`);
      if (there) here.innerHTML = there.innerHTML;
    });
    document.querySelectorAll("[data-resident-row]").forEach((row) => {
      const there = fresh.querySelector(`[data-resident-row="${row.dataset.residentRow}"]`);
      if (!there) return;
      row.classList.toggle("overdue", there.classList.contains("overdue"));
      for (const field of ["last_contact_at", "next_due_at"]) {
        const a = row.querySelector(`[data-field="${field}"]`), b = there.querySelector(`[data-field="${field}"]`);
        if (a && b) a.innerHTML = b.innerHTML;
      }
    });
  }
  document.addEventListener("mimamori:resync", catchUp);

  document.addEventListener("mimamori:event", (e) => {
    const ev = e.detail;
    // Only events carrying the resident's state (concern events name a resident too).
    if (!ev.resident || !("overdue" in ev)) return;
    const row = document.querySelector(`[data-resident-row="${ev.resident}"]`);
    if (!row) return;
    const last = row.querySelector('[data-field="last_contact_at"]');
    if (last && ev.last_contact_at) {
      last.innerHTML = `<time datetime="${ev.last_contact_at}">${fmt(ev.last_contact_at)}</time> · <span data-field="last_outcome"></span>`;
      last.querySelector('[data-field="last_outcome"]').textContent = labels.outcomes[ev.last_outcome] || ev.last_outcome;
    }
    const due = row.querySelector('[data-field="next_due_at"]');
    if (due) {
      due.innerHTML = (ev.overdue ? `<strong class="badge"></strong> ` : "") +
        (ev.next_due_at ? `<time datetime="${ev.next_due_at}">${fmt(ev.next_due_at)}</time>` : "");
      const badge = due.querySelector(".badge");
      if (badge) badge.textContent = labels.overdue;
    }
    row.classList.toggle("overdue", !!ev.overdue);
    row.classList.add("updated");
    setTimeout(() => row.classList.remove("updated"), 3000);
  });
})();
