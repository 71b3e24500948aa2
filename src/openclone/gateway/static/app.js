// OpenClone's web chat: plain ES modules, no build step, no CDN (the machines are offline).
import { escapeHtml, renderMarkdown } from "/static/markdown.js";

const $ = (sel) => document.querySelector(sel);
const state = {
  key: localStorage.getItem("openclone.key") || "",
  me: null,
  models: [],
  conversations: [],
  current: null, // the open conversation, with .messages
  controller: null, // AbortController of the running stream
  battle: null,
};

// ---- talking to the server -------------------------------------------------------------

class ApiError extends Error {}

function plainWords(status, body) {
  const err = body && body.error ? body.error : {};
  if (err.code === "context_length_exceeded") return "This conversation is too long for the model. Start a new chat or shorten your message.";
  if (err.code === "model_not_found") return "That model is not available any more. Pick another one.";
  if (status === 401) return "Your key was not accepted. Sign in again.";
  if (status === 429) return "The model is busy. Try again in a moment.";
  if (status >= 500) return `The model is unavailable right now (${err.message || status}).`;
  return err.message || `Request failed (${status}).`;
}

async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const res = await fetch(path, {
    method, signal,
    headers: { Authorization: `Bearer ${state.key}`, ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) {
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    if (res.status === 401) signOut();
    throw new ApiError(plainWords(res.status, data));
  }
  return res;
}
const getJSON = async (path) => (await api(path)).json();

// Stream an OpenAI chat completion; onDelta gets each piece of text. Returns the response headers.
async function streamChat(body, onDelta, { signal, headers = {}, path = "/v1/chat/completions" } = {}) {
  const res = await api(path, { method: "POST", body: { ...body, stream: true }, headers, signal });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return res.headers;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(plainWords(500, chunk));
        const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
        if (piece) onDelta(piece);
      }
    }
  }
  return res.headers;
}

function banner(text) {
  const el = $("#banner");
  el.textContent = text || "";
  el.hidden = !text;
}

// ---- sign in ---------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  state.me = await getJSON("/api/me");
  localStorage.setItem("openclone.key", key);
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#who").textContent = `${state.me.user} · ${state.me.tenant}`;
  $("#consent").checked = !!state.me.train;
  state.models = (await getJSON("/v1/models")).data.map((m) => m.id);
  $("#model").innerHTML = state.models.map((m) => `<option>${escapeHtml(m)}</option>`).join("");
  await refreshList();
  newChat();
}

function signOut() {
  localStorage.removeItem("openclone.key");
  state.key = "";
  $("#app").hidden = true;
  $("#signin").hidden = false;
}

// ---- conversations ---------------------------------------------------------------------

async function refreshList() {
  const q = $("#search").value.trim();
  state.conversations = await getJSON(`/api/conversations${q ? `?q=${encodeURIComponent(q)}` : ""}`);
  const ul = $("#conversations");
  ul.innerHTML = "";
  for (const c of state.conversations) {
    const li = document.createElement("li");
    li.className = state.current && state.current.id === c.id ? "active" : "";
    li.innerHTML = `<button type="button" class="title"></button><button type="button" class="act rename" aria-label="Rename">✎</button><button type="button" class="act delete" aria-label="Delete">🗑</button>`;
    li.querySelector(".title").textContent = c.title || "New chat";
    li.querySelector(".title").onclick = () => openConversation(c.id);
    li.querySelector(".rename").onclick = () => renameConversation(c);
    li.querySelector(".delete").onclick = () => deleteConversation(c);
    ul.appendChild(li);
  }
}

function newChat() {
  state.current = { id: null, title: "", model: $("#model").value, system_prompt: "", temperature: 0.7, messages: [] };
  renderMessages();
  $("#prompt").focus();
}

async function openConversation(id) {
  state.current = await getJSON(`/api/conversations/${id}`);
  if (state.models.includes(state.current.model)) $("#model").value = state.current.model;
  renderMessages();
  await refreshList();
  $("#sidebar").classList.remove("open");
}

async function renameConversation(c) {
  const title = prompt("New name", c.title || "");
  if (title === null || !title.trim()) return;
  await api(`/api/conversations/${c.id}`, { method: "PATCH", body: { title: title.trim() } });
  if (state.current && state.current.id === c.id) state.current.title = title.trim();
  await refreshList();
}

async function deleteConversation(c) {
  if (!confirm(`Delete "${c.title || "New chat"}"?`)) return;
  await api(`/api/conversations/${c.id}`, { method: "DELETE" });
  if (state.current && state.current.id === c.id) newChat();
  await refreshList();
}

async function ensureConversation(firstMessage) {
  if (state.current.id) return;
  const created = await (await api("/api/conversations", {
    method: "POST",
    body: { title: firstMessage.slice(0, 60), model: $("#model").value, system_prompt: state.current.system_prompt, temperature: state.current.temperature },
  })).json();
  state.current = { ...created, messages: state.current.messages };
}

