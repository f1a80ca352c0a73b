"use strict";
// Fills the tables from /api/v1/status and refreshes every 10 seconds.

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
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
  const res = await fetch("api/v1/status", { cache: "no-store" });
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
  ]), 7);
  fill("certificates", s.certificates.map((c) => [
    cell(c.serial, "mono"), cell(c.status, "status-" + c.status), cell(c.issuer), cell(c.key),
    cell(day(c.not_after)), cell(c.names.join(", ")), cell(c.identity),
  ]), 7);
}

function loop() {
  refresh().catch((e) => {
    document.getElementById("updated").textContent = "update failed: " + e.message;
  });
}
loop();
setInterval(loop, 10000);
