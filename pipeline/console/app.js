// junction console: plain JavaScript, no build step, no third-party code.
// Geometry: rules are in frame pixels of the calibration's frame_size; the snapshot is the frame at
// the detector's scale, so every drawing scales frame pixels by (shown width / frame width).
"use strict";

const $ = (s, el = document) => el.querySelector(s);
let csrf = "";
let site = "";
let binSeconds = 60;
const cameras = new Map(); // id -> {status, rules, el}
let counts = {};           // camera -> {current, closed, history}
let reloadGeneration = 0;
let live = null;

const COLOURS = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#ff7b72", "#79c0ff", "#56d364"];

async function api(path, opts = {}) {
  opts.headers = Object.assign({ "X-CSRF-Token": csrf }, opts.headers || {});
  opts.credentials = "same-origin";
  const r = await fetch(path, opts);
  if (r.status === 401) { showLogin(); throw new Error("not logged in"); }
  return r;
}

function showLogin(message) {
  if (live) { live.close(); live = null; }
  $("#console").hidden = true;
  $("#editor").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#login-password").focus();
}

async function start() {
  const r = await fetch("/api/session", { credentials: "same-origin" });
  if (r.status === 401) return showLogin();
  const s = await r.json();
  csrf = s.csrf;
  $("#logout").hidden = !s.login;
  boot();
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await fetch("/api/login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ password: $("#login-password").value }),
  });
  if (r.ok) {
    csrf = (await r.json()).csrf;
    $("#login-password").value = "";
    $("#login").hidden = true;
    $("#logout").hidden = false;
    boot();
  } else {
    $("#login-error").textContent = (await r.text()).trim() || `refused (${r.status})`;
  }
});

$("#logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  showLogin("logged out");
});

async function boot() {
  $("#login").hidden = true;
  $("#console").hidden = false;
  const st = await (await api("/api/state")).json();
  site = st.site;
  binSeconds = st.bin_seconds;
  counts = st.counts || {};
  reloadGeneration = st.reload.generation;
  showReload(st.reload);
  $("#site").textContent = site;
  $("#bin-len").textContent = `(current ${binSeconds / 60}-min bin and the last closed)`;
  $("#tiles").textContent = "";
  cameras.clear();
  for (const c of st.cameras) {
    const cam = { id: c.id, status: c.status, editable: c.editable, rules: null, el: makeTile(c) };
    cameras.set(c.id, cam);
    loadRules(cam);
  }
  updateTiles(st);
  renderCounts();
  drawChart();
  initExport();
  openLive();
}

function makeTile(c) {
  const el = document.createElement("article");
  el.className = "tile";
  el.dataset.camera = c.id;
  el.innerHTML = `<div class="frame"><img alt="camera ${c.id}"><canvas></canvas><div class="offline" hidden></div></div>
    <div class="info"><strong>${c.id}</strong> <span class="badge state"></span><span class="since muted"></span>
    <span class="fps"></span><span class="dropped"></span><span class="age"></span><span class="inference"></span>
    <span class="scale muted"></span>
    ${c.editable ? '<button class="edit">Edit rules</button>' : ""}
    ${c.collect ? '<button class="collect" title="Save frames worth labelling, with pre-labels, into the box\'s collect folder">Collect frames (10 min)</button><span class="collecting muted"></span>' : ""}</div>`;
  $("#tiles").appendChild(el);
  const img = $("img", el);
  img.dataset.busy = "";
  img.addEventListener("load", () => { img.dataset.busy = ""; img.dataset.loaded = "1"; drawTileRules(cameras.get(c.id)); });
  img.addEventListener("error", () => { img.dataset.busy = ""; });
  const edit = $(".edit", el);
  if (edit) edit.addEventListener("click", () => openEditor(cameras.get(c.id)));
  const collect = $(".collect", el);
  if (collect) collect.addEventListener("click", () => startCollect(c.id, el));
  return el;
}

async function startCollect(id, el) {
  const r = await api(`/api/cameras/${encodeURIComponent(id)}/collect`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ minutes: 10 }),
  }).catch(() => null);
  if (!r || !r.ok) {
    $(".collecting", el).textContent = `not started: ${r ? (await r.text()) : "no answer"}`;
  }
}

