// The safety check's progress page: figures, the bar, the areas and the answer-rate
// curve follow the check's live updates ({"type": "safety.progress", ...} on
// /ws/safety/<id>/, at most one a second). After a reconnect the page catches up from
// the progress address (the same figures, from the database).
(function () {
  const dataEl = document.getElementById("safety-live");
  const root = document.querySelector("[data-safety-live]");
  if (!dataEl || !root) return;
  const live = JSON.parse(dataEl.textContent);
  if (!live.started_at) return;  // nothing is asked yet: nothing moves
  const started = new Date(live.started_at).getTime();
  const chart = live.chart;
  const points = (live.points || []).map((p) => [p[0], p[1]]);
  const xMax = live.x_max;
  const words = root.querySelector("[data-words]");
  const summary = root.querySelector("[data-live-summary]");
  let lastSpoken = 0;
  let pending = null;

  function xy(minute, share) {
    const w = chart.width - chart.left - chart.right;
    const h = chart.height - chart.top - chart.bottom;
    return `${(chart.left + w * Math.min(minute, xMax) / xMax).toFixed(1)},${(chart.top + h * (1 - share)).toFixed(1)}`;
  }
  // The same steps as outreach.reports.svg_points: a share holds until the next answer.
  function polyline() {
    const out = [];
    let previous = null;
    for (const [minute, share] of points) {
      if (previous !== null) out.push(xy(minute, previous));
      out.push(xy(minute, share));
      previous = share;
    }
    return out.join(" ");
  }
  function setAll(selector, value) {
    root.querySelectorAll(selector).forEach((el) => { el.textContent = String(value); });
  }
  function areaRow(area) {
    const body = root.querySelector("[data-area-rows]");
    let row = body.querySelector(`tr[data-area="${area.area_id}"]`);
    if (!row) {
      const template = body.querySelector("tr[data-area]");
      if (!template) { body.textContent = ""; }
      row = document.createElement("tr");
      row.dataset.area = area.area_id;
      const head = document.createElement("th");
      head.scope = "row";
      head.textContent = area.area;
      row.append(head);
      for (const col of ["total", "answered", "safe", "need_help", "silent"]) {
        const cell = document.createElement("td");
        cell.dataset.col = col;
        row.append(cell);
      }
      body.append(row);
    }
    for (const col of ["total", "answered", "safe", "need_help", "silent"]) {
      const cell = row.querySelector(`[data-col="${col}"]`);
      if (cell) cell.textContent = String(area[col]);
    }
  }
  function draw(progress) {
    const t = progress.totals;
    for (const key of ["total", "answered", "safe", "need_help", "silent", "late"]) setAll(`[data-figure="${key}"]`, t[key]);
    setAll('[data-figure="answered_percent"]', t.total ? Math.round((t.answered / t.total) * 100) : 0);
    const bar = root.querySelector("[data-bar]");
    if (bar) { bar.max = Math.max(t.total, 1); bar.value = t.answered; bar.textContent = `${Math.round(t.answered / Math.max(t.total, 1) * 100)}%`; }
    (progress.areas || []).forEach(areaRow);
    const minute = Math.max(0, (new Date(progress.at).getTime() - started) / 60000);
    const last = points[points.length - 1];
    if (!last || minute >= last[0]) points.push([Math.round(minute * 10) / 10, t.answered_share]);
    const line = root.querySelector('[data-chart="progress-curve"] polyline.current');
    if (line) line.setAttribute("points", polyline());
    const now = Date.now();
    if (summary && words && now - lastSpoken > 15000) {  // screen readers: now and then, not every second
      lastSpoken = now;
      summary.textContent = words.dataset.summary.replace(/\{(\w+)\}/g, (m, key) => (key in t ? String(t[key]) : m));
    }
  }
  function update(progress) {
    if (pending === null) requestAnimationFrame(() => { const p = pending; pending = null; draw(p); });
    pending = progress;
  }
  function catchUp() {
    fetch(live.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null)).then((p) => { if (p) update(p); }).catch(() => {});
  }
  let delay = 1000;
  let opened = false;
  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + `/ws/safety/${live.check}/`);
    ws.onopen = () => { delay = 1000; if (opened) catchUp(); opened = true; };
    ws.onmessage = (msg) => {
      let event;
      try { event = JSON.parse(msg.data); } catch (e) { return; }
      if (event.type === "safety.progress" && event.totals) update(event);
      else if (event.type === "resync") catchUp();
    };
    ws.onclose = (e) => {
      if (e.code === 4401 || e.code === 4403 || e.code === 4404) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
