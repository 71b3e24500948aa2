// OpenClone's admin page: plain ES module, no build step, no CDN. Everything it shows comes
// from /api/admin, which refuses any key but an admin's; text is always set as text.
const $ = (sel) => document.querySelector(sel);
const PAGE = 20;
const state = {
  key: localStorage.getItem("openclone.key") || "",
  tenant: null, // the tenant open in the detail panel
  offsets: { tenants: 0, users: 0, erasures: 0, datasets: 0 },
  // The dataset open for review; its pages are keyed by row (cursors: the `after` of each
  // page before), so the last page of 50K rows costs what the first does.
  review: { dataset: null, cursors: [], after: -1, next: null, selected: new Set(), row: null },
  audit: { cursors: [], after: null, lastId: null, hasMore: false },
  loop: null, // the loop whose charts are open
};

// ---- talking to the server -------------------------------------------------------------

async function api(path, { method = "GET", body } = {}) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    if (res.status === 401) signOut();
    const err = data && data.error ? data.error : {};
    throw new Error(err.message || `Request failed (${res.status}).`);
  }
  return data;
}

function banner(text) {
  $("#banner").textContent = text || "";
  $("#banner").hidden = !text;
}

// Run an action; an error shows in the banner instead of escaping.
const guarded = (fn) => async (...args) => {
  try { banner(""); await fn(...args); } catch (e) { banner(e.message); }
};

// ---- small DOM helpers -----------------------------------------------------------------

const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString();

function button(label, onClick, cls = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (cls) b.className = cls;
  b.onclick = guarded(onClick);
  return b;
}

function fill(table, rows) {
  const body = $(`${table} tbody`);
  body.replaceChildren();
  for (const cells of rows) {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c == null ? "" : String(c);
      tr.append(td);
    }
    body.append(tr);
  }
}

function pager(name, offset, count, hasMore, go) {
  const p = $(`.pager[data-for=${name}]`);
  p.querySelector(".where").textContent = count ? `${offset + 1}–${offset + count}` : "none";
  p.querySelector(".prev").disabled = offset === 0;
  p.querySelector(".next").disabled = !hasMore;
  p.querySelector(".prev").onclick = guarded(() => go(Math.max(0, offset - PAGE)));
  p.querySelector(".next").onclick = guarded(() => go(offset + PAGE));
}

const counts = (c) => Object.entries(c).filter(([, v]) => v).map(([k, v]) => `${v} ${k}`).join(", ") || "nothing";

function confirmErase(what, name) {
  const typed = prompt(`Erase ${what}? This cannot be undone. Type ${name} to confirm.`);
  return typed === null ? null : typed;
}

// ---- sign in ---------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  const me = await api("/api/me");
  if (!me.admin) throw new Error("This key is not an admin key: the admin API refuses it.");
  localStorage.setItem("openclone.key", key);
  $("#who").textContent = `${me.user} · ${me.tenant}`;
  $("#signin").hidden = true;
  $("#app").hidden = false;
  await loadTenants(0);
}

function showSignIn() {
  state.key = "";
  $("#app").hidden = true;
  $("#signin").hidden = false;
}

function signOut() {
  localStorage.removeItem("openclone.key"); // the chat's key too: one key per browser
  showSignIn();
}

// ---- tenants ---------------------------------------------------------------------------

async function loadTenants(offset) {
  state.offsets.tenants = offset;
  const page = await api(`/api/admin/tenants?${q({ offset, limit: PAGE })}`);
  fill("#tenants", page.data.map((t) => [
    button(t.name, () => openTenant(t.name), "linkish"),
    t.consent_default ? "on" : "off", t.redact_mode,
    t.retention_days ? `${t.retention_days} days` : "none", t.users, t.keys, when(t.created),
  ]));
  pager("tenants", offset, page.data.length, page.has_more, loadTenants);
}

async function openTenant(name) {
  state.tenant = name;
  $("#new-key").hidden = true;
  await showTenant();
}