function showCollecting(st) {
  const run = st.collecting;
  for (const cam of cameras.values()) {
    const line = $(".collecting", cam.el);
    const button = $(".collect", cam.el);
    if (!line) continue;
    if (button) button.disabled = !!(run && run.running);
    if (!run || run.camera !== cam.id) continue;
    line.textContent = run.running
      ? `collecting: ${run.saved} frames saved (until ${run.until.slice(11, 16)} UTC)`
      : run.error ? `collection failed: ${run.error}`
      : run.full ? `the folder is full (${run.total} frames in ${run.folder})`
      : `collected ${run.saved} frames (${run.total} in ${run.folder})`;
  }
}

async function loadRules(cam) {
  const r = await api(`/api/cameras/${encodeURIComponent(cam.id)}/rules`).catch(() => null);
  if (r && r.ok) { cam.rules = await r.json(); drawTileRules(cam); }
}

function fmtAge(s) { return s == null ? "no frame yet" : s < 1 ? "now" : `${s.toFixed(1)} s ago`; }

function updateTiles(st) {
  for (const c of st.cameras) {
    const cam = cameras.get(c.id);
    if (!cam || !c.status) continue;
    const s = c.status;
    cam.status = s;
    const el = cam.el;
    el.className = `tile ${s.state}`;
    const badge = $(".state", el);
    badge.className = `badge state ${s.state}`;
    badge.textContent = s.state;
    $(".since", el).textContent = s.state === "up" ? "" : `since ${s.since.replace("T", " ")}`;
    $(".fps", el).textContent = `${s.fps.toFixed(1)} frames/s`;
    $(".dropped", el).textContent = `${s.dropped} dropped`;
    $(".age", el).textContent = `last frame ${fmtAge(s.age_s)}`;
    $(".inference", el).textContent = `inference ${s.inference_ms.toFixed(1)} ms`;
    $(".scale", el).textContent = s.scale ? `scale: ${s.scale}` : "";
    const off = $(".offline", el);
    off.hidden = s.state === "up";
    off.textContent = s.state === "up" ? "" : `${s.state.toUpperCase()}${s.error ? ": " + s.error : ""}`;
    const img = $("img", el);
    if (s.state === "up" && !img.dataset.busy) {
      img.dataset.busy = "1";
      img.src = `/snapshot/${encodeURIComponent(c.id)}.jpg?t=${Date.now()}`;
    }
  }
}

// --- drawing rules --------------------------------------------------------------------------------

function inNormal(line) {
  const [[ax, ay], [bx, by]] = line.points;
  const [dx, dy] = [bx - ax, by - ay];
  const n = Math.hypot(dx, dy) || 1;
  // Walking from a to b with y down, "left" is (dy, -dx).
  return line.in_side === "right" ? [-dy / n, dx / n] : [dy / n, -dx / n];
}

