// Operator HMI front end: plain JS, no build step.
// State arrives over the (read-only) WebSocket; commands go through the REST API with the
// session's CSRF token. Saturated colour only for abnormal states (ISA-101).
"use strict";
const $ = id => document.getElementById(id);
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const F = Plot.fmt;
const PRIO_CLASS = { emergency: "p-emergency", high: "p-high", medium: "p-medium", low: "p-low" };
const ACTIVE_ALARM_STATES = new Set(["UNACK", "ACKED", "RTN_UNACK", "LATCHED", "ACTIVE"]);

const S = {
  session: null, plant: {}, snap: null, seq: 0, lastWall: 0, view: "overview",
  trends: {}, ws: null, retry: 500, events: [], timeline: [], lastRecordFetch: 0, cache: {},
};

// ---------------------------------------------------------------- API
async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (S.session) headers["X-CSRF-Token"] = S.session.csrf;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { status: r.status, ok: r.ok, data };
}

function showResult(ok, text) {
  const el = $("cmd-result");
  el.className = ok ? "ok" : "refused";
  el.textContent = text;
  el.dataset.at = String(Date.now());
}

function errorText(res) {
  const e = res.data && res.data.error;
  if (!e) return `HTTP ${res.status}`;
  return `#${e.number} ${e.code}: ${e.detail}` + (e.upstream_code ? ` [${e.upstream_code}]` : "");
}

async function command(label, path, body, signAction) {
  const needs = signAction && S.session && S.session.signature_actions[signAction] !== undefined;
  if (needs) {
    const sig = await askSignature(label, S.session.signature_actions[signAction] || "");
    if (!sig) { showResult(false, `${label}: cancelled (no signature)`); return null; }
    body = Object.assign({}, body, { signature: sig.signature, reason: sig.reason || body.reason || "" });
  }
  const res = await api("POST", path, body);
  if (res.status === 401) { showLogin(errorText(res)); }
  if (res.ok) {
    let text = `${label}: accepted` + (res.data.reason ? ` - ${res.data.reason}` : "");
    if (res.data.signed) text += ` (signed by ${res.data.signed.full_name || res.data.signed.user}, meaning: ${res.data.signed.meaning})`;
    showResult(true, text);
    S.lastRecordFetch = 0;
  } else {
    showResult(false, `${label} refused - ${errorText(res)}`);
  }
  return res;
}

// ---------------------------------------------------------------- login / signature dialogs
function showLogin(msg) {
  $("login").classList.add("show");
  const err = $("login-err");
  if (msg) { err.textContent = msg; err.classList.add("show"); } else err.classList.remove("show");
  setTimeout(() => $("login-user").focus(), 0);
}

async function doLogin(ev) {
  ev.preventDefault();
  const res = await api("POST", "/api/login", { user: $("login-user").value, password: $("login-password").value });
  $("login-password").value = "";
  if (!res.ok) { showLogin(errorText(res)); return; }
  S.session = res.data;
  $("login").classList.remove("show");
  afterLogin();
}

let signResolve = null;
function askSignature(what, meaning) {
  $("sign-what").textContent = `${what} needs your electronic signature (21 CFR 11.50: printed name, date/time and meaning are recorded).`;
  $("sign-user").value = S.session ? S.session.user : "";
  $("sign-password").value = "";
  $("sign-reason").value = "";
  const sel = $("sign-meaning");
  sel.innerHTML = S.session.meanings.map(m => `<option value="${esc(m)}"${m === meaning ? " selected" : ""}>${esc(m)}</option>`).join("");
  $("sign-err").classList.remove("show");
  $("sign").classList.add("show");
  setTimeout(() => $("sign-password").focus(), 0);
  return new Promise(resolve => { signResolve = resolve; });
}
function closeSign(result) {
  $("sign").classList.remove("show");
  $("sign-password").value = "";
  if (signResolve) { const r = signResolve; signResolve = null; r(result); }
}

// ---------------------------------------------------------------- WebSocket
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  S.ws = ws;
  ws.onopen = () => { S.retry = 500; setConn(true); };
  ws.onmessage = m => {
    let msg; try { msg = JSON.parse(m.data); } catch (e) { return; }
    if (msg.type === "hello") { S.trends = msg.trends || {}; }
    else if (msg.type === "state") { onState(msg); }
    else if (msg.type === "event") { onEvent(msg.data); }
    else if (msg.type === "error") { if (msg.code === "NOT_AUTHENTICATED" || msg.code === "SESSION_EXPIRED") showLogin(msg.detail); }
  };
  ws.onclose = ev => {
    setConn(false);
    if (ev.code === 4401) { S.session = null; showLogin("session ended: log in again"); return; }
    setTimeout(connect, S.retry); S.retry = Math.min(S.retry * 2, 5000);
  };
}
function setConn(ok) {
  const c = $("conn");
  c.textContent = ok ? "live" : "COMMUNICATION LOST";
  c.classList.toggle("lost", !ok);
}
setInterval(() => {  // data older than 3 s: show it as lost (a frozen screen must not look live)
  if (S.lastWall && Date.now() - S.lastWall > 3000) setConn(false);
}, 1000);

function onEvent(ev) {
  S.events.unshift(ev);
  if (S.events.length > 200) S.events.length = 200;
  if (S.view === "alarms") renderEvents();
}

function appendTrend(trend) {
  for (const [unit, sample] of Object.entries(trend || {})) {
    const tr = S.trends[unit] || (S.trends[unit] = { t: [], series: {} });
    tr.t.push(sample.t);
    for (const [k, v] of Object.entries(sample)) {
      if (k === "t") continue;
      (tr.series[k] || (tr.series[k] = [])).push(v);
    }
    const max = 1800;
    if (tr.t.length > max) { tr.t.splice(0, tr.t.length - max); for (const k in tr.series) tr.series[k].splice(0, tr.series[k].length - max); }
  }
}

