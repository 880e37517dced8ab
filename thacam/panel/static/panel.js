// thacam control panel: settings generated from GET /api/settings, state and preview over the
// WebSocket (/api/ws), commands as POSTs kept in order. The token is in an HttpOnly cookie the
// server set when the link was opened; nothing here ever sees it.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = { fps: "#6cb6ff", latency: "#f0f0f0", track: "#3fb950", retarget: "#a371f7",
                 animate: "#d29922", render: "#f85149", output: "#db61a2" };
let chain = Promise.resolve();   // POSTs in order: a release never overtakes its press
let state = null;
let exprNames = "";
const OBS_CHIP = { "starting": "OBS connecting", "connected": "OBS connected",
                   "waiting for OBS": "OBS not reachable",
                   "password refused": "OBS password refused", "off": "OBS control off",
                   "stopped": "OBS stopped" };

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function call(method, path, body) {
  const opts = { method, headers: { "Content-Type": "application/json" } };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw Object.assign(new Error(data.error || res.statusText), { data });
  return data;
}

function post(path, body) {
  const p = chain.then(() => call("POST", path, body));
  chain = p.catch(() => {});
  return p.then((d) => { if (d.message) say(d.message); return d; },
                (e) => { say(e.message, true); throw e; });
}

// -- settings ---------------------------------------------------------------------------------

function fmt(v) { return typeof v === "number" ? String(+v.toFixed(4)) : String(v); }

function control(key, s) {
  const row = document.createElement("div");
  row.className = "row";
  row.dataset.key = key;
  const id = "set-" + key.replace(/\./g, "-");
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = key.split(".").slice(1).join(".");
  label.title = key;
  row.append(label);
  const out = document.createElement("output");
  let input;
  let read;
  if (s.type === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = s.value;
    read = () => input.checked;
  } else if (s.type === "choice") {
    input = document.createElement("select");
    for (const c of s.choices) input.add(new Option(c, c, false, c === s.value));
    read = () => input.value;
  } else if (s.type.startsWith("list")) {
    input = document.createElement("span");
    input.className = "pair";
    const boxes = s.value.map((v) => {
      const b = document.createElement("input");
      Object.assign(b, { type: "number", value: v, step: s.step ?? "any" });
      if (s.min !== null) b.min = s.min;
      if (s.max !== null) b.max = s.max;
      input.append(b);
      return b;
    });
    read = () => boxes.map((b) => Number(b.value));
  } else {
    input = document.createElement("input");
    input.type = s.min !== null && s.max !== null ? "range" : "number";
    Object.assign(input, { min: s.min ?? "", max: s.max ?? "", step: s.step ?? "any" });
    input.value = s.value;
    read = () => Number(input.value);
    out.textContent = fmt(s.value);
    input.addEventListener("input", () => { out.textContent = fmt(read()); });
  }
  input.id = id;
  input.addEventListener("change", async () => {
    try {
      const d = await post("/api/settings", { [key]: read() });
      row.classList.remove("error");
      if (out.textContent) out.textContent = fmt(d.values[key]);
    } catch (e) {
      row.classList.add("error");
      refreshSettings();   // back to what the running pipeline has
    }
  });
  row.append(input, out);
  const help = document.createElement("div");
  help.className = "help";
  help.textContent = s.help + (s.min !== null && s.max !== null ? ` (${s.min} … ${s.max})` : "");
  row.append(help);
  return row;
}

async function refreshSettings() {
  const { settings } = await call("GET", "/api/settings");
  const root = $("settings");
  const open = new Set([...root.querySelectorAll("details[open]")].map((d) => d.dataset.section));
  root.replaceChildren();
  const sections = {};
  for (const [key, s] of Object.entries(settings)) {
    const sec = key.split(".")[0];
    if (!sections[sec]) {
      const d = document.createElement("details");
      d.dataset.section = sec;
      d.open = open.size ? open.has(sec) : true;
      d.append(Object.assign(document.createElement("summary"), { textContent: sec }));
      root.append(d);
      sections[sec] = d;
    }
    sections[sec].append(control(key, s));
  }
  applyFilter();
}

function applyFilter() {
  const q = $("filter").value.trim().toLowerCase();
  for (const row of document.querySelectorAll(".row")) {
    row.hidden = q !== "" && !(row.dataset.key + " " + row.textContent).toLowerCase().includes(q);
  }
  for (const d of document.querySelectorAll("#settings details")) {
    d.hidden = ![...d.querySelectorAll(".row")].some((r) => !r.hidden);
  }
}

// -- expressions ------------------------------------------------------------------------------

// The reply says what is on now: the next click must not wait for the next state push.
function remember(d) {
  if (!state) return;
  if (d.on) state.expression = d.name;
  else if (state.expression === d.name) state.expression = null;
}

function buildExpressions(list) {
  const box = $("expressions");
  box.replaceChildren();
  for (const e of list) {
    const b = document.createElement("button");
    b.dataset.name = e.name;
    b.dataset.mode = e.mode;
    b.title = e.mode === "hold" ? "hold to keep it on" : "click to switch on or off";
    b.append(`${e.name} `, Object.assign(document.createElement("small"),
                                         { textContent: `${e.hotkey} · ${e.mode}` }));
    let down = false;
    b.addEventListener("pointerdown", (ev) => {
      b.setPointerCapture(ev.pointerId);
      down = true;
      const on = e.mode === "hold" ? true : !(state && state.expression === e.name);
      b.classList.toggle("on", on);
      post("/api/expression", { name: e.name, on }).then(remember, () => {});
    });
    const up = () => {
      if (!down) return;
      down = false;
      if (e.mode === "hold") {
        b.classList.remove("on");
        post("/api/expression", { name: e.name, on: false }).then(remember, () => {});
      }
    };
    // A tab closed mid-hold must not leave the preset on for the rest of the stream.
    window.addEventListener("pagehide", () => {
      if (down && e.mode === "hold") {
        navigator.sendBeacon("/api/expression", JSON.stringify({ name: e.name, on: false }));
      }
    });
    b.addEventListener("pointerup", up);
    b.addEventListener("pointercancel", up);
    b.addEventListener("lostpointercapture", up);
    box.append(b);
  }
}