function drawRules(ctx, rules, k, opts = {}) {
  if (!rules) return;
  const P = ([x, y]) => [x * k, y * k];
  const poly = (pts, stroke, fill, label) => {
    ctx.beginPath();
    pts.map(P).forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.fillStyle = fill; ctx.fill();
    ctx.strokeStyle = stroke; ctx.lineWidth = 1.5; ctx.stroke();
    if (label) { const [x, y] = P(pts[0]); ctx.fillStyle = stroke; ctx.fillText(label, x + 3, y + 12); }
  };
  ctx.font = "12px system-ui";
  const bad = opts.bad || new Set();
  (rules.approaches || []).forEach((a, i) => {
    const c = bad.has(`approach:${i}`) ? "#f85149" : "#a371f7";
    if (a.polygon) poly(a.polygon, c, "rgba(163,113,247,.10)", `approach ${a.id}`);
    if (a.line) drawSegment(ctx, a.line.map(P), c, `approach ${a.id}`);
  });
  (rules.zones || []).forEach((z, i) => poly(z.polygon, bad.has(`zone:${i}`) ? "#f85149" : "#3fb950", "rgba(63,185,80,.10)", `zone ${z.id}`));
  (rules.loops || []).forEach((l, i) => poly(l.polygon, bad.has(`loop:${i}`) ? "#f85149" : "#d29922", "rgba(210,153,34,.18)", `loop ${l.id} (ch ${l.channel})`));
  (rules.lines || []).forEach((l, i) => {
    const pts = l.points.map(P);
    const sel = opts.selected && opts.selected.kind === "line" && opts.selected.index === i;
    const colour = bad.has(`line:${i}`) ? "#f85149" : sel ? "#ffffff" : "#ffd33d";
    drawSegment(ctx, pts, colour, l.id);
    // The arrow points to the "in" side.
    const [nx, ny] = inNormal(l);
    const mx = (pts[0][0] + pts[1][0]) / 2, my = (pts[0][1] + pts[1][1]) / 2;
    const len = 22;
    const tx = mx + nx * len, ty = my + ny * len;
    ctx.beginPath(); ctx.moveTo(mx, my); ctx.lineTo(tx, ty); ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(tx, ty);
    ctx.lineTo(tx - nx * 7 - ny * 5, ty - ny * 7 + nx * 5);
    ctx.lineTo(tx - nx * 7 + ny * 5, ty - ny * 7 - nx * 5);
    ctx.closePath(); ctx.fillStyle = colour; ctx.fill();
    ctx.fillText("in", tx + nx * 8 - 5, ty + ny * 8 + 4);
  });
}

function drawSegment(ctx, [[ax, ay], [bx, by]], colour, label) {
  ctx.strokeStyle = colour; ctx.lineWidth = 3;
  ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke();
  ctx.lineWidth = 1.5;
  ctx.fillStyle = colour;
  for (const [x, y] of [[ax, ay], [bx, by]]) { ctx.beginPath(); ctx.arc(x, y, 4, 0, 7); ctx.fill(); }
  if (label) ctx.fillText(label, ax + 5, ay - 5);
}

function drawTileRules(cam) {
  if (!cam || !cam.rules || !cam.rules.frame_size) return;
  const canvas = $("canvas", cam.el);
  const box = canvas.getBoundingClientRect();
  canvas.width = box.width; canvas.height = box.height;
  const [fw, fh] = cam.rules.frame_size;
  // The image is letterboxed into the tile (object-fit: contain).
  const k = Math.min(box.width / fw, box.height / fh);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, (box.width - fw * k) / 2, (box.height - fh * k) / 2);
  ctx.clearRect(-box.width, -box.height, 3 * box.width, 3 * box.height);
  // Lines and zones are in the picture already; approaches and loops are drawn over it.
  drawRules(ctx, { approaches: cam.rules.approaches, loops: cam.rules.loops }, k);
}

// --- live counts ----------------------------------------------------------------------------------

function total(dirs, dir) {
  const d = (dirs || {})[dir] || {};
  return Object.values(d).reduce((a, b) => a + b, 0);
}

// "in: car 2, motorcycle 5 · out: car 1": per direction and class.
function classes(dirs) {
  return ["in", "out"]
    .filter((d) => dirs && dirs[d] && Object.keys(dirs[d]).length)
    .map((d) => `${d}: ${Object.entries(dirs[d]).map(([c, n]) => `${c} ${n}`).join(", ")}`)
    .join(" · ");
}

function renderCounts() {
  const root = $("#counts");
  root.textContent = "";
  for (const [id, cam] of cameras) {
    const c = counts[id] || { current: {}, closed: [], history: [] };
    const lines = new Set([...(cam.rules ? cam.rules.lines.map((l) => l.id) : []), ...Object.keys(c.current)]);
    const t = document.createElement("table");
    t.dataset.camera = id;
    let html = `<tr><th>${id}</th><th>in</th><th>out</th><th>total</th><th>by class</th></tr>`;
    for (const l of lines) {
      const d = c.current[l] || {};
      const i = total(d, "in"), o = total(d, "out");
      html += `<tr data-line="${l}"><td>${l}</td><td class="in">${i}</td><td class="out">${o}</td><td class="total">${i + o}</td><td class="muted">${classes(d)}</td></tr>`;
    }
    for (const b of [...(c.closed || [])].reverse().slice(0, 3)) {
      const sum = Object.entries(b.lines).map(([l, d]) => `${l} ${total(d, "in")} in / ${total(d, "out")} out`).join(", ") || "0 vehicles";
      const why = b.reloaded ? " (closed by a rules reload; goes on)" : b.partial ? " (partial)" : "";
      html += `<tr class="closed ${b.partial ? "partial" : ""}"><td colspan="5">${b.bin_start.slice(11, 16)} closed: ${sum}` +
        `${why}${b.revision > 1 ? ` rev ${b.revision}` : ""}</td></tr>`;
    }
    t.innerHTML = html;
    root.appendChild(t);
  }
}