window.hmiStats = { latencyMs: [], states: 0 };
function onState(msg) {
  S.snap = msg.data; S.seq = msg.seq; S.lastWall = Date.now();
  const st = window.hmiStats;  // publish (server) -> rendered here, same host clock
  st.states++;
  st.latencyMs.push(Date.now() - msg.wall * 1000);
  if (st.latencyMs.length > 200) st.latencyMs.shift();
  const c = $("conn"); c.dataset.seq = String(msg.seq); setConn(true);
  appendTrend(msg.data.trend);
  render();
  st.latencyMs[st.latencyMs.length - 1] = Date.now() - msg.wall * 1000;
}

// ---------------------------------------------------------------- helpers
function dev(name) { const d = S.snap && S.snap.devices[name]; return d && d.present ? d.state : null; }
function devStale(name) { const d = S.snap && S.snap.devices[name]; return !d || !d.present || d.stale || !d.state.comm_ok; }
function kv(pairs) {
  return pairs.map(([k, v, cls, id]) => `<span class="muted">${esc(k)}</span><span class="v ${cls || ""}"${id ? ` id="${id}"` : ""}>${v}</span>`).join("");
}
function yes(b) { return b ? "yes" : "no"; }
function setHTML(id, html) { const el = $(id); if (el && S.cache[id] !== html) { el.innerHTML = html; S.cache[id] = html; } }
function ai(id, label, value, unit, lo, hi, min, max, alarm) {
  // analog indicator: scale min..max, normal band lo..hi, pointer red when outside the band
  const clamp = v => Math.min(Math.max(v, min), max);
  const pct = v => ((clamp(v) - min) / (max - min) * 100).toFixed(1);
  const unknown = value === null || value === undefined;
  const bad = alarm !== undefined ? alarm : (!unknown && (value < lo || value > hi));
  return `<div class="ai" id="${id}" data-alarm="${bad ? 1 : 0}"><span>${esc(label)}</span>
    <div class="scale"><div class="band" style="left:${pct(lo)}%;width:${(pct(hi) - pct(lo)).toFixed(1)}%"></div>
    ${unknown ? "" : `<div class="ptr ${bad ? "alarm" : ""}" style="left:${pct(value)}%"></div>`}</div>
    <span class="val v ${bad ? "alarm" : ""} ${unknown ? "stale" : ""}">${unknown ? "?" : F(value)} <span class="u">${esc(unit)}</span></span></div>`;
}
function tileState(id, bad, stale) {
  const el = $(id); if (!el) return;
  el.classList.toggle("tile-alarm", !!bad && !stale);
  el.classList.toggle("stale", !!stale);
}
function permitted(action) { return S.session && S.session.allowed.includes(action); }

// ---------------------------------------------------------------- render
function render() {
  if (!S.snap) return;
  const s = S.snap;
  const iso = dev("isolator");
  $("sim-time").textContent = iso ? `sim ${Plot.fmtT(s.devices.isolator.state.t)}` : "";
  renderBanners();
  if (S.view === "overview") renderOverview();
  if (S.view === "isolator") renderIsolator();
  if (S.view === "vhp") renderVhp();
  if (S.view === "autoclave") renderAutoclave();
  if (S.view === "arm") renderArm();
  if (S.view === "tree") renderTree();
  if (S.view === "alarms") renderAlarms();
  if (S.view === "batch") renderBatch();
  if (S.view === "batches" && window.renderBatches) window.renderBatches(s);  // batches.js (issue 14 item 7)
}

function activeAlarms() {
  const a = (S.snap && S.snap.alarms && S.snap.alarms.list) || [];
  return a.filter(x => ACTIVE_ALARM_STATES.has(x.state));
}

function renderBanners() {
  const al = activeAlarms();
  const unack = al.filter(a => a.state === "UNACK" || a.state === "RTN_UNACK" || a.state === "ACTIVE");
  const b = $("alarm-banner");
  const top = al.reduce((best, a) => (!best || a.priority > best.priority ? a : best), null);
  b.className = "tag " + (unack.length && top ? PRIO_CLASS[top.isa_priority] || "alarm" : "");
  b.textContent = `alarms: ${al.length} active, ${unack.length} unacknowledged` + (S.snap.alarms.flood ? " - FLOOD" : "");
  $("nav-alarm-count").textContent = al.length ? `(${al.length})` : "";
  const batch = S.snap.batch;
  const bb = $("batch-banner");
  if (!S.snap.supervisor || !batch) { bb.className = "tag stale"; bb.textContent = "batch: supervisor not connected"; }
  else {
    bb.textContent = `batch ${batch.batch_id || "-"}: ${batch.state}` + (batch.phase ? ` / ${batch.phase}` : "");
    bb.className = "tag " + (["HELD", "HOLDING", "ABORTED", "ABORTING", "STOPPED"].includes(batch.state) ? "alarm" : "");
  }
}

function deviceSummary(name) {
  const st = dev(name);
  if (!st) return `<div class="big">no data</div>`;
  // a latched device offers its (signed) recovery: nothing resumes until a person decides it may
  const recover = /latched/.test(st.lifecycle_state || "")
    ? `<button class="cmd${permitted("device.recover") ? "" : " noright"}" data-recover="${name}" id="recover-${name}">Recover ${name}</button>` : "";
  const common = recover + `<div class="kv">${kv([["lifecycle", esc(st.lifecycle_state)], ["communication", st.comm_ok ? "ok" : "LOST", st.comm_ok ? "" : "alarm"]])}`;
  if (name === "isolator") {
    return common + kv([["ΔP", `${F(st.dp_pa)} Pa`, st.dp_alarm ? "alarm" : "", "tile-iso-dp"], ["decon", esc(st.decon_status)],
      ["particles ≥0.5 µm", `${F(st.particles_0_5_per_m3)} /m³`, st.particle_action ? "alarm" : st.particle_alert ? "p-medium" : ""],
      ["hatch A / B", `${st.hatch_door_a_open ? "OPEN" : "closed"} / ${st.hatch_door_b_open ? "OPEN" : "closed"}`],
      ["gloves in use", String(st.glove_ports.filter(g => g.in_use).length)]]) + "</div>";
  }
  if (name === "vhp") return common + kv([["phase", esc(st.phase)], ["cycle", esc(st.cycle_id || "-")], ["H2O2", `${F(st.h2o2_ppm)} ppm`], ["last result", esc(st.last_result)]]) + "</div>";
  if (name === "autoclave") return common + kv([["program", esc(st.program_id || "-")], ["phase", esc(st.phase)], ["chamber", `${F(st.chamber_t_c)} °C / ${F(st.chamber_p_kpa)} kPa`], ["F0", `${F(st.f0_min)} min`], ["last result", esc(st.last_result), st.last_result === "FAIL" ? "alarm" : ""]]) + "</div>";
  if (name === "arm") return common + kv([["mode", esc(st.mode)], ["drives", st.drives_enabled ? "on" : "off"], ["motion", esc(st.current_motion || (st.moving ? "moving" : "idle"))], ["protective stop", st.protective_stop ? "STOP" : "no", st.protective_stop ? "alarm" : ""]]) + "</div>";
  return common + "</div>";
}

