"use strict";
// fvsr review page: plain JS, no build step. Every request carries the session token.
const TOKEN = document.querySelector('meta[name="fvsr-token"]').content;
const $ = (id) => document.getElementById(id);
const api = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}`;
const NAMES = { synthesized: "S (synthesized)", contradiction: "R (contradiction)", interval: "interval half-width" };
const SVG = "http://www.w3.org/2000/svg";

const state = { info: null, n: 0, frame: null, images: {}, mapData: null, pending: [], drag: null, verified: false, loadId: 0 };

async function getJSON(path) {
  const r = await fetch(api(path));
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

function loadImage(kind, n) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`${kind} frame ${n} not available`));
    img.src = api(`/api/frame/${kind}/${n}.png`);
  });
}

function sizeCanvas(c, w, h) {
  c.width = w; c.height = h;
  const s = Number($("scale").value);
  c.style.width = `${w * s}px`; c.style.height = `${h * s}px`;
}

function layout() {
  const { width: w, height: h } = state.info;
  for (const id of ["ev-canvas", "en-canvas", "ov-canvas", "wipe-en", "wipe-ov", "wipe-ev"]) sizeCanvas($(id), w, h);
  const svg = $("annotations");
  const s = Number($("scale").value);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.style.width = `${w * s}px`; svg.style.height = `${h * s}px`;
  const mode = $("mode").value;
  $("side-view").hidden = mode === "wipe";
  $("wipe-view").hidden = mode !== "wipe";
  $("ev-pane").hidden = mode === "enhanced";
  wipe();
  redraw();  // resizing a canvas clears it
}

function redraw() {
  draw($("en-canvas"), state.images.enhanced);
  draw($("wipe-en"), state.images.enhanced);
  draw($("ev-canvas"), state.images.evidence);
  draw($("wipe-ev"), state.images.evidence);
  drawOverlay();
}

function draw(canvas, img) {
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (img) ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
}

function drawOverlay() {
  const kind = $("overlay").value;
  for (const id of ["ov-canvas", "wipe-ov"]) $(id).getContext("2d").clearRect(0, 0, $(id).width, $(id).height);
  $("legend").hidden = kind === "none";
  state.mapData = null;
  const img = state.images[kind];
  if (kind === "none" || !img) return;
  const { width: w, height: h } = state.info;
  const tmp = document.createElement("canvas");
  tmp.width = w; tmp.height = h;
  const tctx = tmp.getContext("2d");
  tctx.drawImage(img, 0, 0);
  const src = tctx.getImageData(0, 0, w, h);
  state.mapData = src.data;
  const range = Number($("overlay-range").value);
  const out = tctx.createImageData(w, h);
  for (let i = 0; i < src.data.length; i += 4) {
    const v = src.data[i];
    out.data[i] = 255; out.data[i + 1] = 0; out.data[i + 2] = 0;
    out.data[i + 3] = v === 0 ? 0 : Math.round(220 * Math.min(1, v / range));
  }
  for (const id of ["ov-canvas", "wipe-ov"]) $(id).getContext("2d").putImageData(out, 0, 0);
  const bar = $("legend-bar").getContext("2d");
  for (let x = 0; x < 256; x++) {
    const v = (x / 255) * range;
    const g = 255 - Math.round(220 * Math.min(1, v / range));  // red at the overlay's alpha, on white
    bar.fillStyle = `rgb(255, ${g}, ${g})`;
    bar.fillRect(x, 0, 1, 14);
  }
  $("legend-text").textContent = `${NAMES[kind]}: transparent at 0, full red at ≥ ${range} grey levels (of 255); ${state.info.map_units}`;
}

async function show(n) {
  const info = state.info;
  n = Math.max(0, Math.min(info.frames - 1, Math.trunc(Number(n) || 0)));
  state.n = n;
  const id = ++state.loadId;
  $("frame-index").value = n;
  const kinds = ["enhanced", ...(info.kinds.includes("evidence") ? ["evidence"] : [])];
  const overlay = $("overlay").value;
  if (overlay !== "none" && info.kinds.includes(overlay)) kinds.push(overlay);
  const [frame, ...imgs] = await Promise.all([getJSON(`/api/frames/${n}`), ...kinds.map((k) => loadImage(k, n))]);
  if (id !== state.loadId) return;
  state.frame = frame;
  state.images = Object.fromEntries(kinds.map((k, i) => [k, imgs[i]]));
  redraw();
  $("frame-no").textContent = `${n} of ${info.frames}`;
  $("en-index").textContent = n;
  $("ev-index").textContent = frame.evidence_frame;
  $("frame-evidence").textContent = frame.evidence_frame;
  $("frame-time").textContent = `${frame.time_s.toFixed(6)} s (${frame.time_exact} s)`;
  $("frame-pts").textContent = `${frame.pts} × ${frame.time_base} s`;
  $("frame-sha256").textContent = frame.sha256;
  showVerified();
  drawAnnotations();
  document.body.dataset.frame = String(n);
  if ($("psf").open) schedulePsf();
}

// PSF preview: computed by the server on the evidence frame; one request at a time, the latest
// parameters win.
const psf = { seq: 0, busy: false, again: false, region: null, timer: null, available: false };

function psfRegion() {  // evidence pixels, or null for the whole frame
  const info = state.info, mode = $("psf-region-mode").value;
  let box = mode === "box" ? psf.region : null;
  if (mode === "magnifier" && state.pointer) {
    const span = Math.max(16, Math.round($("magnifier").width / Number($("zoom").value)));
    const x = Math.max(0, Math.min(info.width - span, state.pointer.x - Math.floor(span / 2)));
    const y = Math.max(0, Math.min(info.height - span, state.pointer.y - Math.floor(span / 2)));
    box = { x, y, w: Math.min(span, info.width), h: Math.min(span, info.height) };
  }
  if (!box) return null;
  // the output shows the evidence frame, or with --roi only its region [x, y, w, h]
  const [ox, oy, ew, eh] = info.region || [0, 0, info.evidence_width, info.evidence_height];
  const fx = ew / info.width, fy = eh / info.height;
  const x = ox + Math.floor(box.x * fx), y = oy + Math.floor(box.y * fy);
  return { x, y, w: ox + Math.ceil((box.x + box.w) * fx) - x, h: oy + Math.ceil((box.y + box.h) * fy) - y };
}

function psfQuery() {
  const kind = $("psf-kind").value;
  const q = new URLSearchParams({ kind });
  if (kind === "motion") { q.set("length", $("psf-length").value); q.set("angle", $("psf-angle").value); }
  else q.set("radius", $("psf-radius").value);
  const r = psfRegion();
  if (r) for (const k of ["x", "y", "w", "h"]) q.set(k, r[k]);
  $("psf-region-text").textContent = r ? `evidence pixels ${r.x}, ${r.y}, ${r.w}×${r.h}` : "the whole evidence frame";
  return q;
}

function schedulePsf() { clearTimeout(psf.timer); psf.timer = setTimeout(runPsf, 120); }

async function psfFetch(action, query) {
  const r = await fetch(api(`/api/psf/${action}/${state.n}?${query}`));
  const body = await r.json();
  if (!r.ok) throw new Error(body.error);
  return body;
}

async function runPsf() {
  if (!$("psf").open || !psf.available) return;
  if (psf.busy) { psf.again = true; return; }
  psf.busy = true;
  const id = ++psf.seq;
  $("psf-status").textContent = "computing…"; $("psf-status").className = "";
  try {
    const r = await psfFetch("preview", psfQuery());
    const [x, y, w, h] = r.region;
    const zoom = Math.max(Number($("scale").value), Math.min(8, Math.floor(320 / w)));
    for (const [id2, src] of [["psf-evidence", r.images.evidence], ["psf-restored", r.images.restored]]) {
      $(id2).src = src; $(id2).style.width = `${w * zoom}px`; $(id2).style.height = `${h * zoom}px`;
    }
    $("psf-kernel").src = r.images.psf;
    $("psf-where").textContent = `evidence frame ${r.evidence_frame}, ${r.whole_frame ? "whole frame" : `x ${x}, y ${y}, ${w}×${h}`}, ×${zoom} nearest neighbour`;
    $("psf-text").textContent = r.psf_text;
    $("psf-ringing").textContent = `${r.ringing_rms_levels.toFixed(3)} levels (of 255)`;
    $("psf-forward").textContent = `${r.forward_residual_rms_levels.toFixed(3)} levels`;
    $("psf-noise").textContent = `${r.noise_sigma_levels.toFixed(3)} levels`;
    $("psf-lambda").textContent = `${r.lambda.toPrecision(4)} (${r.method}; a run takes λ from its first frame)`;
    $("psf-command").value = r.command;
    $("psf-status").textContent = "shown"; $("psf-status").className = "pass";
    document.body.dataset.psf = String(id);
  } catch (e) {
    $("psf-status").textContent = `not computed: ${e.message}`; $("psf-status").className = "fail";
    document.body.dataset.psfError = e.message;
  } finally {
    psf.busy = false;
    if (psf.again) { psf.again = false; runPsf(); }
  }
}

function setPsf(p) {
  $("psf-kind").value = p.kind;
  const fields = p.kind === "motion" ? { length: p.length, angle: p.angle } : { radius: p.radius };
  for (const [k, v] of Object.entries(fields)) { $(`psf-${k}`).value = v; $(`psf-${k}-range`).value = v; }
  $("psf-motion").hidden = p.kind !== "motion"; $("psf-defocus").hidden = p.kind !== "defocus";
}

async function estimatePsf() {
  $("psf-estimate-text").textContent = "estimating…";
  try {
    const e = await psfFetch("estimate", psfQuery());
    setPsf(e.psf);
    $("psf-estimate-text").textContent = `blind estimate: ${e.psf_text}, confidence ${e.confidence.toFixed(2)} (${e.confidence_measure})` +
      (e.low_confidence ? ` — LOW: ${e.warning}` : "");
    $("psf-estimate-text").className = e.low_confidence ? "fail" : "pass";
    schedulePsf();
  } catch (err) { $("psf-estimate-text").textContent = `no estimate: ${err.message}`; $("psf-estimate-text").className = "fail"; }
}

function bindPsf() {
  const info = state.info;
  psf.available = info.kinds.includes("evidence");
  if (!psf.available) {
    $("psf-unavailable").hidden = false; $("psf-panel").hidden = true;
    $("psf-unavailable").textContent = `PSF preview unavailable: ${info.evidence}`;
    return;
  }
  if (info.deblur && ["motion", "defocus"].includes(info.deblur.psf.kind)) {
    setPsf(info.deblur.psf);
    const k = info.deblur.psf;
    const what = k.kind === "motion" ? `motion ${k.length} px at ${k.angle}°` : `defocus radius ${k.radius} px`;
    $("psf-recorded").textContent = `This bundle's deblur ran with ${what} (${info.deblur.source}); the panel starts from it.`;
  }
  for (const k of ["length", "angle", "radius"]) {
    $(`psf-${k}-range`).oninput = () => { $(`psf-${k}`).value = $(`psf-${k}-range`).value; schedulePsf(); };
    $(`psf-${k}`).oninput = () => { $(`psf-${k}-range`).value = $(`psf-${k}`).value; schedulePsf(); };
  }
  $("psf-kind").onchange = () => { $("psf-motion").hidden = $("psf-kind").value !== "motion"; $("psf-defocus").hidden = $("psf-kind").value !== "defocus"; schedulePsf(); };
  $("psf-region-mode").onchange = () => { drawAnnotations(); schedulePsf(); };
  $("psf-estimate").onclick = estimatePsf;
  $("psf").ontoggle = () => { if ($("psf").open) schedulePsf(); };
  $("psf-copy").onclick = async () => {
    $("psf-command").select();
    try { await navigator.clipboard.writeText($("psf-command").value); $("psf-copied").textContent = "copied"; }
    catch { $("psf-copied").textContent = document.execCommand("copy") ? "copied" : "selected: press Ctrl-C"; }
  };
}