function drawChart() {
  const canvas = $("#chart");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const series = new Map();
  const starts = new Set();
  for (const [cam, c] of Object.entries(counts)) {
    for (const [start, lines] of c.history || []) {
      starts.add(start);
      for (const [l, n] of Object.entries(lines)) {
        const key = cameras.size > 1 ? `${cam}/${l}` : l;
        if (!series.has(key)) series.set(key, new Map());
        series.get(key).set(start, n);
      }
    }
  }
  const xs = [...starts].sort().slice(-60);
  const max = Math.max(1, ...[...series.values()].flatMap((m) => [...m.values()]));
  const [W, H, L, B] = [canvas.width, canvas.height, 28, 16];
  ctx.strokeStyle = "#444c56"; ctx.fillStyle = "#8a939e"; ctx.font = "10px system-ui";
  ctx.beginPath(); ctx.moveTo(L, 4); ctx.lineTo(L, H - B); ctx.lineTo(W, H - B); ctx.stroke();
  ctx.fillText(String(max), 2, 12); ctx.fillText("0", 14, H - B);
  if (xs.length) { ctx.fillText(xs[0].slice(11, 16), L, H - 3); ctx.fillText(xs[xs.length - 1].slice(11, 16), W - 30, H - 3); }
  const legend = [];
  [...series.entries()].forEach(([key, m], si) => {
    const colour = COLOURS[si % COLOURS.length];
    legend.push(`<span style="color:${colour}">■ ${key}</span>`);
    ctx.strokeStyle = colour; ctx.lineWidth = 1.5; ctx.beginPath();
    xs.forEach((x, i) => {
      const px = L + (i + 0.5) * (W - L) / Math.max(xs.length, 1);
      const py = H - B - (m.get(x) || 0) / max * (H - B - 6);
      i ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
    });
    ctx.stroke();
  });
  $("#chart-legend").innerHTML = legend.join(" ") || "no closed bins yet";
}