function deviceAbnormal(name) {
  const st = dev(name); if (!st) return false;
  const latched = /latched/.test(st.lifecycle_state || "");
  if (name === "isolator") return latched || st.dp_alarm || st.particle_action || st.faults.length > 0;
  if (name === "arm") return latched || st.protective_stop || st.faults.length > 0;
  return latched || st.faults.length > 0 || st.last_result === "FAIL";
}

// ---------------------------------------------------------------- process equipment tiles (issue 14)
const PE_KINDS = ["incubator", "welder", "sealer", "centrifuge", "counter", "scanner"];
function peSummary(kind, d) {
  if (!d) return { html: `<div class="big stale">no data</div>`, bad: false };
  const g = d.signals || {}, P = (S.plant.process_equipment || {});
  const head = [["device", esc(d.device)], ["latched", d.latched ? esc(d.latched) : "no", d.latched ? "alarm" : ""]];
  const res = (k) => [["last result", esc(g[`${k}.last_result`] ?? "?"), g[`${k}.last_result`] === "FAIL" ? "alarm" : ""],
    ["busy", g[`${k}.busy`] == null ? "?" : yes(g[`${k}.busy`])], ["phase", esc(g[`${k}.phase`] ?? "?")]];
  let rows = [], extra = "", bad = !!d.latched;
  if (kind === "incubator") {
    const n = (P.incubator || {}).slots || 0;
    // out of band during a door access is expected (the alarms wait for their delay): shown, not alarmed
    bad = bad || g["incubator.overtemp_cutout"] === true;
    rows = [["T / CO₂ / RH", `${F(g["incubator.temp_c"])} °C / ${F(g["incubator.co2_pct"])} % / ${F(g["incubator.rh_pct"])} %`,
      g["incubator.in_spec"] === false ? "p-medium" : ""],
      ["over-temperature cut-out", g["incubator.overtemp_cutout"] ? "TRIPPED" : "no", g["incubator.overtemp_cutout"] ? "alarm" : ""], ["in spec", g["incubator.in_spec"] == null ? "?" : yes(g["incubator.in_spec"])],
      ["door", g["incubator.door_open"] ? "OPEN" : "closed", g["incubator.door_open"] ? "p-medium" : ""],
      ["slots free", `${g["incubator.slots_free"] ?? "?"} / ${n}`]];
    let cells = "";
    for (let i = 1; i <= n; i++) {
      const coi = g[`incubator.slot.${i}.coi`], c = g[`incubator.slot.${i}.container_id`];
      const title = coi == null ? "unknown" : coi ? `${g[`incubator.slot.${i}.batch_id`]} / ${coi}${c ? " / " + c : ""}` : "free";
      cells += `<span class="slot ${coi == null ? "stale" : coi ? (c ? "occupied" : "assigned") : "free"}" id="inc-slot-${i}" title="${esc(title)}">${i}</span>`;
    }
    extra = `<div class="slots">${cells}</div>`;
  } else if (kind === "welder") {
    rows = [...res("welder"), ["quality", F(g["welder.last_score"])], ["misaligned", g["welder.misaligned"] ? "YES" : "no", g["welder.misaligned"] ? "alarm" : ""]];
    bad = bad || g["welder.last_result"] === "FAIL" || !!g["welder.misaligned"];
  } else if (kind === "sealer") {
    rows = [...res("sealer"), ["quality", F(g["sealer.last_score"])]];
    bad = bad || g["sealer.last_result"] === "FAIL";
  } else if (kind === "centrifuge") {
    rows = [...res("centrifuge"), ["RCF", `${F(g["centrifuge.rcf_g"])} × g`], ["imbalance", g["centrifuge.imbalance"] ? "TRIP" : "no", g["centrifuge.imbalance"] ? "alarm" : ""]];
    bad = bad || g["centrifuge.last_result"] === "FAIL" || !!g["centrifuge.imbalance"];
  } else if (kind === "counter") {
    rows = [...res("counter"), ["viable", `${F(g["counter.last_viable_per_ml"])} /mL`], ["viability", `${F(g["counter.last_viability_pct"])} %`]];
    bad = bad || g["counter.last_result"] === "FAIL";
  } else if (kind === "scanner") {
    rows = (P.stations || []).map(st => [st, `${g[`scanner.${st}.occupied`] ? "●" : "○"} ${esc(g[`scanner.${st}.last_status`] || "-")}`,
      g[`scanner.${st}.last_status`] === "NO_READ" ? "p-medium" : ""]);
  }
  return { html: `<div class="kv">${kv([...head, ...rows])}</div>${extra}`, bad };
}
function renderProcessEquipment() {
  const P = S.plant.process_equipment, box = $("pe-tiles");
  if (!box) return;
  box.hidden = !(P && P.enabled);
  if (box.hidden) return;
  const all = (S.snap && S.snap.process_equipment) || {};
  for (const k of PE_KINDS) {
    const d = all[k], body = document.querySelector(`#tile-${k} .body`);
    const { html, bad } = peSummary(k, d);
    if (S.cache[`tile-${k}`] !== html) { body.innerHTML = html; S.cache[`tile-${k}`] = html; }
    tileState(`tile-${k}`, bad, !d || d.stale);
  }
}

