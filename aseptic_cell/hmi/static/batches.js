// Batches panel (issue 14 item 7): every patient batch on the shared cell; per row, hold and (signed)
// restart of that batch (app.js sends them to /api/batch/<verb> with the batch id).
// Data: the snapshot's "batches" view (supervisor /cell/batches, aseptic_cell.supervisor.batch_view),
// pushed on the websocket with the rest of the state. The Gantt is plain SVG drawn here.
"use strict";
(function () {
  const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const cache = {};
  const put = (id, html) => { const el = document.getElementById(id); if (el && cache[id] !== html) { el.innerHTML = html; cache[id] = html; } };
  const dur = s => {
    if (s === null || s === undefined) return "?";
    const a = Math.abs(s), sign = s < 0 ? "-" : "";
    if (a >= 86400) return `${sign}${(a / 86400).toFixed(1)} d`;
    if (a >= 3600) return `${sign}${(a / 3600).toFixed(1)} h`;
    return `${sign}${Math.round(a / 60)} min`;
  };
  const ABNORMAL = new Set(["Held", "Holding", "Aborted", "Aborting", "Stopped"]);
  // the rows are drawn after app.js marked the buttons at log-in: mark this user's rights here (app.js permitted)
  const noright = action => (typeof permitted === "function" && !permitted(action) ? " noright" : "");

  function table(v) {
    if (!v.batches.length) return `<tr><td colspan="12" class="muted">no patient batches</td></tr>`;
    return v.batches.map(b => {
      const bad = ABNORMAL.has(b.state) || b.coi_stop;
      const slackBad = b.slack_s !== null && b.slack_s < 0;
      return `<tr class="batch-row" data-batch="${esc(b.batch_id)}">
        <td>${esc(b.batch_id)}</td><td class="v">${esc(b.coi)}</td><td>${esc(b.din)}</td>
        <td class="${bad ? "alarm" : ""}">${esc(b.state)}</td><td>${esc(b.active_phases.join(", ") || "-")}</td>
        <td>${esc(b.slot || "-")}</td><td>${esc(b.next_action)}</td>
        <td class="${slackBad ? "alarm" : ""}">${b.slack_s === null ? "unknown" : dur(b.slack_s)}</td>
        <td>${esc(b.coi_stop || b.held_reason || "-")}</td>
        <td class="${b.impacted ? "alarm" : ""}">${b.impacted ? "IMPACTED" : "-"}</td>
        <td>${esc(b.resources_held.join(", ") || "-")}</td>
        <td><button class="cmd${noright("batch.hold")}" data-pbatch="hold" data-bid="${esc(b.batch_id)}">hold</button>
            <button class="cmd${noright("batch.restart")}" data-pbatch="restart" data-bid="${esc(b.batch_id)}">restart</button></td></tr>`;
    }).join("");
  }

  function queue(v) {
    if (!v.queue.length) return `<tr><td colspan="5" class="muted">nothing waits</td></tr>`;
    return v.queue.map(q => `<tr class="queue-row"><td>${q.position}</td><td>${esc(q.batch)}</td>
      <td>${esc(q.phase)}${q.safety ? " (safety)" : ""}</td><td>${dur(q.waited_s)}</td>
      <td>${q.why.map(w => `<div>${esc(w.resource ? `${w.resource}: ` : "")}${esc(w.why)}${w.holders.length ? ` <span class="muted">(${esc(w.holders.join(", "))})</span>` : ""}</div>`).join("")}</td></tr>`).join("");
  }

  function zone(v) {
    const z = v.zone;
    if (!z) return `<span class="muted">no patient cell</span>`;
    const parts = [`open-zone owner: <span class="v" id="zone-owner">${esc(z.owner || "none (clean)")}</span>`];
    if (z.line_clearance) parts.push(`line clearance for ${esc(z.line_clearance.batch)} (${esc(z.line_clearance.state)})`);
    if (z.purge_until !== null) parts.push(`purge wait until t=${Math.round(z.purge_until)} s`);
    const f = Object.entries(z.faulted || {});
    if (f.length) parts.push(`<span class="alarm">faulted: ${esc(f.map(([r, why]) => `${r} (${why})`).join("; "))}</span>`);
    return parts.join(" · ");
  }

  // Gantt: one lane per batch, one bar per phase interval; x = sim time.
  function gantt(v) {
    const ids = v.batches.map(b => b.batch_id);
    if (!ids.length) return `<span class="muted">no phases yet</span>`;
    const now = v.t ?? 0;
    let t0 = Infinity;
    for (const id of ids) for (const r of v.timeline[id] || []) if (r.start !== null) t0 = Math.min(t0, r.start);
    if (!isFinite(t0)) t0 = now;
    const t1 = Math.max(now, t0 + 60);
    const W = 900, lane = 22, left = 90, top = 18, H = top + lane * ids.length + 6;
    const x = t => left + (W - left - 10) * (t - t0) / (t1 - t0);
    const out = [`<svg id="batch-gantt-svg" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="phases per batch over time">`];
    for (let k = 0; k <= 4; k++) {  // time axis: 5 ticks
      const t = t0 + (t1 - t0) * k / 4;
      out.push(`<line x1="${x(t).toFixed(1)}" y1="${top - 4}" x2="${x(t).toFixed(1)}" y2="${H}" class="g-grid"/><text x="${x(t).toFixed(1)}" y="11" class="g-axis" text-anchor="${k === 4 ? "end" : k ? "middle" : "start"}">${esc(dur(t - t0))}</text>`);
    }
    ids.forEach((id, i) => {
      const y = top + i * lane;
      out.push(`<text x="4" y="${y + 15}" class="g-label">${esc(id)}</text>`);
      for (const r of v.timeline[id] || []) {
        if (r.start === null) continue;
        const end = r.end === null ? now : r.end;
        const xs = x(r.start), w = Math.max(1.5, x(end) - xs);
        const tip = `${id} ${r.phase} (${r.kind}) t=${Math.round(r.start)}..${r.end === null ? "now" : Math.round(r.end)} s; ${r.resources.join(", ")}`;
        out.push(`<rect class="g-bar g-${esc(r.kind)}${r.end === null ? " g-live" : ""}" data-phase="${esc(r.phase)}" x="${xs.toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${lane - 6}"><title>${esc(tip)}</title></rect>`);
      }
    });
    out.push(`<line x1="${x(now).toFixed(1)}" y1="${top - 4}" x2="${x(now).toFixed(1)}" y2="${H}" class="g-now"/></svg>`);
    return out.join("");
  }

  window.renderBatches = function (snap) {
    const v = snap && snap.batches;
    const panel = document.getElementById("batches-panel");
    if (!v) {
      put("batches-status", `<span class="stale">no batch view from the supervisor</span>`);
      return;
    }
    if (panel) panel.classList.toggle("stale", !!v.stale);
    put("batches-status", v.stale ? `<span class="stale">batch view stale</span>` : `sim t=${Math.round(v.t ?? 0)} s · ${v.batches.length} batch(es)` +
      (v.violations && v.violations.length ? ` · <span class="alarm">segregation violations: ${v.violations.length}</span>` : ""));
    put("batches-rows", table(v));
    put("batches-zone", zone(v));
    put("batches-queue", queue(v));
    put("batches-gantt", gantt(v));
  };
})();