// The newest 200 events, newest first.
function prependEvent(li) {
  const list = $("#events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function addEvent(e) {
  const li = document.createElement("li");
  li.dataset.rule = e.rule;
  li.dataset.kind = e.kind;
  const what = e.kind === "crossing" ? `${e.direction}` : e.kind === "movement" ? `→ ${e.to} ${e.direction}` : e.kind;
  li.textContent = `${e.at.slice(11, 19)} ${e.camera} ${e.rule} ${what} ${e.class} #${e.track}` +
    (e.speed_plausible ? ` ${e.speed_kmh} km/h` : "");
  prependEvent(li);
}

function addDetector(d) {
  const li = document.createElement("li");
  li.dataset.rule = d.detector;
  li.dataset.kind = d.event_code === 82 ? "loop_on" : "loop_off";
  li.textContent = `${d.at.slice(11, 19)} ${d.camera} ${d.detector} ${d.event_code === 82 ? "on" : "off"} (channel ${d.channel})`;
  prependEvent(li);
}

function applyReport(cam, bin, reloaded, changes) {
  const c = counts[cam] || (counts[cam] = { current: {}, closed: [], history: [] });
  if (reloaded) {
    for (const ch of changes || []) if (ch.kind === "line" && ch.change !== "added") delete c.current[ch.id];
  } else {
    c.current = {};
  }
  c.closed = (c.closed || []).filter((b) => b.bin_start !== bin.bin_start).concat([bin]).slice(-5);
  const totals = {};
  for (const [l, d] of Object.entries(bin.lines)) totals[l] = total(d, "in") + total(d, "out");
  c.history = (c.history || []).filter(([s]) => s !== bin.bin_start).concat([[bin.bin_start, totals]]).slice(-60);
}

function openLive() {
  if (live) live.close();
  live = new EventSource("/api/live");
  live.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "event") {
      addEvent(msg);
      if (msg.kind === "crossing") {
        const c = counts[msg.camera] || (counts[msg.camera] = { current: {}, closed: [], history: [] });
        const d = (c.current[msg.rule] = c.current[msg.rule] || {});
        const k = (d[msg.direction] = d[msg.direction] || {});
        k[msg.class] = (k[msg.class] || 0) + 1;
        renderCounts();
      }
    } else if (msg.type === "detector") {
      addDetector(msg);
    } else if (msg.type === "report") {
      applyReport(msg.camera, msg.bin, msg.reloaded, msg.changes);
      renderCounts();
      drawChart();
    } else if (msg.type === "reload") {
      showReload(msg.reload);
      if (msg.reload.generation !== reloadGeneration) {
        reloadGeneration = msg.reload.generation;
        for (const cam of cameras.values()) loadRules(cam).then(renderCounts);
      }
      if (editor.waiting) editorApplied(msg.reload);
    }
  };
  live.onerror = () => { $("#reload-status").textContent = "live stream interrupted; reconnecting…"; };
}

let lastReload = {};
function showReload(r) {
  lastReload = r;
  if (!r.generation) { $("#reload-status").textContent = ""; return; }
  $("#reload-status").textContent = `${r.ok ? "rules" : "reload refused"}: ${r.message} (${(r.at || "").toString().slice(0, 19)})`;
  $("#reload-status").className = r.ok ? "muted" : "error";
}

setInterval(async () => {
  if ($("#console").hidden) return;
  try {
    const st = await (await api("/api/state")).json();
    updateTiles(st);
    showCollecting(st);
  } catch (_) { /* shown by the login screen */ }
}, 1000);

// --- export ---------------------------------------------------------------------------------------

function initExport() {
  const now = new Date();
  const iso = (d) => d.toISOString().slice(0, 16);
  $("#export-to").value = iso(new Date(now.getTime() + 15 * 60000));
  $("#export-from").value = iso(new Date(now.getTime() - 3600000));
}

$("#export-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const file = ev.submitter ? ev.submitter.value : "tmc.csv";
  const q = new URLSearchParams({ from: $("#export-from").value + ":00Z", to: $("#export-to").value + ":00Z", interval: $("#export-interval").value });
  window.location = `/api/export/${file}?${q}`;
});

// --- editor ---------------------------------------------------------------------------------------

const editor = { cam: null, rules: null, tool: "select", selected: null, drag: null, draft: null, bad: new Set(), notes: [], waiting: false };

function k() {
  const canvas = $("#editor-canvas");
  return canvas.width / editor.rules.frame_size[0];
}

function toFrame(ev) {
  const r = $("#editor-canvas").getBoundingClientRect();
  const s = k();
  return [Math.round((ev.clientX - r.left) / s), Math.round((ev.clientY - r.top) / s)];
}

async function openEditor(cam) {
  const r = await api(`/api/cameras/${encodeURIComponent(cam.id)}/rules`);
  const doc = await r.json();
  if (!r.ok) { alert(JSON.stringify(doc)); return; }
  editor.cam = cam;
  editor.rules = doc;
  editor.selected = null;
  editor.bad = new Set();
  editor.notes = [];
  $("#editor-problems").textContent = "";
  $("#editor-status").textContent = "";
  $("#editor-camera").textContent = `Rules of ${cam.id}`;
  $("#editor").hidden = false;
  const img = $("#editor-image");
  img.onload = () => {
    const c = $("#editor-canvas");
    c.width = img.clientWidth; c.height = img.clientWidth * doc.frame_size[1] / doc.frame_size[0];
    c.style.width = `${c.width}px`; c.style.height = `${c.height}px`;
    redraw();
  };
  img.src = `/snapshot/${encodeURIComponent(cam.id)}.jpg?t=${Date.now()}`;
  setTool("select");
}

