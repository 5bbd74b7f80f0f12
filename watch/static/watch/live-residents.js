// Live resident rows and cards: they follow contact and overdue events without a reload.
(function () {
  const labels = JSON.parse(document.getElementById("watch-labels").textContent);
  const fmt = (iso) => {
    const d = new Date(iso);
    return `${d.getMonth() + 1}/${d.getDate()} ${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  };
  document.addEventListener("mimamori:event", (e) => {
    const ev = e.detail;
    if (!ev.resident) return;
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
