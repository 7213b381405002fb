// Console: every stream with its live state, from the gateway's event stream.
//
// GET /api/v1/events is read with fetch (not EventSource) so that the control-plane
// token travels as "Authorization: Bearer", never in a URL. Each `streams` event holds
// the whole list; rows are updated in place, keyed by stream id. When the stream ends
// (gateway restarting, network gone) the page says so and reconnects with backoff.
//
// With auth on, the API answers 401/403: the page asks for a control-plane token, keeps
// it in sessionStorage (this tab only). It never goes into a URL: a link to the player
// is the plain /view/{id}, and following it with a token entered mints a viewer token
// for that stream, for ten minutes, and opens the player with that one (the player reads
// the stream's details with the tab's control-plane token).
"use strict";

(function () {
  const TOKEN_KEY = "media_server.token";
  const THUMB_MS = 10000; // a thumbnail is fetched again at most this often
  const VIEW_LINK_TTL_S = 600; // a viewer token minted for a link to the player
  const RETRY_MAX_MS = 10000;
  const rows = document.getElementById("rows");
  const note = document.getElementById("note");
  const updated = document.getElementById("updated");
  const authForm = document.getElementById("auth");
  const authMessage = document.getElementById("auth-message");
  const tokenInput = document.getElementById("token");
  const forget = document.getElementById("forget");
  const addForm = document.getElementById("add");
  const addMessage = document.getElementById("add-message");
  const errorText = window.MediaServer.errorText;

  let listening = null; // the AbortController of the open event stream
  let retryMs = 500;
  const thumbs = new Map(); // stream id -> {url, at}

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
    return `/view/${encodeURIComponent(id)}`;
  }

  // Follow a link to the player: with a control-plane token, through a viewer token of its
  // own (a token in a URL lands in history, shared links and proxy logs: this one is
  // narrow and short-lived). A token that may not issue one leaves the plain link.
  async function openPlayer(event, id) {
    if (!token || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) {
      return;
    }
    event.preventDefault();
    try {
      const response = await api(`/api/v1/streams/${encodeURIComponent(id)}/viewer-tokens`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ttl: VIEW_LINK_TTL_S }),
      });
      if (response.ok) {
        location.assign((await response.json()).view_url);
        return;
      }
    } catch (err) {
      // the gateway is unreachable: the plain link says so as well as anything
    }
    location.assign(viewUrl(id));
  }

  function say(text, kind) {
    note.textContent = text;
    note.className = kind ? `note ${kind}` : "note";
  }

  function askForToken(status, text) {
    const refused = token
      ? status === 403
        ? "The token was accepted but may not list streams"
        : "The token was refused"
      : "This gateway needs a control-plane token";
    authMessage.textContent = `${refused} — ${text}`;
    authForm.hidden = false;
    say(`${refused} (HTTP ${status}): ${text}`, "bad");
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
    say("Checking the token…");
    listen();
  });

  forget.addEventListener("click", () => {
    setToken("");
    placeholder("Loading streams…");
    listen();
  });

  // -- the table --------------------------------------------------------------------------
  function dash(value) {
    return value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function facts(s) {
    return {
      codec: s.codec || "—",
      profile: [
        s.profile,
        s.audio_codec ? `audio ${s.audio_codec} (${s.audio_mode})` : "",
        transcodeText(s),
      ]
        .filter(Boolean)
        .join(" · "),
      resolution: s.width && s.height ? `${s.width}×${s.height}` : "—",
      fps: typeof s.fps === "number" && s.fps > 0 ? s.fps.toFixed(1) : "—",
      bitrate:
        typeof s.bitrate === "number"
          ? s.bitrate >= 1e6
            ? `${(s.bitrate / 1e6).toFixed(2)} Mbit/s`
            : `${Math.round(s.bitrate / 1e3)} kbit/s`
          : "—",
      viewers: viewersText(s),
      error: s.error || "",
    };
  }

  // An H.265 camera's viewers that take its H.264 transcode (the rest get it as it is).
  function transcodeText(s) {
    if (s.codec !== "hevc" || s.effective_mode !== "passthrough") return "";
    const takers = Object.values(s.video_codecs || {}).reduce((n, c) => n + (c.h264 || 0), 0);
    return takers > 0 ? `H.264 transcode for ${takers}` : "";
  }

  // Viewers of every kind: the WebRTC count first (what the column always showed), then
  // MSE and HLS where there are any, e.g. "3 · 1 MSE · 2 HLS".
  function viewersText(s) {
    if (typeof s.viewers !== "number") return "—";
    const c = s.consumers || {};
    const more = [
      [c.mse, "MSE"],
      [c.hls, "HLS"],
    ].filter(([n]) => n > 0);
    return [String(s.viewers), ...more.map(([n, name]) => `${n} ${name}`)].join(" · ");
  }

  function cell(className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    return td;
  }

  function newRow(s) {
    const tr = document.createElement("tr");
    tr.dataset.streamId = s.id;
    const thumb = cell("thumb");
    const img = document.createElement("img");
    img.alt = "";
    img.width = 96;
    img.height = 54;
    thumb.appendChild(img);
    tr.appendChild(thumb);

    const id = cell("id");
    const link = document.createElement("a");
    link.href = viewUrl(s.id);
    link.addEventListener("click", (event) => openPlayer(event, s.id));
    link.textContent = s.id;
    id.appendChild(link);
    const url = document.createElement("div");
    url.className = "url";
    const error = document.createElement("div");
    error.className = "error"; // why a stream is failing or reconnecting, under its name
    id.append(url, error);
    tr.appendChild(id);

    const state = cell("state");
    const badge = document.createElement("span");
    state.appendChild(badge);
    tr.appendChild(state);
    for (const name of ["codec", "num resolution", "num fps", "num bitrate", "num viewers"]) {
      tr.appendChild(cell(name));
    }

    const actions = cell("actions");
    const watch = document.createElement("a");
    watch.href = link.href;
    watch.addEventListener("click", (event) => openPlayer(event, s.id));
    watch.textContent = "Watch →";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link danger remove";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => removeStream(s.id, remove));
    if (s.managed_by === "config") {
      // The API refuses (409): such a stream changes in the config file, then a reload.
      remove.disabled = true;
      remove.title = "declared in the config file: edit it there and reload (SIGHUP)";
    }
    actions.append(watch, remove);
    tr.appendChild(actions);
    return tr;
  }

  function update(tr, s) {
    tr.dataset.state = s.state || "";
    tr.querySelector("td.id div.url").textContent = s.url || "";
    const badge = tr.querySelector("td.state span");
    badge.className = `badge state ${s.state || ""}`;
    badge.textContent = dash(s.state);
    const f = facts(s);
    const codecCell = tr.querySelector("td.codec");
    codecCell.textContent = f.codec;
    if (f.profile) {
      const profile = document.createElement("div");
      profile.className = "url";
      profile.textContent = f.profile;
      codecCell.appendChild(profile);
    }
    tr.querySelector("td.resolution").textContent = f.resolution;
    tr.querySelector("td.fps").textContent = f.fps;
    tr.querySelector("td.bitrate").textContent = f.bitrate;
    tr.querySelector("td.viewers").textContent = f.viewers;
    tr.querySelector("td.id div.error").textContent = f.error;
    if (s.state === "live") refreshThumb(s.id, tr.querySelector("td.thumb img"));
  }

  async function refreshThumb(id, img) {
    const known = thumbs.get(id);
    const now = Date.now();
    if (known && (known.loading || now - known.at < THUMB_MS)) return;
    thumbs.set(id, { url: known && known.url, at: now, loading: true });
    try {
      const response = await api(`/api/v1/streams/${encodeURIComponent(id)}/snapshot.jpg`, {
        headers: { Accept: "image/jpeg" },
      });
      if (!response.ok) throw new Error(await errorText(response));
      const url = URL.createObjectURL(await response.blob());
      if (known && known.url) URL.revokeObjectURL(known.url);
      img.src = url;
      img.title = `snapshot at ${new Date().toLocaleTimeString()}`;
      thumbs.set(id, { url, at: Date.now(), loading: false });
    } catch (err) {
      img.title = `no snapshot: ${err.message || err}`;
      thumbs.set(id, { url: known && known.url, at: Date.now(), loading: false });
    }
  }

  function placeholder(text) {
    const tr = document.createElement("tr");
    const td = cell("empty");
    td.textContent = text;
    td.colSpan = 9;
    tr.appendChild(td);
    rows.replaceChildren(tr);
  }

  function render(streams) {
    if (streams.length === 0) {
      placeholder("No streams registered.");
      return;
    }
    const existing = new Map();
    rows.querySelectorAll("tr[data-stream-id]").forEach((tr) => existing.set(tr.dataset.streamId, tr));
    const fragment = document.createDocumentFragment();
    streams
      .slice()
      .sort((a, b) => String(a.id).localeCompare(String(b.id)))
      .forEach((s) => {
        const tr = existing.get(s.id) || newRow(s);
        update(tr, s);
        fragment.appendChild(tr);
      });
    for (const id of thumbs.keys()) {
      if (!streams.some((s) => s.id === id)) {
        const gone = thumbs.get(id);
        if (gone && gone.url) URL.revokeObjectURL(gone.url);
        thumbs.delete(id);
      }
    }
    rows.replaceChildren(fragment);
  }

  // -- the event stream -------------------------------------------------------------------
  function handle(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (event !== "streams" || data.length === 0) return;
    const body = JSON.parse(data.join("\n"));
    render(Array.isArray(body.streams) ? body.streams : []);
    updated.textContent = `live · ${new Date().toLocaleTimeString()}`;
    updated.dataset.live = "true";
  }

  async function listen() {
    if (listening) listening.abort();
    const controller = new AbortController();
    listening = controller;
    const sentWith = token;
    try {
      const response = await api("/api/v1/events", {
        headers: { Accept: "text/event-stream" },
        signal: controller.signal,
      });
      if (response.status === 401 || response.status === 403) {
        askForToken(response.status, await errorText(response));
        listening = null;
        return; // nothing changes until a token is entered
      }
      if (!response.ok || !response.body) throw new Error(await errorText(response));
      authForm.hidden = true;
      if (note.className !== "note bad" || sentWith) say("");
      retryMs = 500;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
      throw new Error("the gateway ended the event stream");
    } catch (err) {
      if (controller.signal.aborted) return; // replaced by a newer listen()
      updated.textContent = "reconnecting…";
      updated.dataset.live = "false";
      say(`Live updates interrupted (${err.message || err}); reconnecting…`, "warn");
      setTimeout(() => {
        if (listening === controller) listen();
      }, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  }

  // -- adding and removing ----------------------------------------------------------------
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(addForm);
    const body = {
      url: String(form.get("url") || "").trim(),
      mode: form.get("mode"),
      transport: form.get("transport"),
      on_demand: form.get("on_demand") === "on",
    };
    const id = String(form.get("id") || "").trim();
    if (id) body.id = id;
    addMessage.textContent = "Adding…";
    addMessage.className = "note";
    try {
      const response = await api("/api/v1/streams", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        addMessage.textContent = `Not added — ${await errorText(response)}`;
        addMessage.className = "note bad";
        return;
      }
      const stream = await response.json();
      addMessage.textContent = `Added ${stream.id}.`;
      addMessage.className = "note good";
      addForm.reset();
    } catch (err) {
      addMessage.textContent = `Not added — the gateway did not answer (${err.message || err}).`;
      addMessage.className = "note bad";
    }
  });

  async function removeStream(id, button) {
    if (!window.confirm(`Remove stream ${id}? Its viewers are disconnected.`)) return;
    button.disabled = true;
    try {
      const response = await api(`/api/v1/streams/${encodeURIComponent(id)}`, { method: "DELETE" });
      if (!response.ok && response.status !== 404) {
        say(`Could not remove ${id} — ${await errorText(response)}`, "bad");
        button.disabled = false;
        return;
      }
      say(`Removed ${id}.`);
    } catch (err) {
      say(`Could not remove ${id} — the gateway did not answer (${err.message || err}).`, "bad");
      button.disabled = false;
    }
  }

  forget.hidden = !token;
  listen();
})();