// -- state ------------------------------------------------------------------------------------

function chip(id, text, ok) {
  const el = $(id);
  el.textContent = text;
  el.className = ok === null ? "" : ok ? "ok" : "bad";
}

function showState(s) {
  state = s;
  chip("st-fps", `${s.fps.toFixed(1)} fps`, null);
  // Several sources (--source A --source B): the chip names the one that drives the head.
  const on = s.sources.some((x) => x.connected);
  const head = s.sources.length > 1 && s.sources.find((x) => (x.drives || []).includes("head"));
  chip("st-camera", head ? `${head.description} drives` : on ? "camera on" : "camera lost", on);
  chip("st-face", s.face ? "face found" : "no face", s.face);
  const vcam = s.sinks.find((k) => k.name === "vcam");
  chip("st-vcam", vcam ? (vcam.open ? "virtual camera on" : "no virtual camera") :
       "virtual camera not used", vcam ? vcam.open : null);
  chip("st-obs", s.obs ? OBS_CHIP[s.obs] || `OBS ${s.obs}` : "OBS not used",
       s.obs && s.obs !== "starting" ? s.obs === "connected" : null);
  // The chip is too small for what to do about OBS: the server's one line goes below the header
  // (rewritten only when it changes, so a screen reader announces it once).
  const problem = s.obs_problem || "";
  if ($("obs-problem").textContent !== problem) {
    $("obs-problem").textContent = problem;
    $("obs-problem").hidden = !problem;
  }
  $("unsaved").textContent = s.unsaved ? "unsaved changes" : "";
  const names = s.expressions.map((e) => e.name + e.mode).join();
  if (names !== exprNames) { exprNames = names; buildExpressions(s.expressions); }
  for (const b of $("expressions").children) {
    if (!b.matches(":active")) b.classList.toggle("on", s.expression === b.dataset.name);
  }
  plot(s.history);
}

function plot(history) {
  const cv = $("plot");
  const g = cv.getContext("2d");
  const W = cv.width, H = cv.height, top = H * 0.35;
  g.clearRect(0, 0, W, H);
  g.font = "11px system-ui";
  const now = Date.now() / 1000;
  const x = (t) => W - (now - t) / 60 * W;
  const lane = (series, y0, h, color) => {
    const max = Math.max(1e-6, ...series.map((p) => p[1]).filter((v) => v !== null));
    g.strokeStyle = color;
    g.beginPath();
    let started = false;
    for (const [t, v] of series) {
      if (v === null) { started = false; continue; }
      const px = x(t), py = y0 + h - (v / max) * (h - 12);
      started ? g.lineTo(px, py) : g.moveTo(px, py);
      started = true;
    }
    g.stroke();
    return max;
  };
  const fmax = lane(history.map((p) => [p.t, p.fps]), 0, top, COLORS.fps);
  g.fillStyle = "#9aa0aa";
  g.fillText(`fps (max ${fmax.toFixed(1)})`, 4, 11);
  const keys = ["latency", "track", "retarget", "animate", "render", "output"];
  const all = history.flatMap((p) => [p.latency_ms, ...Object.values(p.stages_ms)])
    .filter((v) => v !== null && v !== undefined);
  const mmax = Math.max(1e-6, ...all);
  for (const k of keys) {
    const series = history.map((p) => [p.t, k === "latency" ? p.latency_ms : (p.stages_ms[k] ?? null)]);
    g.strokeStyle = COLORS[k];
    g.beginPath();
    let started = false;
    for (const [t, v] of series) {
      if (v === null || v === undefined) { started = false; continue; }
      const px = x(t), py = H - (v / mmax) * (H - top - 14);
      started ? g.lineTo(px, py) : g.moveTo(px, py);
      started = true;
    }
    g.stroke();
  }
  g.fillText(`ms per stage, latency (max ${mmax.toFixed(0)} ms) — last minute`, 4, top + 11);
  g.strokeStyle = "#444c56";
  g.beginPath(); g.moveTo(0, top); g.lineTo(W, top); g.stroke();
}

function legend() {
  $("legend").replaceChildren(...Object.entries(COLORS).map(([k, c]) => {
    const s = document.createElement("span");
    s.style.setProperty("--c", c);
    s.textContent = k;
    return s;
  }));
}

// -- the live connection ----------------------------------------------------------------------

function connect() {
  const ws = new WebSocket(`ws://${location.host}/api/ws`);
  ws.binaryType = "blob";
  ws.onopen = () => { chip("st-link", "connected", true); ws.send(JSON.stringify({ cmd: "preview", on: true })); };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") {
      const img = $("preview");
      const old = img.src;
      img.src = URL.createObjectURL(ev.data);
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      return;
    }
    const m = JSON.parse(ev.data);
    if (m.type === "state") showState(m);
  };
  ws.onclose = () => { chip("st-link", "disconnected: retrying", false); setTimeout(connect, 2000); };
}

window.addEventListener("DOMContentLoaded", async () => {
  legend();
  $("calibrate").addEventListener("click", () => post("/api/calibrate").catch(() => {}));
  $("save").addEventListener("click", () => post("/api/save").catch(() => {}));
  $("filter").addEventListener("input", applyFilter);
  try {
    showState(await call("GET", "/api/state"));
    await refreshSettings();
  } catch (e) {
    say(e.message, true);
  }
  connect();
});