async function showTenant() {
  const t = await api(tenantPath());
  $("#tenant-detail").hidden = false;
  $("#tenant-name").textContent = t.name;
  $("#tenant-counts").textContent = `${t.users} people, ${t.keys} live keys (${t.revoked_keys} revoked), ` +
    `${t.captures} captures, ${t.conversations} conversations, ${t.responses} stored responses; ` +
    `${t.tokens_this_month} tokens this month`;
  const policy = $("#policy-form");
  policy.consent.checked = t.consent_default;
  policy.redact.value = t.redact_mode;
  policy.retention.value = t.retention_days || "";
  const limits = $("#limits-form");
  for (const [k, v] of Object.entries(t.limits)) if (limits[k]) limits[k].value = v == null ? "" : v;
  await Promise.all([loadKeys(), loadUsers(0)]);
}

const tenantPath = () => `/api/admin/tenants/${encodeURIComponent(state.tenant)}`;

async function loadKeys() {
  const page = await api(`${tenantPath()}/keys?limit=500`);
  fill("#keys", page.data.map((k) => {
    const actions = document.createElement("span");
    if (!k.revoked) {
      actions.append(
        button("Revoke", async () => { await api(`/api/admin/keys/${k.id}/revoke`, { method: "POST", body: {} }); await showTenant(); }, "danger"),
        " ",
        button(k.scope === "admin" ? "Make user" : "Make admin", async () => {
          await api(`/api/admin/keys/${k.id}`, { method: "PATCH", body: { admin: k.scope !== "admin" } });
          await loadKeys();
        }),
      );
    }
    return [k.prefix + "…", k.user, k.scope, when(k.created), when(k.last_used), when(k.revoked), actions];
  }));
}

async function loadUsers(offset) {
  state.offsets.users = offset;
  const page = await api(`${tenantPath()}/users?${q({ offset, limit: PAGE })}`);
  fill("#users", page.data.map((u) => [
    u.name, u.consent == null ? "default" : u.consent ? "yes" : "no", u.keys, u.captures,
    u.conversations, when(u.created),
    button("Erase…", async () => {
      const typed = confirmErase(`${u.name} and everything of theirs`, u.name);
      if (typed === null) return;
      const r = await api(`${tenantPath()}/users/${encodeURIComponent(u.name)}/erase`, { method: "POST", body: { confirm: typed } });
      banner(`Erased ${u.name}: ${counts(r.counts)}.`);
      await openTenant(state.tenant);
    }, "danger"),
  ]));
  pager("users", offset, page.data.length, page.has_more, loadUsers);
}

function number(input) {
  return input.value === "" ? null : Number(input.value);
}

function wireTenants() {
  $("#new-tenant-form").onsubmit = guarded(async (e) => {
    e.preventDefault();
    const f = e.target;
    const name = f.elements.tenant.value.trim();
    await api("/api/admin/tenants", { method: "POST", body: { name, consent_default: f.consent.checked, retention_days: number(f.retention) } });
    f.reset();
    await loadTenants(state.offsets.tenants);
    await openTenant(name);
  });
  $("#policy-form").onsubmit = guarded(async (e) => {
    e.preventDefault();
    const f = e.target;
    await api(tenantPath(), { method: "PATCH", body: { consent_default: f.consent.checked, redact_mode: f.redact.value, retention_days: number(f.retention) } });
    await Promise.all([loadTenants(state.offsets.tenants), openTenant(state.tenant)]);
  });
  $("#limits-form").onsubmit = guarded(async (e) => {
    e.preventDefault();
    const f = e.target;
    const body = Object.fromEntries(["rpm", "tpm", "max_streams", "monthly_tokens"].map((k) => [k, number(f[k])]));
    await api(`${tenantPath()}/limits`, { method: "PUT", body });
    banner("");
  });
  $("#new-key-form").onsubmit = guarded(async (e) => {
    e.preventDefault();
    const f = e.target;
    const made = await api(`${tenantPath()}/keys`, { method: "POST", body: { user: f.user.value.trim() || null, admin: f.admin.checked } });
    f.reset();
    $("#new-key-secret").textContent = made.secret;
    $("#new-key").hidden = false;
    await Promise.all([showTenant(), loadTenants(state.offsets.tenants)]);
  });
  $("#erase-tenant").onclick = guarded(async () => {
    const typed = confirmErase(`tenant ${state.tenant} with all its people, keys and data`, state.tenant);
    if (typed === null) return;
    const r = await api(`${tenantPath()}/erase`, { method: "POST", body: { confirm: typed } });
    banner(`Erased tenant ${state.tenant}: ${counts(r.counts)}.`);
    state.tenant = null;
    $("#tenant-detail").hidden = true;
    await loadTenants(0);
  });
}