function renderOverview() {
  for (const n of ["isolator", "vhp", "autoclave", "arm"]) {
    const body = document.querySelector(`#tile-${n} .body`);
    const html = deviceSummary(n);
    if (S.cache[`tile-${n}`] !== html) { body.innerHTML = html; S.cache[`tile-${n}`] = html; }
    tileState(`tile-${n}`, deviceAbnormal(n), devStale(n));
  }
  renderProcessEquipment();
  // batch
  const b = S.snap.batch;
  let bh;
  if (!S.snap.supervisor || !b) bh = `<div class="stale">supervisor not connected: no batch information</div>`;
  else bh = `<div class="kv">${kv([["batch", esc(b.batch_id || "-")], ["recipe", `${esc(b.recipe_id || "-")} v${b.recipe_version}`],
    ["state", esc(b.state), ["HELD", "HOLDING", "ABORTED", "ABORTING"].includes(b.state) ? "alarm" : "", "ov-batch-state"],
    ["phase", `${esc(b.unit_procedure)} / ${esc(b.operation)} / ${esc(b.phase)}`], ["phase state", esc(b.phase_state)],
    ["held because", esc(b.held_reason || "-"), b.held_reason ? "alarm" : ""]])}</div>
    <div class="progress"><div style="width:${(Math.max(0, Math.min(1, b.phase_progress || 0)) * 100).toFixed(0)}%"></div></div>`;
  const ob = document.querySelector("#ov-batch .body"); if (S.cache.ovb !== bh) { ob.innerHTML = bh; S.cache.ovb = bh; }
  // interlocks
  const il = S.snap.interlocks;
  let ih;
  if (!il) ih = `<div class="stale">no interlock status (supervisor not connected)</div>`;
  else {
    const bad = il.rules.filter(r => r.state !== "SATISFIED");
    ih = `<div>${il.rules.length} rules: ${il.rules.length - bad.length} satisfied, <b>${il.violated}</b> violated, <b>${il.unknown}</b> unknown${il.stale ? " (STALE)" : ""}</div>` +
      `<div class="scroll"><table id="interlock-table" class="il"><colgroup><col style="width:34%"><col style="width:22%"><col></colgroup>` +
      `<thead><tr><th>Rule (not satisfied)</th><th>Holds back</th><th>Why</th></tr></thead><tbody>` +
      bad.map(r => `<tr class="il-row" data-rule="${esc(r.rule_id)}"><td><b>${esc(r.rule_id)}</b>${r.instance ? ` [${esc(r.instance)}]` : ""} <span class="tag">${esc(r.state)}</span><br><span class="muted">${esc(r.title)}</span></td>` +
        `<td>${r.guards.map(esc).join(", ")}</td><td>${r.reasons.map(esc).join("; ")}</td></tr>`).join("") + `</tbody></table></div>`;
  }
  const oi = document.querySelector("#ov-interlocks .body"); if (S.cache.ovi !== ih) { oi.innerHTML = ih; S.cache.ovi = ih; }
  // alarms
  const al = activeAlarms();
  const counts = { emergency: 0, high: 0, medium: 0, low: 0 };
  al.forEach(a => counts[a.isa_priority] = (counts[a.isa_priority] || 0) + 1);
  const ah = `<div class="btns">${Object.entries(counts).map(([p, n]) => `<span class="tag ${n ? PRIO_CLASS[p] : ""}">${p}: ${n}</span>`).join("")}</div>` +
    `<table>${al.slice(0, 6).map(a => `<tr class="${PRIO_CLASS[a.isa_priority]}"><td>${esc(a.alarm_id)}</td><td>${esc(a.message)}</td><td>${esc(a.state)}</td></tr>`).join("")}</table>` +
    (S.snap.alarms.source === "nodes" ? `<div class="muted">alarm list from the device nodes (supervisor not connected)</div>` : "");
  const oa = document.querySelector("#ov-alarms .body"); if (S.cache.ova !== ah) { oa.innerHTML = ah; S.cache.ova = ah; }
  // nodes
  const lc = S.snap.lifecycle && S.snap.lifecycle.nodes;
  setHTML("ov-nodes", lc ? Object.entries(lc).map(([n, v]) => `<span class="tag ${v.health && v.health !== "ok" && v.health !== "active" ? "alarm" : ""}">${esc(n)}: ${esc(v.health || v.state || "?")}</span>`).join("")
    : `<span class="muted">no lifecycle manager status</span>`);
}