// ---- messages --------------------------------------------------------------------------

function renderMessages() {
  const box = $("#messages");
  box.innerHTML = "";
  state.current.messages.forEach((m, i) => box.appendChild(messageEl(m, i)));
  box.scrollTop = box.scrollHeight;
}

function messageEl(m, index) {
  const div = document.createElement("div");
  div.className = `msg ${m.role}`;
  const bubble = document.createElement("div");
  bubble.className = `bubble ${m.role}`;
  if (m.role === "assistant") bubble.innerHTML = renderMarkdown(m.content || "");
  else bubble.textContent = m.content;
  div.appendChild(bubble);
  const tools = document.createElement("div");
  tools.className = "tools";
  if (m.role === "assistant" && m.capture_id) {
    tools.innerHTML = `<button type="button" class="up" aria-label="Good answer" aria-pressed="${m.rating === 1}">👍</button><button type="button" class="down" aria-label="Bad answer" aria-pressed="${m.rating === -1}">👎</button>`;
    tools.querySelector(".up").onclick = () => feedback(m, 1, tools);
    tools.querySelector(".down").onclick = () => feedback(m, -1, tools);
  }
  if (m.role === "assistant" && index === state.current.messages.length - 1) {
    const regen = document.createElement("button");
    regen.type = "button"; regen.textContent = "Regenerate"; regen.className = "regen";
    regen.onclick = () => resend(index - 1, state.current.messages[index - 1].content);
    tools.appendChild(regen);
  }
  if (m.role === "user") {
    const edit = document.createElement("button");
    edit.type = "button"; edit.textContent = "Edit"; edit.className = "edit";
    edit.onclick = () => {
      const text = prompt("Edit message", m.content);
      if (text !== null && text.trim()) resend(index, text.trim());
    };
    tools.appendChild(edit);
  }
  div.appendChild(tools);
  return div;
}

async function feedback(m, rating, tools) {
  const comment = rating < 0 ? prompt("What was wrong with this answer? (optional)", "") : "";
  if (comment === null) return;
  try {
    await api("/api/feedback", { method: "POST", body: { capture_id: m.capture_id, rating, comment } });
    m.rating = rating;
    tools.querySelector(".up").setAttribute("aria-pressed", String(rating === 1));
    tools.querySelector(".down").setAttribute("aria-pressed", String(rating === -1));
  } catch (e) { banner(e.message); }
}

// Resend from message `index` (a user turn) with `text`: drops everything after it.
async function resend(index, text) {
  if (state.controller) return;
  if (state.current.id) await api(`/api/conversations/${state.current.id}/truncate`, { method: "POST", body: { keep: index } });
  state.current.messages = state.current.messages.slice(0, index);
  await send(text);
}

async function send(text) {
  banner("");
  await ensureConversation(text);
  const conv = state.current;
  conv.messages.push({ role: "user", content: text });
  const reply = { role: "assistant", content: "" };
  conv.messages.push(reply);
  renderMessages();
  const bubble = $("#messages").lastElementChild.querySelector(".bubble");
  const history = conv.messages.slice(0, -1).map(({ role, content }) => ({ role, content }));
  if (conv.system_prompt) history.unshift({ role: "system", content: conv.system_prompt });
  state.controller = new AbortController();
  $("#send").hidden = true; $("#stop").hidden = false;
  let pending = false;
  try {
    const headers = await streamChat(
      { model: $("#model").value, messages: history, temperature: conv.temperature },
      (piece) => {
        reply.content += piece;
        if (!pending) {
          pending = true;
          requestAnimationFrame(() => { pending = false; bubble.innerHTML = renderMarkdown(reply.content); $("#messages").scrollTop = $("#messages").scrollHeight; });
        }
      },
      { signal: state.controller.signal, headers: { "X-OpenClone-Conversation": conv.id } },
    );
    reply.capture_id = headers.get("X-OpenClone-Capture-Id");
  } catch (e) {
    if (e.name !== "AbortError") { banner(e.message); if (!reply.content) conv.messages.splice(-2, 2); }
  } finally {
    state.controller = null;
    $("#send").hidden = false; $("#stop").hidden = true;
    if (state.current === conv) renderMessages();
    refreshList();
  }
}

// ---- settings and privacy ----------------------------------------------------------------

function openSettings() {
  $("#system-prompt").value = state.current.system_prompt || "";
  $("#temperature").value = state.current.temperature ?? 0.7;
  $("#temperature-value").textContent = $("#temperature").value;
  $("#settings").showModal();
}

async function saveSettings() {
  state.current.system_prompt = $("#system-prompt").value;
  state.current.temperature = Number($("#temperature").value);
  if (state.current.id) {
    await api(`/api/conversations/${state.current.id}`, { method: "PATCH", body: { system_prompt: state.current.system_prompt, temperature: state.current.temperature } });
  }
}