function showVerified() {
  const el = $("frame-verified");
  el.textContent = state.verified ? "verified" : state.verifyDone ? "verification FAILED" : "not yet verified";
  el.className = state.verified ? "pass" : state.verifyDone ? "fail" : "";
}

function wipe() {
  const p = Number($("wipe").value);
  $("wipe-ev").style.clipPath = `inset(0 ${100 - p}% 0 0)`;
  $("wipe-line").style.left = `${p}%`;
}

function pixelAt(ev) {
  const r = $("annotations").getBoundingClientRect();
  const s = r.width / state.info.width;
  return { x: Math.max(0, Math.min(state.info.width - 1, Math.floor((ev.clientX - r.left) / s))),
           y: Math.max(0, Math.min(state.info.height - 1, Math.floor((ev.clientY - r.top) / s))) };
}

function magnify(p) {
  const k = Number($("zoom").value);
  const mag = $("magnifier");
  const ctx = mag.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const span = mag.width / k;
  const sx = p.x + 0.5 - span / 2, sy = p.y + 0.5 - span / 2;
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, mag.width, mag.height);
  ctx.drawImage($("en-canvas"), sx, sy, span, span, 0, 0, mag.width, mag.height);
  ctx.drawImage($("ov-canvas"), sx, sy, span, span, 0, 0, mag.width, mag.height);
  ctx.strokeStyle = "#0ff";
  ctx.strokeRect(Math.floor(mag.width / 2 - k / 2) + 0.5, Math.floor(mag.height / 2 - k / 2) + 0.5, k - 1, k - 1);
  const kind = $("overlay").value;
  const v = state.mapData ? state.mapData[(p.y * state.info.width + p.x) * 4] : null;
  state.pointer = p;
  $("pointer").textContent = `pixel (${p.x}, ${p.y})` + (v === null ? "" : `; ${NAMES[kind]} = ${v} of 255 levels`);
}

