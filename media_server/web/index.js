// Stream list: GET /api/v1/streams every 2 s, one table row per stream.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const rows = document.getElementById("rows");
  const note = document.getElementById("note");
  const updated = document.getElementById("updated");

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
    link.href = `/view/${encodeURIComponent(s.id)}`;
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

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.error) return `${body.error.code}: ${body.error.message}`;
    } catch (_) {
      /* not JSON */
    }
    return `HTTP ${response.status}`;
  }

  async function refresh() {
    try {
      const response = await fetch("/api/v1/streams", {
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(await errorText(response));
      const body = await response.json();
      render(Array.isArray(body.streams) ? body.streams : []);
      note.textContent = "";
      note.className = "note";
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      note.textContent = `Could not load streams: ${err.message || err}`;
      note.className = "note bad";
      updated.textContent = "offline";
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
