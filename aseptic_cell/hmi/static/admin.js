// User administration page: plain fetch() against /api/admin/* and /api/password (user_admin.py).
// No inline script (the HMI's Content-Security-Policy); text is set with textContent only.
"use strict";
let csrf = "";
let me = "";

function $(sel) { return document.querySelector(sel); }

async function call(method, url, body) {
  const headers = {"Content-Type": "application/json"};
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(url, {method, headers, body: body ? JSON.stringify(body) : undefined,
                              credentials: "same-origin"});
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = data.error || {};
    throw new Error(`${e.code || r.status}${e.upstream_code ? " / " + e.upstream_code : ""}: ${e.detail || ""}`);
  }
  return data;
}

function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }

async function refresh() {
  const data = await call("GET", "/api/admin/users");
  const roles = $("#change-form select[name=role]");
  roles.replaceChildren(...data.roles.map((r) => { const o = document.createElement("option"); o.textContent = r; return o; }));
  const body = $("#users tbody");
  body.replaceChildren();
  for (const u of data.users) {
    const tr = document.createElement("tr");
    cell(tr, u.id); cell(tr, u.full_name); cell(tr, u.role);
    cell(tr, u.disabled ? "DISABLED" : (u.locked ? "LOCKED" : "active"));
    cell(tr, u.must_change_password ? "must change" : (u.password_expired ? "EXPIRED" : `until ${u.password_expires || "-"}`));
    cell(tr, Object.entries(u.qualifications).map(([c, q]) => `${c}${q.current ? "" : " (expired)"} ${q.until.slice(0, 10)}`).join(", ") || "none");
    body.appendChild(tr);
  }
  const audit = await call("GET", "/api/admin/audit");
  $("#audit-state").textContent = audit.chain_ok ? "hash chain verified" : `CHAIN FAILED: ${audit.problems.join("; ")}`;
  const ab = $("#audit tbody");
  ab.replaceChildren();
  for (const e of audit.entries.slice(-200).reverse()) {
    const tr = document.createElement("tr");
    cell(tr, String(e.id)); cell(tr, new Date(e.t * 1000).toISOString()); cell(tr, e.actor); cell(tr, e.action);
    cell(tr, e.target); cell(tr, e.signature.user_id ? `${e.signature.full_name} (${e.signature.meaning})` : "-");
    cell(tr, JSON.stringify(e.detail));
    ab.appendChild(tr);
  }
}

$("#passwd-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    await call("POST", "/api/password", Object.fromEntries(f));
    $("#passwd-out").textContent = "password changed; log in with the new one";
    ev.target.reset();
  } catch (e) { $("#passwd-out").textContent = `refused: ${e.message}`; }
});

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const s = await call("POST", "/api/login", Object.fromEntries(f));
    csrf = s.csrf; me = s.user;
    $("#who").textContent = `logged in as ${s.full_name} (${s.user}, ${s.role}); idle time-out ${s.idle_timeout_s} s`;
    await refresh();
    $("#admin").hidden = false;
    $("#login-out").textContent = "";
  } catch (e) { $("#login-out").textContent = `refused: ${e.message}`; }
});

$("#change-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = Object.fromEntries(new FormData(ev.target));
  const signature = {user: me, password: f.sig_password, meaning: "responsibility"};
  const id = encodeURIComponent(f.user_id);
  const base = {reason: f.reason, signature};
  const req = {
    add: ["/api/admin/users", {...base, user_id: f.user_id, full_name: f.full_name, role: f.role, initial_password: f.new_password}],
    disable: [`/api/admin/users/${id}/disable`, base],
    enable: [`/api/admin/users/${id}/enable`, base],
    reset: [`/api/admin/users/${id}/reset`, {...base, new_password: f.new_password}],
    role: [`/api/admin/users/${id}/role`, {...base, role: f.role}],
    qualify: [`/api/admin/users/${id}/qualify`, {...base, classes: f.classes.split(",").map((c) => c.trim()).filter(Boolean), until: f.until}],
  }[f.op];
  try {
    const r = await call("POST", req[0], req[1]);
    $("#change-out").textContent = `${r.action} ${r.target}: signed by ${r.signed.full_name} at ${r.signed.at}`;
    ev.target.querySelector("input[name=sig_password]").value = "";
    await refresh();
  } catch (e) { $("#change-out").textContent = `refused: ${e.message}`; }
});