function setTool(t) {
  editor.tool = t;
  editor.draft = null;
  document.querySelectorAll(".tool").forEach((b) => b.classList.toggle("active", b.dataset.tool === t));
  redraw();
}

document.querySelectorAll(".tool").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
$("#close-editor").addEventListener("click", () => { $("#editor").hidden = true; });

function list(kind) {
  return { line: editor.rules.lines, zone: editor.rules.zones, approach: editor.rules.approaches, loop: editor.rules.loops }[kind];
}

function shapePoints(kind, s) { return kind === "line" ? s.points : s.polygon || s.line; }

function redraw() {
  if (!editor.rules) return;
  const c = $("#editor-canvas");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  drawRules(ctx, editor.rules, k(), { selected: editor.selected, bad: editor.bad });
  if (editor.draft) {
    ctx.strokeStyle = "#ffffff"; ctx.setLineDash([5, 4]); ctx.lineWidth = 2;
    ctx.beginPath();
    editor.draft.points.forEach(([x, y], i) => (i ? ctx.lineTo(x * k(), y * k()) : ctx.moveTo(x * k(), y * k())));
    if (editor.draft.hover) ctx.lineTo(editor.draft.hover[0] * k(), editor.draft.hover[1] * k());
    ctx.stroke(); ctx.setLineDash([]);
  }
  // Problems beside their shapes.
  ctx.font = "13px system-ui"; ctx.fillStyle = "#f85149";
  for (const n of editor.notes) {
    const s = (list(n.kind) || [])[n.index];
    if (!s) continue;
    const [x, y] = shapePoints(n.kind, s)[0];
    ctx.fillText(n.message, x * k() + 6, y * k() + 18);
  }
  const sel = editor.selected;
  $("#selection").hidden = !sel;
  if (sel) {
    $("#rule-id").value = list(sel.kind)[sel.index].id;
    $("#flip").hidden = sel.kind !== "line";
  }
}

function nextId(kind) {
  const ids = new Set(["line", "zone", "approach", "loop"].flatMap((kd) => list(kd).map((s) => s.id)));
  for (let i = 1; ; i++) if (!ids.has(`${kind}-${i}`)) return `${kind}-${i}`;
}

function defaultAnchor() {
  const l = editor.rules.lines[0] || editor.rules.zones[0];
  return l ? l.anchor : "bottom_centre";
}

function nearestVertex(p) {
  let best = null;
  const tol = 10 / k();
  for (const kind of ["line", "zone", "approach", "loop"]) {
    list(kind).forEach((s, index) => {
      shapePoints(kind, s).forEach((q, vertex) => {
        const d = Math.hypot(q[0] - p[0], q[1] - p[1]);
        if (d <= tol && (!best || d < best.d)) best = { kind, index, vertex, d };
      });
    });
  }
  return best;
}

function segDist(p, a, b) {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const t = Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy || 1)));
  return Math.hypot(a[0] + t * dx - p[0], a[1] + t * dy - p[1]);
}

function shapeAt(p) {
  const tol = 8 / k();
  for (const kind of ["line", "loop", "zone", "approach"]) {
    const items = list(kind);
    for (let index = items.length - 1; index >= 0; index--) {
      const pts = shapePoints(kind, items[index]);
      for (let i = 0; i < pts.length; i++) {
        if (pts.length === 2 && i === 1) break;
        if (segDist(p, pts[i], pts[(i + 1) % pts.length]) <= tol) return { kind, index };
      }
    }
  }
  return null;
}

const canvasEl = $("#editor-canvas");
canvasEl.addEventListener("mousedown", (ev) => {
  const p = toFrame(ev);
  if (editor.tool === "select") {
    const v = nearestVertex(p);
    if (v) { editor.selected = { kind: v.kind, index: v.index }; editor.drag = v; }
    else editor.selected = shapeAt(p);
    redraw();
  } else if (editor.tool === "line") {
    editor.draft = { points: [p], hover: p };
  }
});