// ---- dataset review --------------------------------------------------------------------

const datasetPath = () => `/api/admin/datasets/${encodeURIComponent(state.review.dataset)}`;
const short = (text, n = 160) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

async function loadDatasets(offset) {
  state.offsets.datasets = offset;
  const page = await api(`/api/admin/datasets?${q({ offset, limit: PAGE })}`);
  fill("#datasets", page.data.map((d) => [
    button(d.name, () => openDataset(d.id), "linkish"), d.tenant, d.rows, d.counts.pending,
    d.counts.approved, d.counts.rejected, d.counts.edited, when(d.created),
  ]));
  pager("datasets", offset, page.data.length, page.has_more, loadDatasets);
}

async function openDataset(id) {
  Object.assign(state.review, { dataset: id, cursors: [], after: -1, row: null });
  $("#examples-form").reset();
  $("#example-editor").hidden = true;
  $("#dataset-detail").hidden = false;
  await Promise.all([showDatasetCounts(), loadExamples()]);
}

async function showDatasetCounts() {
  const d = await api(datasetPath());
  const c = d.counts;
  $("#dataset-name").textContent = `${d.name} (${d.id.slice(0, 8)})`;
  $("#dataset-counts").textContent = `${d.rows} examples of tenant ${d.tenant}: ${c.pending} pending, ` +
    `${c.approved} approved, ${c.rejected} rejected, ${c.edited} edited · ${d.path}`;
}

function filters() {
  const f = $("#examples-form");
  return { state: f.elements.state.value, search: f.elements.search.value.trim() };
}

async function loadExamples() {
  const r = state.review;
  const page = await api(`${datasetPath()}/examples?${q({ ...filters(), after: r.after, limit: PAGE })}`);
  r.next = page.next_after;
  r.selected.clear();
  $("#select-all").checked = false;
  fill("#examples", page.data.map((e) => {
    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.className = "pick";
    pick.setAttribute("aria-label", `select row ${e.row}`);
    pick.onchange = () => (pick.checked ? r.selected.add(e.row) : r.selected.delete(e.row));
    return [pick, button(String(e.row), () => openExample(e.row), "linkish"), e.state,
      e.capture_id ? `capture ${e.capture_id}` : e.source, short(e.prompt),
      (e.edited ? "✎ " : "") + short(e.answer)];
  }));
  const p = $(".pager[data-for=examples]");
  p.querySelector(".where").textContent = `page ${r.cursors.length + 1} · ${page.total} matching`;
  p.querySelector(".prev").disabled = r.cursors.length === 0;
  p.querySelector(".next").disabled = !page.has_more;
}

async function openExample(row) {
  const e = await api(`${datasetPath()}/examples/${row}`);
  state.review.row = row;
  $("#example-editor").hidden = false;
  $("#example-title").textContent = `Row ${e.row} · ${e.state}`;
  $("#example-source").textContent = [e.capture_id ? `from capture ${e.capture_id}` : `source: ${e.source}`,
    e.teacher ? `teacher ${e.teacher}` : "", e.reviewer ? `last reviewed by ${e.reviewer}` : ""].filter(Boolean).join(" · ");
  const box = $("#example-messages");
  box.replaceChildren();
  for (const m of e.messages) {
    const p = document.createElement("p");
    const who = document.createElement("strong");
    who.textContent = `${m.role}: `;
    p.append(who, typeof m.content === "string" ? m.content : JSON.stringify(m.content));
    box.append(p);
  }
  $("#example-original").hidden = !e.edited;
  $("#example-original").textContent = e.edited ? `Original answer: ${e.original}` : "";
  $("#example-answer").value = e.answer;
}

async function review(body) {
  const r = await api(`${datasetPath()}/review`, { method: "POST", body });
  $("#review-result").textContent = `${r.updated} examples ${body.state}.`;
  await Promise.all([showDatasetCounts(), loadExamples(), loadDatasets(state.offsets.datasets)]);
  if (state.review.row != null) await openExample(state.review.row);
}

