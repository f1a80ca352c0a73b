"use strict";
// Fills the tables from /api/v1/status every 10 seconds; operators get
// approve, deny and revoke buttons, which call the API with the session's
// CSRF token.

let session = { role: "viewer", csrf: "" };
const canOperate = () => session.role === "operator" || session.role === "admin";

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function buttons(...specs) {
  const td = document.createElement("td");
  for (const [label, cls, action] of specs) {
    const b = document.createElement("button");
    b.textContent = label;
    if (cls) b.className = cls;
    b.addEventListener("click", () => action().then(loop, (e) => alert(e.message)));
    td.append(b, " ");
  }
  return td;
}

const reasons = ["unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn"];

// revokeCell is a reason and a Revoke button that asks to be pressed
// twice: the first press arms it, the second revokes.
function revokeCell(serial) {
  const td = document.createElement("td");
  const sel = document.createElement("select");
  sel.className = "reason";
  sel.setAttribute("aria-label", "revocation reason for " + serial);
  for (const r of reasons) {
    const o = document.createElement("option");
    o.value = o.textContent = r;
    sel.append(o);
  }
  const b = document.createElement("button");
  b.className = "danger revoke";
  b.textContent = "Revoke";
  b.addEventListener("click", () => {
    if (!b.classList.contains("armed")) {
      b.classList.add("armed");
      b.textContent = "Confirm revoke";
      return;
    }
    post("/api/v1/certificates/" + encodeURIComponent(serial) + "/revoke", { reason: sel.value })
      .then(() => { paused = false; loop(); }, (e) => alert(e.message));
  });
  for (const el of [sel, b]) {
    el.addEventListener("focus", () => { paused = true; });
    el.addEventListener("blur", () => { paused = false; });
  }
  td.append(sel, " ", b);
  return td;
}

// paused stops the refresh while an operator is choosing a reason.
let paused = false;

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "X-CSRF-Token": session.csrf, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : "",
  });
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
}

function fill(id, rows, columns) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (!rows || rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell("none", "empty");
    td.colSpan = columns;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    body.append(tr);
  }
}

const day = (s) => (s ? s.slice(0, 10) : "");
const time = (s) => (s ? s.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : "");

async function refresh() {
  const res = await fetch("/api/v1/status", { cache: "no-store" });
  if (res.status === 401) { location.href = "/login"; return; }
  if (!res.ok) throw new Error(res.status + " " + res.statusText);
  const s = await res.json();
  document.getElementById("version").textContent = "version " + s.version;
  document.getElementById("updated").textContent = "updated " + time(s.now);
  fill("generations", s.generations.map((g) => [
    cell(g.id), cell(g.role), cell(g.state + (g.rollover_due ? ", rollover due" : ""), "state-" + g.state), cell(g.key),
    cell(day(g.not_after)), cell(String(g.issued)), cell(g.fingerprint, "mono"),
  ]), 7);
  fill("pending", s.pending.map((p) => [
    cell(p.id, "mono"), cell(p.operation), cell(time(p.created_at)), cell(time(p.expires_at)),
    cell(p.subject), cell(p.names.join(", ")), cell(p.client),
    canOperate()
      ? buttons(["Approve", "approve", () => post("/api/v1/requests/" + encodeURIComponent(p.id) + "/approve")],
                ["Deny", "danger", () => post("/api/v1/requests/" + encodeURIComponent(p.id) + "/deny")])
      : cell(""),
  ]), 8);
  fill("certificates", s.certificates.map((c) => [
    cell(c.serial, "mono"), cell(c.status, "status-" + c.status), cell(c.issuer), cell(c.key),
    cell(day(c.not_after)), cell(c.names.join(", ")), cell(c.identity),
    canOperate() && c.status === "valid" ? revokeCell(c.serial) : cell(""),
  ]), 8);
}

function loop() {
  if (paused) return;
  refresh().catch((e) => {
    document.getElementById("updated").textContent = "update failed: " + e.message;
  });
}

async function start() {
  const res = await fetch("/api/v1/session", { cache: "no-store" });
  if (res.status === 401) { location.href = "/login"; return; }
  if (res.ok) session = await res.json();
  if (session.signed_in) {
    document.getElementById("who").textContent = session.user + " (" + session.role + ")";
    const out = document.getElementById("signout");
    out.hidden = false;
    out.addEventListener("click", () => post("/logout").then(() => { location.href = "/login"; }));
  }
  loop();
  setInterval(loop, 10000);
}
start();