function zoomLabel() { $("zoom-label").textContent = `magnifier ×${$("zoom").value} (nearest neighbour, 1 output pixel = ${$("zoom").value}×${$("zoom").value} screen pixels)`; }

function shape(a, pending) {
  const g = document.createElementNS(SVG, "g");
  g.setAttribute("class", pending ? "pending" : "saved");
  const colour = pending ? "#ff0" : "#0f0";
  const add = (tag, attrs) => { const e = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); g.appendChild(e); return e; };
  if (a.type === "box" || a.type === "region" || a.type === "psf") {
    add("rect", { x: a.x + 0.5, y: a.y + 0.5, width: a.w - 1, height: a.h - 1, fill: "none", stroke: colour, "stroke-width": 1, "stroke-dasharray": a.type === "region" ? "3 2" : "" });
  } else if (a.type === "arrow") {
    add("line", { x1: a.x + 0.5, y1: a.y + 0.5, x2: a.x2 + 0.5, y2: a.y2 + 0.5, stroke: colour, "stroke-width": 1 });
    add("circle", { cx: a.x2 + 0.5, cy: a.y2 + 0.5, r: 2, fill: colour });
  } else {
    add("circle", { cx: a.x + 0.5, cy: a.y + 0.5, r: 1.5, fill: colour });
  }
  if (a.text) { const t = add("text", { x: a.x + 3, y: a.y - 3, fill: colour, "font-size": 9 }); t.textContent = a.text; }
  return g;
}