function reviewSelected(verdict) {
  const rows = [...state.review.selected];
  if (!rows.length) throw new Error("Select rows first (the boxes on the left).");
  return review({ state: verdict, rows });
}

function reviewMatching(verdict) {
  const { state: where, search } = filters();
  const what = [where && `state ${where}`, search && `words "${search}"`].filter(Boolean).join(", ") || "no filter: every row";
  if (!confirm(`Set every example matching (${what}) to ${verdict}?`)) return undefined;
  return review({ state: verdict, all_matching: true, where_state: where || null, search: search || null });
}

function wireDatasets() {
  $("#new-dataset-form").onsubmit = guarded(async (e) => {
    e.preventDefault();
    const d = await api("/api/admin/datasets", { method: "POST", body: { path: e.target.elements.path.value.trim() } });
    e.target.reset();
    await loadDatasets(0);
    await openDataset(d.id);
  });
  $("#examples-form").onsubmit = guarded(async (e) => {
    e.preventDefault();
    Object.assign(state.review, { cursors: [], after: -1 });
    await loadExamples();
  });
  const p = $(".pager[data-for=examples]");
  p.querySelector(".next").onclick = guarded(async () => {
    state.review.cursors.push(state.review.after);
    state.review.after = state.review.next;
    await loadExamples();
  });
  p.querySelector(".prev").onclick = guarded(async () => {
    state.review.after = state.review.cursors.pop() ?? -1;
    await loadExamples();
  });
  $("#select-all").onchange = (e) => {
    for (const box of document.querySelectorAll("#examples .pick")) {
      box.checked = e.target.checked;
      box.onchange();
    }
  };
  $("#approve-selected").onclick = guarded(() => reviewSelected("approved"));
  $("#reject-selected").onclick = guarded(() => reviewSelected("rejected"));
  $("#approve-matching").onclick = guarded(() => reviewMatching("approved"));
  $("#reject-matching").onclick = guarded(() => reviewMatching("rejected"));
  $("#approve-one").onclick = guarded(() => review({ state: "approved", rows: [state.review.row] }));
  $("#reject-one").onclick = guarded(() => review({ state: "rejected", rows: [state.review.row] }));
  $("#save-answer").onclick = guarded(async () => {
    await api(`${datasetPath()}/examples/${state.review.row}`, { method: "PATCH", body: { answer: $("#example-answer").value } });
    await Promise.all([openExample(state.review.row), loadExamples(), showDatasetCounts(), loadDatasets(state.offsets.datasets)]);
  });
}

// ---- loops -----------------------------------------------------------------------------

const loopPath = (name) => `/api/admin/loops/${encodeURIComponent(name)}`;
const usd = (v) => (v == null ? "-" : v >= 1e6 ? `$${+(v / 1e6).toPrecision(3)}M` : v >= 1e3 ? `$${+(v / 1e3).toPrecision(3)}k` : `$${+v.toPrecision(3)}`);
const pct = (v) => (v == null ? "n/a" : `${Math.round(v * 100)}%`);
const isoWhen = (iso) => (iso ? new Date(iso).toLocaleString() : "");

async function loadLoops() {
  const page = await api("/api/admin/loops");
  $("#loops-empty").hidden = page.data.length > 0;
  fill("#loops", page.data.map((l) => {
    const last = l.last_run, c = l.costs, dep = l.deprecation;
    let next = l.paused ? "-" : l.next_due ? isoWhen(l.next_due) : l.every === "off" ? "on captures" : "now";
    if (l.every_captures && !l.paused) next += ` (or ${l.new_captures}/${l.every_captures} captures)`;
    return [
      button(l.name, () => openLoop(l.name), "linkish"), l.model, l.champion || "-",
      l.paused ? "paused" : "active", last ? `${last.number}: ${last.status}` : "-",
      last ? last.decision || "-" : "-", next,
      `${usd(c.serving_usd_per_1m)} vs ${usd(c.api_usd_per_1m)}`,
      c.break_even_tokens_per_day == null ? "-" : Math.round(c.break_even_tokens_per_day).toLocaleString(),
      dep ? `${dep.shutdown ? `${dep.days_left} days left` : "deprecated, no date"} (${dep.model}), student ${pct(dep.student_win_rate)}` : "",
      button(l.paused ? "Resume" : "Pause", async () => {
        await api(`${loopPath(l.name)}/${l.paused ? "resume" : "pause"}`, { method: "POST", body: {} });
        await loadLoops();
      }),
    ];
  }));
  if (state.loop && page.data.some((l) => l.name === state.loop)) await openLoop(state.loop);
}