canvasEl.addEventListener("mousemove", (ev) => {
  const p = toFrame(ev);
  if (editor.drag) {
    shapePoints(editor.drag.kind, list(editor.drag.kind)[editor.drag.index])[editor.drag.vertex] = p;
    redraw();
  } else if (editor.draft) {
    editor.draft.hover = p;
    redraw();
  }
});

canvasEl.addEventListener("mouseup", (ev) => {
  const p = toFrame(ev);
  if (editor.drag) { editor.drag = null; return; }
  if (editor.tool === "line" && editor.draft) {
    const a = editor.draft.points[0];
    editor.draft = null;
    if (Math.hypot(p[0] - a[0], p[1] - a[1]) >= 3) {
      editor.rules.lines.push({ id: nextId("line"), points: [a, p], in_side: "left", anchor: defaultAnchor() });
      editor.selected = { kind: "line", index: editor.rules.lines.length - 1 };
      setTool("select");
    }
    redraw();
  }
});

canvasEl.addEventListener("click", (ev) => {
  if (!["zone", "approach", "loop"].includes(editor.tool)) return;
  const p = toFrame(ev);
  if (!editor.draft) editor.draft = { points: [], hover: p };
  const pts = editor.draft.points;
  const last = pts[pts.length - 1];
  if (!last || last[0] !== p[0] || last[1] !== p[1]) pts.push(p);
  redraw();
});

canvasEl.addEventListener("dblclick", () => {
  if (!editor.draft || !["zone", "approach", "loop"].includes(editor.tool)) return;
  const polygon = editor.draft.points;
  const kind = editor.tool;
  editor.draft = null;
  if (polygon.length < 3) { redraw(); return; }
  const shape = { id: nextId(kind), polygon, anchor: defaultAnchor() };
  if (kind === "zone") shape.kind = "occupancy";
  if (kind === "loop") {
    const used = new Set(editor.rules.loops.map((l) => l.channel));
    let ch = 1; while (used.has(ch)) ch++;
    shape.channel = ch;
  }
  list(kind).push(shape);
  editor.selected = { kind, index: list(kind).length - 1 };
  setTool("select");
});

$("#rule-id").addEventListener("input", (ev) => {
  const s = editor.selected;
  if (s) { list(s.kind)[s.index].id = ev.target.value.trim(); redraw(); }
});

$("#flip").addEventListener("click", () => {
  const s = editor.selected;
  if (s && s.kind === "line") {
    const l = editor.rules.lines[s.index];
    l.in_side = l.in_side === "right" ? "left" : "right";
    redraw();
  }
});

$("#delete").addEventListener("click", () => {
  const s = editor.selected;
  if (s) { list(s.kind).splice(s.index, 1); editor.selected = null; redraw(); }
});

async function submitRules(check) {
  editor.bad = new Set();
  editor.notes = [];
  $("#editor-problems").textContent = "";
  const r = await api(`/api/cameras/${encodeURIComponent(editor.cam.id)}/rules${check ? "?check=true" : ""}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(editor.rules),
  });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) {
    $("#editor-status").textContent = body.error || `refused (${r.status})`;
    for (const p of body.problems || []) {
      const li = document.createElement("li");
      li.textContent = `${p.field}: ${p.message}`;
      $("#editor-problems").appendChild(li);
      if (p.shape) { editor.bad.add(`${p.shape.kind}:${p.shape.index}`); editor.notes.push({ ...p.shape, message: p.message }); }
    }
    redraw();
    return;
  }
  if (check) { $("#editor-status").textContent = "the rules are valid"; redraw(); return; }
  editor.waiting = true;
  $("#editor-status").textContent = `saved to ${body.file} (previous version: ${body.previous}); applying…`;
}

function editorApplied(reload) {
  editor.waiting = false;
  $("#editor-status").textContent = reload.ok ? `applied without a restart: ${reload.message}` : `saved, but the reload was refused: ${reload.message}`;
}

$("#check").addEventListener("click", () => submitRules(true));
$("#save").addEventListener("click", () => submitRules(false));

window.addEventListener("resize", () => { for (const cam of cameras.values()) drawTileRules(cam); });

start();