function drawAnnotations() {
  const svg = $("annotations");
  svg.replaceChildren();
  for (const r of state.reviews || []) if (r.signed && r.frame.index === state.n) for (const a of r.annotations) svg.appendChild(shape(a, false));
  for (const a of state.pending) svg.appendChild(shape(a, true));
  if (state.drag && state.drag.preview) svg.appendChild(shape(state.drag.preview, true));
  if (psf.region && $("psf-region-mode").value === "box") {
    const r = document.createElementNS(SVG, "rect");
    const b = psf.region;
    for (const [k, v] of Object.entries({ x: b.x + 0.5, y: b.y + 0.5, width: b.w - 1, height: b.h - 1, fill: "none", stroke: "#0ff", "stroke-width": 1, "stroke-dasharray": "1 1" })) r.setAttribute(k, v);
    svg.appendChild(r);
  }
  const ul = $("pending");
  ul.replaceChildren(...state.pending.map((a) => { const li = document.createElement("li"); li.textContent = describe(a); return li; }));
}

function describe(a) {
  const where = a.type === "arrow" ? `(${a.x}, ${a.y}) → (${a.x2}, ${a.y2})` : a.w ? `(${a.x}, ${a.y}) ${a.w}×${a.h}` : `(${a.x}, ${a.y})`;
  return `${a.type} ${where}${a.text ? ` "${a.text}"` : ""}`;
}