async function openLoop(name) {
  state.loop = name;
  const runs = (await api(`${loopPath(name)}/runs`)).data;
  $("#loop-detail").hidden = false;
  $("#loop-name").textContent = `${name}: ${runs.length} run${runs.length === 1 ? "" : "s"}`;
  const label = (r) => `#${r.number}`;
  chart($("#chart-winrate"), {
    title: "Win rate vs the incumbent (with its CI) and vs the teacher", runs, yLabel: "win rate",
    yMax: 1, yTick: pct, xLabel: "run", xOf: (r, i) => i, xTick: label, line: 0.5,
    none: "not evaluated yet (no run reached the evaluate step)",
    series: [
      { name: "vs incumbent", cls: "s1", value: (r) => r.vs_incumbent && r.vs_incumbent.win_rate,
        band: (r) => r.vs_incumbent && [r.vs_incumbent.ci_low, r.vs_incumbent.ci_high],
        text: (r) => (r.vs_incumbent ? `${pct(r.vs_incumbent.win_rate)} (${pct(r.vs_incumbent.ci_low)}–${pct(r.vs_incumbent.ci_high)}, n=${r.vs_incumbent.n})` : "n/a") },
      { name: "vs teacher", cls: "s2", value: (r) => r.vs_teacher && r.vs_teacher.win_rate,
        text: (r) => (r.vs_teacher ? `${pct(r.vs_teacher.win_rate)} (n=${r.vs_teacher.n})` : "n/a") },
    ],
  });
  const dated = runs.filter((r) => r.ended);
  chart($("#chart-cost"), {
    title: "Cost per 1M tokens: serving vs the API", runs: dated, yLabel: "$ / 1M tokens",
    yTick: usd, xLabel: "run end", xOf: (r) => Date.parse(r.ended), xTick: (r) => new Date(r.ended).toLocaleDateString(), lines: true,
    none: "not measured: no tokens served, no serving_cost_per_hour or no [prices] for the API model",
    series: [
      { name: "serving", cls: "s1", value: (r) => r.serving_usd_per_1m, text: (r) => usd(r.serving_usd_per_1m) },
      { name: "API", cls: "s2", value: (r) => r.api_usd_per_1m, text: (r) => usd(r.api_usd_per_1m) },
    ],
  });
  chart($("#chart-spend"), {
    title: "Spend per run: teacher and training", runs, yLabel: "US dollars", yTick: usd,
    xLabel: "run", xOf: (r, i) => i, xTick: label, bars: true, none: "nothing spent yet",
    series: [
      { name: "teacher", cls: "s1", value: (r) => r.teacher_usd, text: (r) => usd(r.teacher_usd) },
      { name: "training", cls: "s2", value: (r) => r.training_usd, text: (r) => usd(r.training_usd) },
    ],
  });
}

// A small hand-drawn SVG chart: y from 0 to a round maximum with five labelled ticks, x by
// run (evenly) or by time, points (and lines) or grouped bars, an optional CI band per
// point and a dashed reference line. The same numbers are in a table under it, for screen
// readers and for copying.
const SVGNS = "http://www.w3.org/2000/svg";
const W = 420, H = 230, L = 60, R = 12, T = 26, B = 44;

function el(tag, attrs = {}, text = null) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

