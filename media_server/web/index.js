// Stream list: GET /api/v1/streams every 2 s, one table row per stream.
//
// With auth on, the API answers 401/403: the page then asks for a control-plane token,
// keeps it in sessionStorage (this tab only) and sends it as "Authorization: Bearer" on
// every API call. Links to the player carry it as ?token= (the gateway accepts a
// control-plane token for viewing) only when one was entered.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const TOKEN_KEY = "media_server.token";
  const rows = document.getElementById("rows");
  const note = document.getElementById("note");
  const updated = document.getElementById("updated");
  const authForm = document.getElementById("auth");
  const authMessage = document.getElementById("auth-message");
  const tokenInput = document.getElementById("token");
  const forget = document.getElementById("forget");

  let refreshTimer = null;

  // -- the control-plane token ------------------------------------------------------------
  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return ""; // storage disabled: the token lives as long as the page
    }
  }

  let token = storedToken();

  function setToken(value) {
    token = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* storage disabled */
    }
    forget.hidden = !token;
  }

  function api(path, options) {
    const opts = options || {};
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (token) headers.Authorization = `Bearer ${token}`;
    return fetch(path, Object.assign({ cache: "no-store" }, opts, { headers }));
  }

  function viewUrl(id) {
    const base = `/view/${encodeURIComponent(id)}`;
    return token ? `${base}?token=${encodeURIComponent(token)}` : base;
  }

  function askForToken(status, text) {
    const refused = token
      ? status === 403
        ? "The token was accepted but may not list streams"
        : "The token was refused"
      : "This gateway needs a control-plane token";
    authMessage.textContent = `${refused} — ${text}`;
    authForm.hidden = false;
    note.textContent = `${refused} (HTTP ${status}): ${text}`;
    note.className = "note bad";
    updated.textContent = "signed out";
    placeholder("Enter a token to see the streams.");
    if (document.activeElement !== tokenInput) tokenInput.focus();
  }

  authForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = tokenInput.value.trim();
    if (!value) return;
    setToken(value);
    tokenInput.value = "";
    authMessage.textContent = "";
    authForm.hidden = true;
    note.textContent = "Checking the token…";
    note.className = "note";
    refresh();
  });

  forget.addEventListener("click", () => {
    setToken("");
    placeholder("Loading streams…");
    refresh();
  });

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function dash(value) {
    return value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function resolution(s) {
    return s.width && s.height ? `${s.width}×${s.height}` : "—";
  }

  function fps(s) {
    return typeof s.fps === "number" && s.fps > 0 ? s.fps.toFixed(1) : "—";
  }

  function codec(s) {
    if (!s.codec) return "—";
    return s.profile ? `${s.codec} (${s.profile})` : s.codec;
  }

  function row(s) {
    const tr = document.createElement("tr");
    tr.dataset.streamId = s.id;
    tr.dataset.state = s.state || "";

    const id = cell("", "id");
    const link = document.createElement("a");
    link.href = viewUrl(s.id);
    link.textContent = s.id;
    id.appendChild(link);
    if (s.url) {
      const url = document.createElement("div");
      url.className = "url";
      url.textContent = s.url;
      id.appendChild(url);
    }
    tr.appendChild(id);

    const state = cell("");
    const badge = document.createElement("span");
    badge.className = `badge state ${s.state || ""}`;
    badge.textContent = dash(s.state);
    state.appendChild(badge);
    tr.appendChild(state);

    tr.appendChild(cell(codec(s), "codec"));
    tr.appendChild(cell(resolution(s), "num resolution"));
    tr.appendChild(cell(fps(s), "num fps"));
    tr.appendChild(cell(dash(s.viewers), "num viewers"));
    tr.appendChild(cell(s.error || "", "error"));

    const action = cell("");
    const watch = document.createElement("a");
    watch.href = link.href;
    watch.textContent = "Watch →";
    action.appendChild(watch);
    tr.appendChild(action);
    return tr;
  }

  function placeholder(text) {
    const tr = document.createElement("tr");
    const td = cell(text, "empty");
    td.colSpan = 8;
    tr.appendChild(td);
    rows.replaceChildren(tr);
  }

  function render(streams) {
    const fragment = document.createDocumentFragment();
    if (streams.length === 0) {
      const tr = document.createElement("tr");
      const td = cell("No streams registered.", "empty");
      td.colSpan = 8;
      tr.appendChild(td);
      fragment.appendChild(tr);
    } else {
      streams
        .slice()
        .sort((a, b) => String(a.id).localeCompare(String(b.id)))
        .forEach((s) => fragment.appendChild(row(s)));
    }
    rows.replaceChildren(fragment);
  }

  const errorText = window.MediaServer.errorText;

  async function refresh() {
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = null;
    const sentWith = token;
    let again = true;
    try {
      const response = await api("/api/v1/streams");
      if (token !== sentWith) return; // the token changed meanwhile: that refresh counts
      if (response.status === 401 || response.status === 403) {
        askForToken(response.status, await errorText(response));
        again = false; // nothing changes until a token is entered
        return;
      }
      if (!response.ok) throw new Error(await errorText(response));
      const body = await response.json();
      authForm.hidden = true;
      render(Array.isArray(body.streams) ? body.streams : []);
      note.textContent = "";
      note.className = "note";
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      note.textContent = `Could not load streams: ${err.message || err}`;
      note.className = "note bad";
      updated.textContent = "offline";
    } finally {
      if (again && token === sentWith && !refreshTimer) refreshTimer = setTimeout(refresh, REFRESH_MS);
    }
  }

  forget.hidden = !token;
  refresh();
})();