function annotationFrom(p0, p1) {
  const tool = $("tool").value, text = $("note").value;
  if (tool === "text") return { type: "text", x: p1.x, y: p1.y, text };
  if (tool === "arrow") return { type: "arrow", x: p0.x, y: p0.y, x2: p1.x, y2: p1.y, text };
  const x = Math.min(p0.x, p1.x), y = Math.min(p0.y, p1.y);
  return { type: tool, x, y, w: Math.abs(p1.x - p0.x) + 1, h: Math.abs(p1.y - p0.y) + 1, text };
}

async function loadReviews() {
  state.reviews = (await getJSON("/api/reviews")).reviews;
  $("reviews").replaceChildren(...state.reviews.map((r) => {
    const li = document.createElement("li");
    li.textContent = r.signed
      ? `${r.file}: frame ${r.frame.index} (sha256 ${r.frame.sha256.slice(0, 16)}…)${r.still ? ", still" : ""}; ${r.annotations.map(describe).join("; ") || "no annotations"}; ${r.examiner.name}, ${r.time}; signature verified`
      : `${r.file}: NOT VERIFIED: ${r.problem}`;
    li.className = r.signed ? "pass" : "fail";
    return li;
  }));
  drawAnnotations();
}

async function save() {
  $("save-status").textContent = "signing…";
  const r = await fetch(api("/api/reviews"), { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ frame: state.n, still: $("still").checked, annotations: state.pending }) });
  const body = await r.json();
  if (!r.ok) { $("save-status").textContent = `not saved: ${body.error}`; return; }
  state.pending = [];
  $("still").checked = false;
  $("save-status").textContent = `saved ${body.file}`;
  await loadReviews();
}

async function pollVerify() {
  const v = await getJSON("/api/verify");
  $("verify-key").textContent = `against ${v.key}`;
  $("checks").replaceChildren(...v.checks.map((c) => {
    const li = document.createElement("li");
    li.className = c.status.toLowerCase();
    li.textContent = `${c.status} ${c.name}: ${c.reason}`;
    return li;
  }));
  const failed = v.checks.filter((c) => c.status !== "PASS").length;
  const badge = $("verify-status");
  state.verified = v.verified; state.verifyDone = v.done;
  if (!v.done) { badge.textContent = `verifying… ${v.checks.length} checks so far`; badge.className = "badge"; }
  else if (v.verified) { badge.textContent = `verified: all ${v.checks.length} checks PASS`; badge.className = "badge pass"; }
  else { badge.textContent = `NOT verified: ${failed} of ${v.checks.length} checks failed${v.error ? ` (${v.error})` : ""}`; badge.className = "badge fail"; }
  document.body.dataset.verify = v.done ? (v.verified ? "pass" : "fail") : "running";
  showVerified();
  if (!v.done) setTimeout(pollVerify, 400);
}