function renderIsolator() {
  const st = dev("isolator"), P = S.plant.isolator || {};
  if (!st) { setHTML("iso-ai", `<div class="stale">no isolator data</div>`); return; }
  const dp = P.dp || { low: 30, high: 80 }, p5 = P.particles_0_5 || { alert: 2000, action: 3520 }, p50 = P.particles_5_0 || { alert: 20, action: 29 }, af = P.airflow || { low: 0.36, high: 0.54 };
  setHTML("iso-ai",
    ai("ai-dp", "ΔP isolator/room", st.dp_pa, "Pa", dp.low, dp.high, 0, Math.max(120, dp.high * 1.5), st.dp_alarm || (st.dp_pa !== null && (st.dp_pa < dp.low || st.dp_pa > dp.high))) +
    ai("ai-p05", "Particles ≥0.5 µm", st.particles_0_5_per_m3, "/m³", 0, p5.alert, 0, p5.action * 1.3, st.particle_action || (st.particles_0_5_per_m3 > p5.action)) +
    ai("ai-p50", "Particles ≥5.0 µm", st.particles_5_0_per_m3, "/m³", 0, p50.alert, 0, p50.action * 1.3, st.particles_5_0_per_m3 > p50.action) +
    ai("ai-air", "Airflow", st.airflow_m_s, "m/s", af.low, af.high, 0, 0.8) +
    ai("ai-rh", "RH", st.rh_pct, "%", 0, 100, 0, 100, false));
  setHTML("iso-kv", kv([["lifecycle", esc(st.lifecycle_state), /latched/.test(st.lifecycle_state) ? "alarm" : ""], ["decon status", esc(st.decon_status)],
    ["leak test", esc(st.leak_test_result)], ["particle monitor", st.particle_monitor_running ? `running, ${F(st.sample_flow_l_min)} L/min` : "NOT RUNNING", st.particle_monitor_running ? "" : "alarm"],
    ["temperature", `${F(st.temp_c)} °C`], ["faults", esc(st.faults.join(", ") || "none"), st.faults.length ? "alarm" : ""]]));
  setHTML("iso-hatch", kv([["door A (room)", st.hatch_door_a_open ? "OPEN" : "closed", "", "hatch-a"], ["seal A", st.hatch_seal_a_inflated ? "inflated" : "deflated"],
    ["door B (isolator)", st.hatch_door_b_open ? "OPEN" : "closed", "", "hatch-b"], ["seal B", st.hatch_seal_b_inflated ? "inflated" : "deflated"],
    ["dwell remaining", `${F(st.hatch_dwell_remaining_s)} s`]]));
  setHTML("iso-rtp", st.rtps.map(r => `<div class="kv">${kv([["RTP", esc(r.rtp_id)], ["beta", r.beta_docked ? `docked${r.beta_locked ? ", locked" : ""} (${esc(r.beta_id)}, ${esc(r.beta_sterile_status)})` : "not docked"],
    ["alpha door", r.alpha_open ? "OPEN" : "closed"]])}</div>`).join(""));
  const sel = $("rtp-id");
  if (sel.options.length !== st.rtps.length) sel.innerHTML = st.rtps.map(r => `<option>${esc(r.rtp_id)}</option>`).join("");
  setHTML("iso-gloves", st.glove_ports.map(g => `<tr id="glove-${esc(g.port_id)}"><td><b>${esc(g.port_id)}</b></td><td>${yes(g.in_use)}</td><td>${yes(g.extended)}</td>
    <td class="${g.last_test_result === "FAIL" ? "alarm" : ""}">${esc(g.last_test_result)}</td><td>${F(g.last_test_drop_pa)} / ${F(g.last_test_limit_pa)} Pa</td>
    <td>${g.last_test_age_h === null ? "-" : F(g.last_test_age_h) + " h"}</td><td>${esc(g.last_test_user)}</td><td>${esc(g.glove_lot)}</td>
    <td><button class="cmd" data-glove="${esc(g.port_id)}" data-gcmd="test">Test</button><button class="cmd" data-glove="${esc(g.port_id)}" data-gcmd="extend">Extend</button><button class="cmd" data-glove="${esc(g.port_id)}" data-gcmd="retract">Retract</button></td></tr>`).join(""));
  const tr = S.trends.isolator;
  if (tr) {
    Plot.draw($("trend-iso-dp"), tr.t, [{ name: "ΔP Pa", data: tr.series.dp_pa || [] }], { band: [dp.low, dp.high] });
    Plot.draw($("trend-iso-part"), tr.t, [{ name: "≥0.5 µm /m³", data: tr.series.particles_0_5_per_m3 || [] }],
      { min: 0, lines: [{ y: p5.alert, label: "alert" }, { y: p5.action, label: "action" }] });
  }
}

function renderVhp() {
  const st = dev("vhp");
  if (!st) { setHTML("vhp-kv", `<span class="stale">no VHP data</span>`); return; }
  const cyc = (S.plant.vhp_cycles || {})[st.cycle_id] || null;
  setHTML("vhp-kv", kv([["lifecycle", esc(st.lifecycle_state)], ["cycle", esc(st.cycle_id || "-") + (cyc ? ` v${cyc.version}` : "")], ["run", esc(st.run_id || "-")],
    ["phase", esc(st.phase), st.phase === "FAILED" ? "alarm" : "", "vhp-phase"], ["in phase for", `${F(st.phase_elapsed_s)} s`],
    ["H2O2", `${F(st.h2o2_ppm)} ppm (${F(st.h2o2_mg_l)} mg/L)`], ["RH / RS", `${F(st.rh_pct)} % / ${F(st.rs_pct)} %`],
    ["injected / reservoir", `${F(st.injected_g)} g / ${F(st.reservoir_g)} g`], ["last result", esc(st.last_result), st.last_result === "FAIL" ? "alarm" : ""],
    ["faults", esc(st.faults.join(", ") || "none"), st.faults.length ? "alarm" : ""]]));
  const phases = ["PRECHECK", "DEHUMIDIFY", "CONDITION", "DECONTAMINATE", "AERATE", "COMPLETE"];
  const idx = phases.indexOf(st.phase);
  setHTML("vhp-phases", phases.map((p, i) => `<span class="ph ${i < idx ? "done" : i === idx ? "current" : ""}">${p}</span>`).join("") + (st.phase === "FAILED" ? `<span class="ph alarm">FAILED</span>` : ""));
  let total = null, left = "";
  if (cyc) {
    if (st.phase === "DECONTAMINATE") { total = cyc.dwell_s; left = `time left in dwell: ${F(Math.max(0, cyc.dwell_s - st.phase_elapsed_s))} s`; }
    else if (cyc.timeouts[st.phase]) { total = cyc.timeouts[st.phase]; left = `ends at its endpoint; time-out in ${F(Math.max(0, total - st.phase_elapsed_s))} s`; }
  }
  $("vhp-progress").style.width = total ? `${Math.min(100, st.phase_elapsed_s / total * 100).toFixed(0)}%` : "0";
  $("vhp-left").textContent = st.cycle_active ? left : "no cycle running";
  setHTML("vhp-ai", ai("ai-vhp-ppm", "H2O2", st.h2o2_ppm, "ppm", cyc ? cyc.min_ppm : 0, cyc ? cyc.target_ppm * 1.2 : 600, 0, 800, false) +
    ai("ai-vhp-rs", "Rel. saturation", st.rs_pct, "%", 0, cyc ? cyc.max_rs_pct : 90, 0, 110));
  const tr = S.trends.vhp;
  if (tr) {
    Plot.draw($("trend-vhp-ppm"), tr.t, [{ name: "H2O2 ppm", data: tr.series.h2o2_ppm || [] }], { min: 0, lines: cyc ? [{ y: cyc.min_ppm, label: "min dwell" }, { y: cyc.release_ppm, label: "release" }] : [] });
    Plot.draw($("trend-vhp-rh"), tr.t, [{ name: "RH %", data: tr.series.rh_pct || [] }, { name: "RS %", data: tr.series.rs_pct || [] }], { min: 0, max: 110, lines: cyc ? [{ y: cyc.max_rs_pct, label: "max RS" }] : [] });
  }
}