function roundUp(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function chart(figure, o) {
  const caption = document.createElement("figcaption");
  caption.textContent = o.title;
  figure.replaceChildren(caption);
  const values = o.runs.flatMap((r) => o.series.flatMap((s) => [s.value(r), ...((s.band && s.band(r)) || [])])).filter((v) => v != null);
  if (!values.length) {
    const p = document.createElement("p");
    p.className = "hint empty";
    p.textContent = o.runs.length ? o.none : "no runs yet";
    figure.append(p);
    return;
  }
  const yMax = o.yMax || roundUp(Math.max(0, ...values));
  const xs = o.runs.map(o.xOf);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const pad = o.bars ? 0.5 : (x1 - x0) * 0.06;  // room for the first and last point or bar
  const X = (x) => L + ((x - x0 + pad) / (x1 - x0 + 2 * pad)) * (W - L - R);
  const Y = (v) => H - B - (v / yMax) * (H - T - B);
  const id = figure.id;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${id}-t ${id}-d` });
  const desc = o.runs.map((r) => `${o.xTick(r)}: ${o.series.map((s) => `${s.name} ${s.text(r)}`).join(", ")}`).join("; ");
  svg.append(el("title", { id: `${id}-t` }, o.title), el("desc", { id: `${id}-d` }, desc));
  for (let i = 0; i <= 4; i++) {  // y grid and labels
    const v = (yMax * i) / 4;
    svg.append(el("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" }),
      el("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, o.yTick(v)));
  }
  const every = Math.ceil(o.runs.length / 6);  // at most about six x labels
  o.runs.forEach((r, i) => {
    if (i % every === 0 || i === o.runs.length - 1) svg.append(el("text", { x: X(xs[i]), y: H - B + 16, "text-anchor": "middle" }, o.xTick(r)));
  });
  svg.append(el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis" }, o.xLabel),
    el("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis", transform: `rotate(-90 14 ${(T + H - B) / 2})` }, o.yLabel),
    el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "frame" }), el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "frame" }));
  if (o.line != null) svg.append(el("line", { x1: L, x2: W - R, y1: Y(o.line), y2: Y(o.line), class: "ref" }));
  const slot = (W - L - R) / (x1 - x0 + 2 * pad) * 0.8;  // a run's width, for its bars
  o.series.forEach((s, k) => {
    const g = el("g", { class: `series ${s.cls}` });
    const shown = o.runs.map((r, i) => [r, xs[i], s.value(r)]).filter(([, , v]) => v != null);
    if (o.lines && shown.length > 1) g.append(el("polyline", { points: shown.map(([, x, v]) => `${X(x)},${Y(v)}`).join(" "), fill: "none" }));
    for (const [r, x, v] of shown) {
      const tip = el("title", {}, `${o.xTick(r)} ${s.name}: ${s.text(r)}`);
      if (o.bars) {
        const w = slot / o.series.length;
        const bar = el("rect", { x: X(x) - slot / 2 + k * w, y: Y(v), width: w, height: Y(0) - Y(v), class: "bar" });
        bar.append(tip);
        g.append(bar);
        continue;
      }
      const band = s.band && s.band(r);
      if (band && band[0] != null && band[1] != null) g.append(el("line", { x1: X(x), x2: X(x), y1: Y(band[0]), y2: Y(band[1]), class: "ci" }));
      const dot = el("circle", { cx: X(x), cy: Y(v), r: 4, class: "point" });
      dot.append(tip);
      g.append(dot);
    }
    svg.append(g, el("text", { x: L + k * 120, y: 12, class: `legend ${s.cls}` }, `■ ${s.name}`));
  });
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "the numbers";
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const h of [o.xLabel, ...o.series.map((s) => s.name)]) head.append(Object.assign(document.createElement("th"), { textContent: h }));
  const body = table.createTBody();
  for (const r of o.runs) {
    const tr = body.insertRow();
    for (const c of [o.xTick(r), ...o.series.map((s) => s.text(r))]) tr.insertCell().textContent = c;
  }
  details.append(summary, table);
  figure.append(svg, details);
}

// ---- retention, erasure, audit ---------------------------------------------------------

async function loadRetention() {
  const r = await api("/api/admin/retention");
  $("#retention-status").textContent = (r.interval ? `Applied every ${r.interval} s by this server` : "Not scheduled on this server (retention_interval = 0)") +
    `; last run ${when(r.last_run) || "not yet"}${r.next_run ? `, next ${when(r.next_run)}` : ""}` +
    (r.last_error ? `; last error: ${r.last_error}` : "");
  fill("#retention-tenants", Object.entries(r.tenants).map(([t, d]) => [t, `${d} days`]));
}

async function loadErasures(offset) {
  state.offsets.erasures = offset;
  const page = await api(`/api/admin/erasures?${q({ offset, limit: PAGE })}`);
  fill("#erasures", page.data.map((e) => [when(e.created), e.actor, e.kind, e.target, counts(e.counts), e.exports.length]));
  pager("erasures", offset, page.data.length, page.has_more, loadErasures);
  const ul = $("#affected");
  ul.replaceChildren();
  const item = (text) => { const li = document.createElement("li"); li.textContent = text; ul.append(li); };
  for (const x of page.affected_exports) item(`${x.kind} ${x.path}: ${x.on_disk ? "rewritten" : "not on disk: find and delete its copies"}`);
  for (const m of page.affected_models) item(`model ${m.name}@${m.version} was trained on erased data: retrain it`);
  for (const r of page.affected_runs) item(`training run ${r.name} was trained on erased data: retrain it`);
}

async function loadAudit() {
  const f = $("#audit-form");
  const a = state.audit;
  const page = await api(`/api/admin/audit?${q({ actor: f.elements.actor.value.trim(), action: f.elements.action.value.trim(), after: a.after, limit: PAGE })}`);
  fill("#audit", page.data.map((e) => [when(e.created), e.actor, e.action,
    Object.entries(e.detail).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")]));
  a.lastId = page.last_id;
  a.hasMore = page.has_more;
  const p = $(".pager[data-for=audit]");
  p.querySelector(".where").textContent = `page ${a.cursors.length + 1}`;
  p.querySelector(".prev").disabled = a.cursors.length === 0;
  p.querySelector(".next").disabled = !a.hasMore;
}

function wireOthers() {
  $("#retention-run").onclick = guarded(async () => {
    const r = await api("/api/admin/retention/run", { method: "POST", body: {} });
    $("#retention-result").textContent = r.data.length
      ? r.data.map((e) => `${e.target}: ${counts(e.counts)}`).join("; ")
      : "Nothing was past its retention.";
    await loadRetention();
  });
  $("#erase-form").onsubmit = guarded(async (e) => {
    e.preventDefault();
    const f = e.target;
    const body = Object.fromEntries(["tenant", "user", "conversation", "capture", "confirm"].map((k) => [k, f[k].value.trim() || null]));
    const r = await api("/api/admin/erasures", { method: "POST", body });
    $("#erase-result").textContent = `Erased ${r.kind} ${r.target}: ${counts(r.counts)}.`;
    f.reset();
    await loadErasures(0);
  });
  $("#audit-form").onsubmit = guarded(async (e) => {
    e.preventDefault();
    Object.assign(state.audit, { cursors: [], after: null });
    await loadAudit();
  });
  const p = $(".pager[data-for=audit]");
  p.querySelector(".next").onclick = guarded(async () => {
    state.audit.cursors.push(state.audit.after);
    state.audit.after = state.audit.lastId;
    await loadAudit();
  });
  p.querySelector(".prev").onclick = guarded(async () => {
    state.audit.after = state.audit.cursors.pop() ?? null;
    await loadAudit();
  });
}

const loaders = {
  tenants: () => loadTenants(state.offsets.tenants),
  retention: loadRetention,
  erasure: () => loadErasures(0),
  datasets: () => loadDatasets(state.offsets.datasets),
  loops: loadLoops,
  audit: () => { Object.assign(state.audit, { cursors: [], after: null }); return loadAudit(); },
};

function wireTabs() {
  for (const b of document.querySelectorAll(".tabs button")) {
    b.onclick = guarded(async () => {
      for (const other of document.querySelectorAll(".tabs button")) other.classList.toggle("active", other === b);
      for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${b.dataset.tab}`;
      await loaders[b.dataset.tab]();
    });
  }
}

// ---- start -----------------------------------------------------------------------------

$("#signin-form").onsubmit = async (e) => {
  e.preventDefault();
  try {
    $("#signin-error").textContent = "";
    await signIn($("#key-input").value.trim());
  } catch (err) {
    $("#signin-error").textContent = err.message;
    showSignIn();
  }
};
$("#sign-out").onclick = signOut;
wireTabs();
wireTenants();
wireOthers();
wireDatasets();
if (state.key) {
  signIn(state.key).catch(showSignIn); // e.g. the chat's key of a person, not an admin
} else {
  showSignIn();
}