function bind() {
  $("prev").onclick = () => show(state.n - 1);
  $("next").onclick = () => show(state.n + 1);
  $("first").onclick = () => show(0);
  $("last").onclick = () => show(state.info.frames - 1);
  $("frame-index").onchange = () => show($("frame-index").value);
  $("go-time").onclick = async () => {
    const t = Number($("jump-time").value);
    let lo = 0, hi = state.info.frames - 1;  // the last frame whose time is <= t
    while (lo < hi) { const mid = Math.ceil((lo + hi) / 2); const f = await getJSON(`/api/frames/${mid}`); if (f.time_s <= t + 1e-9) lo = mid; else hi = mid - 1; }
    show(lo);
  };
  $("mode").onchange = layout;
  $("scale").onchange = layout;
  $("wipe").oninput = wipe;
  $("overlay").onchange = () => show(state.n);
  $("overlay-range").onchange = drawOverlay;
  $("zoom").onchange = zoomLabel;
  $("save").onclick = save;
  document.addEventListener("keydown", (ev) => {
    if (ev.target instanceof HTMLInputElement && ev.target.type !== "range" && ev.target.type !== "checkbox") return;
    const step = { ArrowRight: 1, ArrowLeft: -1 }[ev.key];
    if (step) { ev.preventDefault(); show(state.n + step); }
    else if (ev.key === "Home") show(0);
    else if (ev.key === "End") show(state.info.frames - 1);
  });
  const svg = $("annotations");
  svg.addEventListener("mousemove", (ev) => {
    const p = pixelAt(ev);
    magnify(p);
    if (state.drag) { state.drag.preview = annotationFrom(state.drag.start, p); drawAnnotations(); }
  });
  svg.addEventListener("mousedown", (ev) => { if (state.info.can_sign || $("tool").value === "psf") state.drag = { start: pixelAt(ev) }; });
  svg.addEventListener("mouseup", (ev) => {
    if (!state.drag) return;
    const a = annotationFrom(state.drag.start, pixelAt(ev));
    state.drag = null;
    if (a.type === "psf") {
      psf.region = a;
      $("psf-region-mode").value = "box";
      $("psf").open = true;
      schedulePsf();
    } else state.pending.push(a);
    drawAnnotations();
  });
  svg.addEventListener("mouseleave", () => { if ($("psf").open && $("psf-region-mode").value === "magnifier") schedulePsf(); });
}

async function main() {
  state.info = await getJSON("/api/info");
  const info = state.info;
  $("bundle-name").textContent = info.bundle;
  $("frame-count").textContent = `of ${info.frames}`;
  $("frame-index").max = info.frames - 1;
  $("evidence-note").textContent = info.evidence;
  $("signing").textContent = info.can_sign ? `signing as ${info.examiner}` : "read-only";
  if (!info.can_sign) { $("readonly").hidden = false; $("readonly").textContent = `Read-only: ${info.read_only_reason}. Reviews cannot be saved.`; $("save").disabled = true; }
  for (const opt of $("overlay").options) if (opt.value !== "none" && !info.kinds.includes(opt.value)) opt.disabled = true;
  if (info.width > 640) $("scale").value = "1";
  bind();
  bindPsf();
  zoomLabel();
  layout();
  await loadReviews();
  await show(0);
  pollVerify();
  document.body.dataset.ready = "1";
}

main().catch((e) => { document.body.dataset.error = String(e); $("verify-status").textContent = `error: ${e.message}`; });