function renderAutoclave() {
  const st = dev("autoclave");
  if (!st) { setHTML("ac-kv", `<span class="stale">no autoclave data</span>`); return; }
  const prog = (S.plant.autoclave_programs || {})[st.program_id] || null;
  setHTML("ac-kv", kv([["lifecycle", esc(st.lifecycle_state)], ["program", esc(st.program_id || "-") + (prog ? ` (${esc(prog.description)})` : "")], ["run", esc(st.run_id || "-")],
    ["phase", esc(st.phase), "", "ac-phase"], ["in phase for", `${F(st.phase_elapsed_s)} s`], ["chamber", `${F(st.chamber_t_c)} °C, ${F(st.chamber_p_kpa)} kPa`],
    ["load / monitor probe", `${F(st.load_probe_t_c)} / ${F(st.monitor_probe_t_c)} °C`], ["last result", esc(st.last_result), st.last_result === "FAIL" ? "alarm" : ""],
    ["sterile load available", yes(st.sterile_load_available)], ["faults", esc(st.faults.join(", ") || "none"), st.faults.length ? "alarm" : ""]]));
  const target = prog && prog.f0_target_min ? prog.f0_target_min : 15;
  $("ac-f0").style.width = `${Math.min(100, (st.f0_min || 0) / target * 100).toFixed(0)}%`;
  $("ac-f0-text").textContent = `F0 ${F(st.f0_min)} of ${F(target)} min`;
  setHTML("ac-doors", kv([["load door (room)", `${st.door_load_open ? "OPEN" : "closed"}${st.door_load_locked ? ", locked" : ""}, gasket ${st.door_load_gasket_ok ? "ok" : "not sealed"}`],
    ["unload door (isolator)", `${st.door_unload_open ? "OPEN" : "closed"}${st.door_unload_locked ? ", locked" : ""}, gasket ${st.door_unload_gasket_ok ? "ok" : "not sealed"}`]]));
  const tr = S.trends.autoclave;
  if (tr) {
    Plot.draw($("trend-ac-t"), tr.t, [{ name: "chamber °C", data: tr.series.chamber_t_c || [] }, { name: "load probe °C", data: tr.series.load_probe_t_c || [] }],
      { band: prog && prog.setpoint_c ? [prog.setpoint_c, prog.setpoint_c + prog.band_c] : undefined });
    Plot.draw($("trend-ac-p"), tr.t, [{ name: "chamber kPa", data: tr.series.chamber_p_kpa || [] }, { name: "F0 min", data: tr.series.f0_min || [] }], { min: 0 });
  }
}

function renderArm() {
  const st = dev("arm");
  if (!st) { setHTML("arm-kv", `<span class="stale">no arm data</span>`); return; }
  setHTML("arm-kv", kv([["lifecycle", esc(st.lifecycle_state)], ["mode", esc(st.mode)], ["drives", st.drives_enabled ? "enabled" : "off"],
    ["speed class", esc(st.speed_class)], ["TCP speed", `${F(st.tcp_speed_m_s)} m/s`], ["TCP x, y, z", st.tcp_xyz.map(F).join(", ") + " m"],
    ["current motion", esc(st.current_motion || (st.moving ? "moving" : "none"))], ["at park / decon", `${yes(st.at_park)} / ${yes(st.at_decon)}`],
    ["protective stop", st.protective_stop ? `STOP: ${esc(st.protective_stop_reason)}` : "no", st.protective_stop ? "alarm" : ""],
    ["faults", esc(st.faults.join(", ") || "none"), st.faults.length ? "alarm" : ""]]));
  setHTML("arm-joints", st.joint_positions.map((q, i) => `<tr><td>J${i + 1}</td><td class="v">${F(q)}</td><td class="v">${F(st.joint_velocities[i])}</td></tr>`).join(""));
  const tr = S.trends.arm;
  if (tr) Plot.draw($("trend-arm"), tr.t, [{ name: "TCP m/s", data: tr.series.tcp_speed_m_s || [] }], { min: 0, lines: [{ y: 0.25, label: "250 mm/s" }] });
}

function renderTree() {
  const t = S.snap.tree;
  if (!t) { setHTML("tree-body", `<div class="stale">no behaviour tree published (supervisor not connected)</div>`); $("tree-id").textContent = ""; return; }
  $("tree-id").textContent = `${t.tree_id} - tick ${t.tick}${t.stale ? " (STALE)" : ""}`;
  const depth = i => { let d = 0, p = t.parents[i]; while (p >= 0 && d < 50) { d++; p = t.parents[p]; } return d; };
  setHTML("tree-body", t.names.map((n, i) => `<div class="tree-node st-${esc(t.statuses[i])}" data-status="${esc(t.statuses[i])}">${"  ".repeat(depth(i))}${esc(t.statuses[i].padEnd(8))} ${esc(n)} <span class="muted">${esc(t.types[i])}${t.messages[i] ? " - " + esc(t.messages[i]) : ""}</span></div>`).join(""));
}

