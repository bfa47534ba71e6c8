// Small canvas trend plotter (no dependencies). ISA-101: grey background, dark muted lines,
// normal-range band shaded; x axis = device (sim) time.
"use strict";
const Plot = (() => {
  const COLORS = ["#0a2a5a", "#3a3a3a", "#2f5f2f", "#6a3a6a"];
  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "-";
    const a = Math.abs(v);
    if (a >= 1000) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }
  function fmtT(s) {
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), ss = Math.floor(s % 60);
    return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(ss).padStart(2, "0")}`;
  }
  // series: [{name, data:[...], color?}], opts: {band:[lo,hi], lines:[{y,label}], min, max, unit}
  function draw(canvas, t, series, opts = {}) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== w * dpr || canvas.height !== h * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = "#e6e6e6"; g.fillRect(0, 0, w, h);
    const L = 52, R = 8, T = 16, B = 20, pw = w - L - R, ph = h - T - B;
    let lo = opts.min, hi = opts.max;
    const vals = [];
    series.forEach(s => s.data.forEach(v => { if (v !== null && isFinite(v)) vals.push(v); }));
    (opts.lines || []).forEach(l => vals.push(l.y));
    if (opts.band) vals.push(opts.band[0], opts.band[1]);
    if (lo === undefined) lo = vals.length ? Math.min(...vals) : 0;
    if (hi === undefined) hi = vals.length ? Math.max(...vals) : 1;
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const pad = (hi - lo) * 0.05; lo -= opts.min === undefined ? pad : 0; hi += opts.max === undefined ? pad : 0;
    const n = t.length;
    const t0 = n ? t[0] : 0, t1 = n ? t[n - 1] : 1, span = Math.max(t1 - t0, 1e-6);
    const X = x => L + (x - t0) / span * pw, Y = y => T + (1 - (y - lo) / (hi - lo)) * ph;
    if (opts.band) { g.fillStyle = "#cfcfcf"; g.fillRect(L, Y(opts.band[1]), pw, Y(opts.band[0]) - Y(opts.band[1])); }
    g.strokeStyle = "#9a9a9a"; g.lineWidth = 1; g.strokeRect(L, T, pw, ph);
    g.fillStyle = "#404040"; g.font = "11px DejaVu Sans, Arial";
    for (let i = 0; i <= 4; i++) {
      const y = lo + (hi - lo) * i / 4;
      g.fillText(fmt(y), 4, Y(y) + 4);
      g.strokeStyle = "#d2d2d2"; g.beginPath(); g.moveTo(L, Y(y)); g.lineTo(L + pw, Y(y)); g.stroke();
    }
    if (n) { g.fillText(fmtT(t0), L, h - 5); const s = fmtT(t1); g.fillText(s, L + pw - g.measureText(s).width, h - 5); }
    (opts.lines || []).forEach(l => {
      g.setLineDash([5, 4]); g.strokeStyle = "#606060"; g.beginPath(); g.moveTo(L, Y(l.y)); g.lineTo(L + pw, Y(l.y)); g.stroke();
      g.setLineDash([]); g.fillText(l.label, L + 4, Y(l.y) - 3);
    });
    series.forEach((s, k) => {
      g.strokeStyle = s.color || COLORS[k % COLORS.length]; g.lineWidth = 1.6; g.beginPath();
      let pen = false;
      for (let i = 0; i < n; i++) {
        const v = s.data[i];
        if (v === null || v === undefined || !isFinite(v)) { pen = false; continue; }
        const x = X(t[i]), y = Y(Math.min(Math.max(v, lo), hi));
        if (pen) g.lineTo(x, y); else { g.moveTo(x, y); pen = true; }
      }
      g.stroke();
    });
    // legend with latest values
    let x = L + 4;
    series.forEach((s, k) => {
      const last = s.data.length ? s.data[s.data.length - 1] : null;
      const label = `${s.name}: ${fmt(last)}${opts.unit ? "" : ""}`;
      g.fillStyle = s.color || COLORS[k % COLORS.length]; g.fillRect(x, 5, 12, 3);
      g.fillStyle = "#202020"; g.fillText(label, x + 15, 11); x += g.measureText(label).width + 30;
    });
    canvas.dataset.points = String(n);
    canvas.dataset.lastT = n ? String(t[n - 1]) : "";
  }
  return { draw, fmt, fmtT, COLORS };
})();