async function exportData() {
  const data = await (await api("/api/me/export")).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(data);
  a.download = "openclone-conversations.json";
  a.click();
}

async function eraseData() {
  if (!confirm("Delete all your conversations and data for good? This cannot be undone.")) return;
  await api("/api/me/erase", { method: "POST", body: {} });  // JSON: the server refuses form posts (CSRF)
  newChat();
  await refreshList();
  banner("All your data was deleted.");
}

// ---- arena -----------------------------------------------------------------------------

async function battle(promptText) {
  banner("");
  $("#arena-vote").hidden = true;
  $("#arena-reveal").textContent = "";
  const b = await (await api("/api/arena/battles", { method: "POST", body: { prompt: promptText } })).json();
  state.battle = b;
  const run = async (side) => {
    const el = $(`#arena-${side}`);
    let text = "";
    el.innerHTML = "";
    await streamChat({}, (piece) => { text += piece; el.innerHTML = renderMarkdown(text); }, { path: `/api/arena/battles/${b.id}/${side}` });
  };
  try {
    await Promise.all([run("a"), run("b")]);
    $("#arena-vote").hidden = false;
  } catch (e) { banner(e.message); }
}

async function vote(winner) {
  const res = await (await api(`/api/arena/battles/${state.battle.id}/vote`, { method: "POST", body: { winner } })).json();
  $("#arena-vote").hidden = true;
  $("#arena-reveal").textContent = `Model A was ${res.model_a}; model B was ${res.model_b}.`;
}

async function leaderboard() {
  const rows = await getJSON("/api/arena/leaderboard");
  $("#leaderboard tbody").innerHTML = rows.map((r, i) =>
    `<tr><td>${i + 1}</td><td>${escapeHtml(r.model)}</td><td>${r.rating.toFixed(0)}</td><td>${r.ci_low.toFixed(0)} – ${r.ci_high.toFixed(0)}</td><td>${r.battles}</td></tr>`).join("");
}

function showView(name) {
  for (const v of ["chat", "arena", "leaderboard"]) $(`#view-${v}`).hidden = v !== name;
  document.querySelectorAll(".views button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  if (name === "leaderboard") leaderboard().catch((e) => banner(e.message));
  $("#sidebar").classList.remove("open");
}

// ---- wiring ----------------------------------------------------------------------------

function wire() {
  $("#signin-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("#signin-error").textContent = "";
    try { await signIn($("#key-input").value.trim()); } catch (e) { $("#signin-error").textContent = e.message; signOut(); }
  };
  $("#composer").onsubmit = (ev) => {
    ev.preventDefault();
    const text = $("#prompt").value.trim();
    if (!text || state.controller) return;
    $("#prompt").value = "";
    send(text);
  };
  $("#prompt").onkeydown = (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("#composer").requestSubmit(); }
  };
  $("#stop").onclick = () => state.controller && state.controller.abort();
  $("#new-chat").onclick = () => { newChat(); refreshList(); };
  let searchTimer;
  $("#search").oninput = () => { clearTimeout(searchTimer); searchTimer = setTimeout(refreshList, 200); };
  $("#settings-btn").onclick = openSettings;
  $("#temperature").oninput = () => { $("#temperature-value").textContent = $("#temperature").value; };
  $("#settings").addEventListener("close", () => { if ($("#settings").returnValue === "save") saveSettings().catch((e) => banner(e.message)); });
  $("#consent").onchange = async (ev) => {
    try { await api("/api/me/consent", { method: "PUT", body: { train: ev.target.checked } }); } catch (e) { banner(e.message); ev.target.checked = !ev.target.checked; }
  };
  $("#export-data").onclick = () => exportData().catch((e) => banner(e.message));
  $("#erase-data").onclick = () => eraseData().catch((e) => banner(e.message));
  $("#sign-out").onclick = signOut;
  $("#open-sidebar").onclick = () => $("#sidebar").classList.add("open");
  $("#close-sidebar").onclick = () => $("#sidebar").classList.remove("open");
  document.querySelectorAll(".views button").forEach((b) => { b.onclick = () => showView(b.dataset.view); });
  $("#arena-form").onsubmit = (ev) => {
    ev.preventDefault();
    const text = $("#arena-prompt").value.trim();
    if (text) battle(text);
  };
  document.querySelectorAll("#arena-vote button").forEach((b) => { b.onclick = () => vote(b.dataset.winner).catch((e) => banner(e.message)); });
  $("#messages").addEventListener("click", (ev) => {
    const btn = ev.target.closest(".copy");
    if (!btn) return;
    navigator.clipboard.writeText(btn.parentElement.querySelector("code").textContent).then(() => { btn.textContent = "Copied"; });
  });
}

wire();
if (state.key) signIn(state.key).catch(() => signOut());
else signOut();