function renderAlarms() {
  const a = (S.snap.alarms && S.snap.alarms.list) || [];
  $("alarm-source").textContent = S.snap.alarms.source === "supervisor" ? "(ISA-18.2 alarm manager)" : "(device nodes only: supervisor not connected, acknowledge unavailable)";
  const rank = { emergency: 0, high: 1, medium: 2, low: 3 };
  const rows = [...a].sort((x, y) => (rank[x.isa_priority] - rank[y.isa_priority]) || (y.raised.sec - x.raised.sec));
  setHTML("alarm-rows", rows.map(x => {
    const unack = x.state === "UNACK" || x.state === "RTN_UNACK";
    const ts = x.raised ? x.raised.sec + x.raised.nanosec * 1e-9 : 0;  // sim time, or wall epoch
    const t = !ts ? "" : ts > 1e8 ? new Date(ts * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC" : "sim " + Plot.fmtT(ts);
    const r = (S.plant.alarms || {})[x.alarm_id];  // rationalisation from alarms.yaml (ISA-18.2)
    const why = r ? `<div class="alarm-rat muted"><div class="alarm-consequence"><b>consequence:</b> ${esc(r.consequence)}</div><div class="alarm-response"><b>response:</b> ${esc(r.response)}</div></div>` : "";
    return `<tr class="alarm-row ${unack ? "unack" : ""}" data-alarm="${esc(x.alarm_id)}" data-state="${esc(x.state)}"><td class="${PRIO_CLASS[x.isa_priority]}">${esc(x.isa_priority)} (${x.priority})</td><td>${t}</td><td>${esc(x.source)}</td><td>${esc(x.alarm_id)}</td><td>${esc(x.message)}${why}</td><td>${esc(x.state)}</td>
      <td>${unack && S.snap.alarms.source === "supervisor" ? `<button class="cmd" data-ack="${esc(x.alarm_id)}">Acknowledge</button>` : ""}${shelveButton(x)}</td></tr>`;
  }).join("") || `<tr><td colspan="7" class="muted">no alarms</td></tr>`);
  renderEvents();
}

function shelveButton(x) {
  if (S.snap.alarms.source !== "supervisor") return "";
  // the permissions of users.yaml, as the API checks them (aseptic_cell/alarms/permissions.py)
  if (x.state === "SHELVED") return permitted("alarm.unshelve") ? `<button class="cmd" data-unshelve="${esc(x.alarm_id)}">Unshelve</button>` : "";
  if (!permitted("alarm.shelve")) return "";
  if (!(S.plant.alarms_shelvable || []).includes(x.alarm_id)) return "";
  return `<button class="cmd" data-shelve="${esc(x.alarm_id)}">Shelve</button>`;
}

function renderEvents() {
  if (!S.events.length && S.snap && S.snap.events) S.events = S.snap.events.slice().reverse();
  setHTML("event-list", S.events.slice(0, 60).map(e => {
    const refused = e.event === "refusal";
    return `<div class="${refused ? "p-medium" : ""}">${esc(new Date((e.wall || 0) * 1000).toISOString().slice(11, 19))} <b>${esc(e.kind === "alarm" ? "alarm" : e.event)}</b> ${esc(e.device || e.source || "")} ${esc(e.command || e.alarm_id || "")} ${esc(e.user || "")} ${esc(e.detail || e.reason || e.message || e.state || "")}</div>`;
  }).join(""));
}

function renderBatch() {
  const b = S.snap.batch;
  if (!S.snap.supervisor || !b) setHTML("batch-kv", `<span class="stale">supervisor not connected</span>`);
  else setHTML("batch-kv", kv([["batch", esc(b.batch_id || "-")], ["recipe", `${esc(b.recipe_id || "-")} v${b.recipe_version}`],
    ["ISA-88 state", esc(b.state), ["HELD", "HOLDING", "ABORTED", "ABORTING"].includes(b.state) ? "alarm" : "", "batch-state"], ["PackML", esc(b.packml_state)],
    ["unit procedure", esc(b.unit_procedure)], ["operation", esc(b.operation)], ["phase", esc(b.phase)], ["phase state", esc(b.phase_state)],
    ["held because", esc(b.held_reason || "-"), b.held_reason ? "alarm" : ""], ["record", esc(b.record_path || "-")]]));
  $("batch-progress").style.width = b ? `${(Math.max(0, Math.min(1, b.phase_progress || 0)) * 100).toFixed(0)}%` : "0";
  // timeline: the recipe's phases, done / current / to do
  const recipe = b && (S.plant.recipes || {})[b.recipe_id];
  if (recipe) {
    const cur = recipe.phases.findIndex(p => p.unit_procedure === b.unit_procedure && p.operation === b.operation && p.phase === b.phase);
    const held = ["HELD", "HOLDING"].includes(b.state);
    const complete = b.state === "COMPLETE";
    setHTML("batch-timeline", recipe.phases.map((p, i) => `<span class="ph ${complete || i < cur ? "done" : i === cur ? "current" + (held ? " held alarm" : "") : ""}" title="${esc(p.unit_procedure)} / ${esc(p.operation)} (${esc(p.type)})">${esc(p.phase)}</span>`).join(""));
  } else setHTML("batch-timeline", `<span class="muted">no recipe running</span>`);
  if (Date.now() - S.lastRecordFetch > 3000) { S.lastRecordFetch = Date.now(); loadRecord(); }
}

async function loadRecord() {
  const res = await api("GET", "/api/record");
  if (!res.ok) { $("record-verify").textContent = res.data && res.data.error ? res.data.error.detail : "no record"; $("record-verify").className = "tag"; return; }
  const r = res.data;
  const v = $("record-verify");
  v.textContent = r.verify.ok ? `chain verified: ${r.verify.count} entries, head ${r.verify.head_hash.slice(0, 12)}…` : `RECORD INVALID: ${r.verify.problem}`;
  v.className = "tag " + (r.verify.ok ? "" : "alarm");
  v.dataset.ok = r.verify.ok ? "1" : "0";
  setHTML("record-sigs", r.signatures.map(s => `<div class="sig">${esc(s)}</div>`).join(""));
  setHTML("record-rows", r.entries.slice().reverse().map(e => `<tr><td>${e.seq}</td><td>${esc(e.ts_iso)}</td><td>${esc(e.kind)}</td><td>${esc(e.actor)}${e.role ? ` (${esc(e.role)})` : ""}</td><td>${esc(e.action)}${e.signature ? `<div class="sig">${esc(e.signature)}</div>` : ""}</td><td>${esc(e.reason)}</td></tr>`).join(""));
}

// ---------------------------------------------------------------- navigation and commands
function show(view) {
  S.view = view;
  document.querySelectorAll("nav button").forEach(b => b.classList.toggle("active", b.dataset.view === view));
  document.querySelectorAll(".view").forEach(v => v.classList.toggle("active", v.id === `view-${view}`));
  S.cache = {};
  if (view === "batch") S.lastRecordFetch = 0;
  render();
}

function markRights() {
  const map = { hold: "batch.hold", restart: "batch.restart", stop: "batch.stop", abort: "batch.abort", reset: "batch.reset", start: "batch.start" };
  document.querySelectorAll("[data-batch]").forEach(b => b.classList.toggle("noright", !permitted(map[b.dataset.batch])));
  document.querySelectorAll("[data-pbatch]").forEach(b => b.classList.toggle("noright", !permitted(map[b.dataset.pbatch])));
  $("btn-bypass-request").classList.toggle("noright", !permitted("bypass.request"));
  $("btn-bypass-approve").classList.toggle("noright", !permitted("bypass.approve"));
  $("btn-bypass-remove").classList.toggle("noright", !permitted("bypass.remove"));
}

document.addEventListener("click", ev => {
  const el = ev.target.closest("button, .tile");
  if (!el) return;
  if (el.dataset.view) { show(el.dataset.view); return; }
  if (el.dataset.goto) { show(el.dataset.goto); return; }
  if (el.dataset.door) { command(`${el.dataset.dcmd} ${el.dataset.door}`, "/api/devices/door", { door: el.dataset.door, command: el.dataset.dcmd }); return; }
  if (el.dataset.port) {
    const body = { rtp: $("rtp-id").value || "RTP1", command: el.dataset.port };
    if (el.dataset.port === "dock_beta") Object.assign(body, { beta_id: $("beta-id").value, sterile_status: "sterile" });
    command(`${el.dataset.port} ${body.rtp}`, "/api/devices/port", body); return;
  }
  if (el.dataset.glove) { command(`glove ${el.dataset.gcmd} ${el.dataset.glove}`, "/api/devices/glove", { port: el.dataset.glove, command: el.dataset.gcmd }); return; }
  if (el.dataset.recover) { command(`recover ${el.dataset.recover}`, `/api/devices/${el.dataset.recover}/recover`, { reason: "" }, "device.recover"); return; }
  if (el.dataset.shelve) { const d = Number($("shelve-duration").value); command(`shelve ${el.dataset.shelve}`, `/api/alarms/${encodeURIComponent(el.dataset.shelve)}/shelve`, { duration_s: d, reason: "" }, "alarm.shelve"); return; }
  if (el.dataset.unshelve) { command(`unshelve ${el.dataset.unshelve}`, `/api/alarms/${encodeURIComponent(el.dataset.unshelve)}/unshelve`, { reason: "unshelved at HMI" }); return; }
  if (el.dataset.ack) { command(`acknowledge ${el.dataset.ack}`, `/api/alarms/${encodeURIComponent(el.dataset.ack)}/ack`, { comment: "acknowledged at HMI" }); return; }
  if (el.dataset.pbatch) {  // a patient batch's own hold / restart (Batches view, issue 14)
    const verb = el.dataset.pbatch, bid = el.dataset.bid;
    command(`batch ${verb} ${bid}`, `/api/batch/${verb}`, { reason: "", batch: bid }, `batch.${verb}`); return;
  }
  if (el.dataset.batch) {
    const verb = el.dataset.batch;
    if (verb === "start") { command(`start batch`, "/api/batch/start", { recipe_id: $("recipe-id").value, batch_id: $("batch-id").value }); return; }
    command(`batch ${verb}`, `/api/batch/${verb}`, { reason: "" }, `batch.${verb}`); return;
  }
  if (el.id === "btn-bypass-request") {
    const body = { rule: $("bypass-rule").value, duration_s: Number($("bypass-duration").value), reason: $("bypass-reason").value };
    command(`bypass ${body.rule}`, "/api/bypass", body, "bypass.request"); return;
  }
  if (el.id === "btn-bypass-approve") { const id = encodeURIComponent($("bypass-id").value); command(`approve bypass ${$("bypass-id").value}`, `/api/bypass/${id}/approve`, { reason: $("bypass-reason").value || "approved at HMI" }, "bypass.approve"); return; }
  if (el.id === "btn-bypass-remove") { const id = encodeURIComponent($("bypass-id").value); command(`remove bypass ${$("bypass-id").value}`, `/api/bypass/${id}/remove`, { reason: $("bypass-reason").value || "removed at HMI" }); return; }
  if (el.id === "logout") { api("POST", "/api/logout", {}).then(() => { S.session = null; if (S.ws) S.ws.close(); showLogin("logged out"); }); return; }
  if (el.id === "sign-cancel") { closeSign(null); }
});

$("login-form").addEventListener("submit", doLogin);
$("sign-form").addEventListener("submit", ev => {
  ev.preventDefault();
  closeSign({ signature: { user: $("sign-user").value, password: $("sign-password").value, meaning: $("sign-meaning").value }, reason: $("sign-reason").value });
});

async function afterLogin() {
  $("who").textContent = `${S.session.full_name} (${S.session.role})`;
  const p = await api("GET", "/api/plant");
  S.plant = p.ok ? p.data : {};
  if (S.plant.cell) $("cell-name").textContent = S.plant.cell.name;
  const recipes = Object.keys(S.plant.recipes || {});
  $("recipe-id").innerHTML = recipes.map(r => `<option>${esc(r)}</option>`).join("");
  if (!$("batch-id").value) $("batch-id").value = "B" + new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "");
  markRights();
  if (!S.ws || S.ws.readyState > 1) connect();
}

(async function boot() {
  const res = await api("GET", "/api/session");
  if (res.ok) { S.session = res.data; afterLogin(); } else showLogin();
})();
