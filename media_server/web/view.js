// Player: one stream over WebRTC, signaled through /ws/{id}; reconnects by itself.
//
// Paths: WebRTC first; when it does not connect within FALLBACK_MS (UDP blocked, ICE
// failed) the player goes over to MSE (the stream's fMP4 over the same WebSocket) and
// says so. ?mode=webrtc|mse|hls forces one path: hls plays /hls/{id}/index.m3u8, in the
// browser's own HLS where it has one, else through MSE (fmp4.js).
//
// Flow per attempt: open the WebSocket -> RTCPeerConnection (no ICE servers) with one
// recvonly video transceiver -> offer -> trickle our candidates (null at the end) ->
// apply the answer (it already carries all of the gateway's candidates).
// Any failure (socket closed, peer failed, error before the answer) tears the attempt
// down and starts a new one after 1 s, 2 s, 4 s, 8 s, then every 10 s.
//
// With auth on, the page's own ?token= (a viewer token from a view_url, or a
// control-plane token) goes to the WebSocket as ?token= and to the API as
// "Authorization: Bearer". A socket the gateway refuses (401/403: say, an expired token)
// stops the retries with the gateway's reason: the same token would be refused again.
//
// Tests read window.__player: {pc, state, ...}.
"use strict";

(function () {
  const MIN_DELAY_MS = 1000;
  const MAX_DELAY_MS = 10000;
  const CONNECT_TIMEOUT_MS = 20000; // socket open -> peer connected
  const DISCONNECTED_GRACE_MS = 5000; // "disconnected" may recover by itself
  const STABLE_MS = 10000; // connected this long: the next failure retries quickly again
  const STREAM_POLL_MS = 2000;
  const STATS_MS = 1000;
  const PROBE_TIMEOUT_MS = 5000; // "why was the socket refused?"
  const FALLBACK_MS = 5000; // WebRTC not connected by then: over to MSE
  const PATH_NAMES = { webrtc: "WebRTC", mse: "MSE (fMP4 over WebSocket)", hls: "LL-HLS" };
  const Fmp4 = window.MediaServerFmp4;

  const segments = location.pathname.split("/").filter(Boolean);
  const streamId = decodeURIComponent(segments[segments.length - 1] || "");
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  // The path asked for, or null: WebRTC, and MSE should it not connect.
  const forced = ["webrtc", "mse", "hls"].includes(params.get("mode")) ? params.get("mode") : null;
  // The console keeps the operator's control-plane token in this tab: the stream's details
  // are read with it when the page's own token (a viewer token) may not read them.
  const apiToken = (function () {
    try {
      return sessionStorage.getItem("media_server.token") || token;
    } catch (err) {
      return token;
    }
  })();
  const wsUrl =
    (location.protocol === "https:" ? "wss://" : "ws://") +
    location.host +
    "/ws/" +
    encodeURIComponent(streamId) +
    (token ? `?token=${encodeURIComponent(token)}` : "");
  const hlsUrl =
    `${location.origin}/hls/${encodeURIComponent(streamId)}/index.m3u8` +
    (token ? `?token=${encodeURIComponent(token)}` : "");

  const video = document.getElementById("video");
  const badge = document.getElementById("player-state");
  const message = document.getElementById("message");
  const facts = document.getElementById("facts");
  const pathLabel = document.getElementById("path");
  const streamInfo = document.getElementById("stream-info");
  const sound = document.getElementById("sound");
  // Autoplay needs a muted start; a click (a user gesture) may then turn the sound on.
  sound.addEventListener("click", () => {
    video.muted = !video.muted;
    sound.textContent = video.muted ? "Sound on" : "Sound off";
    sound.setAttribute("aria-pressed", String(!video.muted));
  });
  document.getElementById("title").textContent = streamId || "Stream";
  document.title = `${streamId} · media_server`;

  const player = {
    streamId,
    pc: null,
    ws: null,
    state: "idle", // idle|connecting|negotiating|connected|playing|reconnecting|stopped
    error: null, // last error text, null once playing
    attempts: 0, // connection attempts so far
    retryDelayMs: MIN_DELAY_MS,
    stream: null, // last /api/v1/streams/{id} answer
    stats: null, // last inbound-rtp summary
    mediaTransport: null, // what the gateway said this viewer gets (the answer message)
    path: forced || "webrtc", // webrtc|mse|hls: what this attempt plays over
    fallback: null, // why the player left WebRTC, when it did
    codecs: null, // what an MSE or HLS path plays (the gateway's codecs string)
    fmp4: null, // the MSE or HLS path's handle: {feed, close()}
    startedAt: null, // performance.now() when this attempt began (first frame = from here)
  };
  window.__player = player;

  let generation = 0; // bumps on every teardown: callbacks of older attempts do nothing
  let retryTimer = null;
  let countdownTimer = null;
  let connectTimer = null;
  let graceTimer = null;
  let fallbackTimer = null;
  let connectedAt = null;

  function headers(bearer) {
    const h = { Accept: "application/json" };
    if (bearer) h.Authorization = `Bearer ${bearer}`;
    return h;
  }

  const errorText = window.MediaServer.errorText;

  // A WebSocket the gateway refuses before the upgrade shows up as close code 1006 with
  // no reason. Ask the page's own address (it checks the same token) why: the text of a
  // 401/403, or null when access is fine or the gateway does not answer.
  async function refusal() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), PROBE_TIMEOUT_MS);
    try {
      const response = await fetch(`/view/${encodeURIComponent(streamId)}`, {
        cache: "no-store",
        headers: headers(token),
        signal: abort.signal,
      });
      if (response.status === 401 || response.status === 403) return await errorText(response);
    } catch (_) {
      /* unreachable or slow: an ordinary reconnect */
    } finally {
      clearTimeout(timer);
    }
    return null;
  }

  // -- status line ------------------------------------------------------------------
  function show(state, text, bad) {
    player.state = state;
    badge.textContent = state;
    badge.className = `badge ${badgeClass(state)}`;
    message.textContent = text;
    message.className = bad ? "msg bad" : "msg";
  }

  function badgeClass(state) {
    if (state === "playing" || state === "connected") return "live";
    if (state === "reconnecting" && player.error) return "error";
    if (state === "stopped" || state === "idle") return "idle";
    return "connecting";
  }

  // -- one attempt ---------------------------------------------------------------------
  function clearTimers() {
    for (const t of [retryTimer, connectTimer, graceTimer, fallbackTimer]) if (t) clearTimeout(t);
    if (countdownTimer) clearInterval(countdownTimer);
    retryTimer = connectTimer = graceTimer = countdownTimer = fallbackTimer = null;
  }

  function teardown() {
    generation += 1;
    clearTimers();
    const { ws, pc, fmp4 } = player;
    player.ws = null;
    player.pc = null;
    player.fmp4 = null;
    if (fmp4) fmp4.close();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, "viewer reconnecting");
      } catch (_) {
        /* already closed */
      }
    }
    if (pc) {
      pc.ontrack = pc.onicecandidate = pc.onconnectionstatechange = null;
      pc.close();
    }
  }

  function retry(reason) {
    teardown();
    if (connectedAt !== null && performance.now() - connectedAt >= STABLE_MS) {
      player.retryDelayMs = MIN_DELAY_MS;
    }
    connectedAt = null;
    const wait = player.retryDelayMs;
    player.retryDelayMs = Math.min(MAX_DELAY_MS, wait * 2);
    player.error = reason;
    const due = performance.now() + wait;
    const tick = () => {
      const left = Math.max(0, Math.ceil((due - performance.now()) / 1000));
      show("reconnecting", `${reason} — retrying in ${left} s`, true);
    };
    tick();
    countdownTimer = setInterval(tick, 250);
    retryTimer = setTimeout(connect, wait);
  }

  function showPath() {
    const why = player.fallback ? ` (WebRTC did not connect: ${player.fallback})` : "";
    pathLabel.textContent = `live via ${PATH_NAMES[player.path]}${why}`;
  }

  // Auto mode only: WebRTC did not make it, so MSE from now on (for this page).
  function fallBack(reason) {
    if (forced || player.path !== "webrtc") return false;
    player.fallback = reason;
    player.path = "mse";
    player.retryDelayMs = MIN_DELAY_MS;
    connect();
    return true;
  }

  // A new attempt on whichever path: the last one's callbacks now do nothing (`current`
  // says whether a callback still belongs to this one).
  function beginAttempt() {
    teardown();
    const gen = generation;
    player.attempts += 1;
    player.startedAt = performance.now();
    show("connecting", player.attempts > 1 ? "Reconnecting…" : "Connecting…");
    return () => gen === generation;
  }

  function connect() {
    showPath();
    if (player.path !== "webrtc") {
      connectFmp4();
      return;
    }
    const current = beginAttempt();

    let ws;
    try {
      ws = new WebSocket(wsUrl);
    } catch (err) {
      retry(`cannot open signaling socket: ${err.message || err}`);
      return;
    }
    player.ws = ws;
    let pc = null;
    let offerSent = false;
    let answered = false;
    const pending = [];

    const send = (msg) => {
      const text = JSON.stringify(msg);
      if (offerSent && ws.readyState === WebSocket.OPEN) ws.send(text);
      else pending.push(text);
    };

    connectTimer = setTimeout(() => {
      if (current()) retry("no connection to the gateway in time");
    }, CONNECT_TIMEOUT_MS);

    ws.onopen = async () => {
      if (!current()) return;
      fallbackTimer = setTimeout(() => {
        if (current() && (!pc || pc.connectionState !== "connected")) {
          fallBack(`not connected within ${FALLBACK_MS / 1000} s`);
        }
      }, FALLBACK_MS);
      pc = new RTCPeerConnection({ iceServers: [] });
      player.pc = pc;
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" }); // the camera's sound, if any

      const media = new MediaStream();
      pc.ontrack = (event) => {
        if (!current()) return;
        media.addTrack(event.track);
        if (event.track.kind === "audio") sound.hidden = false;
        if (video.srcObject !== media) video.srcObject = media;
        video.play().catch(() => {
          /* autoplay is muted; a refusal shows up as no "playing" event */
        });
      };

      pc.onicecandidate = (event) => {
        if (!current()) return;
        send({ type: "candidate", candidate: event.candidate ? event.candidate.toJSON() : null });
      };

      pc.onconnectionstatechange = () => {
        if (!current()) return;
        const state = pc.connectionState;
        if (graceTimer && state !== "disconnected") {
          clearTimeout(graceTimer);
          graceTimer = null;
        }
        if (state === "connected") {
          if (connectTimer) clearTimeout(connectTimer);
          connectTimer = null;
          if (connectedAt === null) connectedAt = performance.now();
          if (player.state !== "playing") show("connected", "Connected, waiting for video…");
          if (!video.paused && video.readyState >= 2) onPlaying();
        } else if (state === "failed") {
          if (connectedAt === null && fallBack("the peer connection failed")) return;
          retry("the peer connection failed");
        } else if (state === "closed") {
          retry("the peer connection was closed");
        } else if (state === "disconnected") {
          show("connecting", "Connection interrupted, waiting for it to recover…", true);
          graceTimer = setTimeout(() => {
            if (current()) retry("the peer connection was lost");
          }, DISCONNECTED_GRACE_MS);
        }
      };

      try {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        if (!current()) return;
        ws.send(JSON.stringify({ type: "offer", sdp: offer.sdp }));
        offerSent = true;
        for (const text of pending.splice(0)) ws.send(text);
        show("negotiating", "Negotiating…");
      } catch (err) {
        if (current()) retry(`could not make an offer: ${err.message || err}`);
      }
    };

    ws.onmessage = async (event) => {
      if (!current()) return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (msg.type === "answer" && pc && !answered) {
        answered = true;
        player.mediaTransport = msg.media_transport || null;
        try {
          await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        } catch (err) {
          if (current()) retry(`could not apply the answer: ${err.message || err}`);
        }
      } else if (msg.type === "error") {
        const text = `${msg.code || "error"}: ${msg.message || "unknown error"}`;
        if (answered) {
          // A late, non-fatal complaint (say, about one trickled candidate).
          player.error = text;
          facts.title = text;
        } else {
          retry(text);
        }
      }
    };

    ws.onclose = async (event) => {
      if (!current()) return;
      const why = event.reason ? `: ${event.reason}` : "";
      const text = `lost the connection to the gateway (close code ${event.code}${why})`;
      if (pc === null) {
        // Never opened: maybe refused for want of a (valid) token.
        clearTimers();
        const refused = await refusal();
        if (!current()) return;
        if (refused) {
          stopRefused(refused);
          return;
        }
      }
      retry(text);
    };
  }

  // The gateway refused this viewer (a missing or bad token): retrying would not help.
  function stopRefused(refused) {
    teardown();
    player.error = refused;
    show("stopped", `Not allowed to watch this stream — ${refused}`, true);
    badge.className = "badge error";
  }

  // MSE or HLS: the stream's fMP4 into a MediaSource (or the browser's own HLS).
  function connectFmp4() {
    const current = beginAttempt();
    const handlers = {
      onCodecs(codecs) {
        if (!current()) return;
        player.codecs = codecs;
        if (/mp4a|opus/.test(codecs)) sound.hidden = false; // the stream's fMP4 has sound
        if (player.state !== "playing") show("connected", "Connected, waiting for video…");
      },
      async onError(text) {
        if (!current()) return;
        if (player.state === "connecting" && !player.codecs) {
          const refused = await refusal(); // a socket or playlist refused for its token?
          if (!current()) return;
          if (refused) {
            stopRefused(refused);
            return;
          }
        }
        retry(text);
      },
    };
    if (typeof MediaSource === "undefined" && player.path === "mse") {
      show("stopped", "This browser has no MediaSource: try ?mode=hls or ?mode=webrtc.", true);
      return;
    }
    player.fmp4 = player.path === "mse" ? Fmp4.mse(wsUrl, video, handlers) : Fmp4.hls(hlsUrl, video, handlers);
    connectTimer = setTimeout(() => {
      if (current() && player.state !== "playing") retry("no picture from the gateway in time");
    }, CONNECT_TIMEOUT_MS);
  }

  function onPlaying() {
    if (player.path !== "webrtc") {
      if (!player.fmp4) return;
      if (connectTimer) clearTimeout(connectTimer);
      connectTimer = null;
      if (connectedAt === null) connectedAt = performance.now();
      player.error = null;
      show("playing", "Playing");
      return;
    }
    if (!player.pc || player.pc.connectionState !== "connected") return;
    player.error = null;
    show("playing", "Playing");
  }

  video.addEventListener("playing", onPlaying);
  video.addEventListener("waiting", () => {
    if (player.state === "playing") show("connected", "Buffering…");
  });

  // -- facts: the stream's state from the API and what the browser decodes --------------
  async function pollStream() {
    try {
      const response = await fetch(`/api/v1/streams/${encodeURIComponent(streamId)}`, {
        cache: "no-store",
        headers: headers(apiToken),
      });
      if (response.status === 401 || response.status === 403) {
        // The same token will not do better later (a viewer token never opens the
        // control API): say so once and stop asking.
        player.stream = null;
        const which = token ? "with this token" : "without a token";
        streamInfo.textContent = `Stream details are not available ${which} (HTTP ${
          response.status
        } ${await errorText(response)}).`;
        streamInfo.className = "note warn";
        return;
      }
      if (response.status === 404) {
        player.stream = null;
        streamInfo.textContent = `The gateway has no stream '${streamId}'.`;
        streamInfo.className = "note bad";
      } else if (response.ok) {
        const s = await response.json();
        player.stream = s;
        const parts = [`stream ${s.state}`];
        if (s.codec) parts.push(s.profile ? `${s.codec} ${s.profile}` : s.codec);
        if (s.width && s.height) parts.push(`${s.width}×${s.height}`);
        if (typeof s.fps === "number" && s.fps > 0) parts.push(`${s.fps.toFixed(1)} fps`);
        if (s.effective_mode) parts.push(s.effective_mode);
        if (typeof s.viewers === "number") parts.push(`${s.viewers} viewer${s.viewers === 1 ? "" : "s"}`);
        streamInfo.textContent = parts.join(" · ") + (s.error ? ` — ${s.error}` : "");
        streamInfo.className = s.error || s.state === "failed" ? "note bad" : "note";
      } else {
        streamInfo.textContent = `Stream details: ${await errorText(response)}`;
        streamInfo.className = "note bad";
      }
    } catch (_) {
      streamInfo.textContent = "The gateway does not answer.";
      streamInfo.className = "note bad";
    }
    setTimeout(pollStream, STREAM_POLL_MS);
  }

  // -- stats: what the browser measures (getStats), in the line under the player and in
  // the overlay the "Stats" button toggles -----------------------------------------------
  const overlay = document.getElementById("stats");
  const toggle = document.getElementById("stats-toggle");
  let previous = null; // {at, bytes} of the last reading, for the bitrate

  toggle.addEventListener("click", () => {
    overlay.hidden = !overlay.hidden;
    toggle.setAttribute("aria-pressed", String(!overlay.hidden));
  });

  function ms(seconds) {
    return typeof seconds === "number" && isFinite(seconds) ? `${Math.round(seconds * 1000)} ms` : "—";
  }

  function showOverlay(st) {
    const rows = [
      ["resolution", st.width && st.height ? `${st.width}×${st.height}` : "—"],
      ["fps", st.fps ? st.fps.toFixed(0) : "—"],
      ["bitrate", st.bitrate !== null ? `${(st.bitrate / 1000).toFixed(0)} kbit/s` : "—"],
      ["packets lost", String(st.packetsLost)],
      ["jitter", ms(st.jitter)],
      ["latency (est.)", ms(st.latency)],
      ["codec", st.codec ? st.codec.replace("video/", "") : "—"],
      ["transport", player.path === "webrtc" ? player.mediaTransport || "—" : player.path],
    ];
    const fragment = document.createDocumentFragment();
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.dataset.stat = name.split(" ")[0];
      fragment.append(dt, dd);
    }
    overlay.replaceChildren(fragment);
  }

  // MSE and HLS: what the video element says (frames shown, buffer ahead).
  function fmp4Stats() {
    const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const feed = player.fmp4 ? player.fmp4.feed : null;
    const behind = feed ? feed.behind() : null;
    player.stats = {
      codec: player.codecs,
      width: video.videoWidth || null,
      height: video.videoHeight || null,
      fps: null,
      framesDecoded: quality ? quality.totalVideoFrames : 0,
      packetsLost: 0,
      jitter: null,
      bitrate: null,
      latency: behind,
    };
    const st = player.stats;
    const bits = [player.path];
    if (st.width && st.height) bits.push(`${st.width}×${st.height}`);
    bits.push(`${st.framesDecoded} frames`);
    if (typeof behind === "number") bits.push(`${Math.round(behind * 1000)} ms buffered`);
    facts.textContent = bits.join(" · ");
    showOverlay(st);
  }

  async function pollStats() {
    const pc = player.pc;
    try {
      if (player.fmp4) {
        fmp4Stats();
      } else if (pc && pc.connectionState === "connected") {
        const report = await pc.getStats();
        let inbound = null;
        let pair = null;
        report.forEach((r) => {
          if (r.type === "inbound-rtp" && r.kind === "video") inbound = r;
          if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r;
        });
        const codec = inbound && inbound.codecId ? report.get(inbound.codecId) || null : null;
        if (inbound) {
          const now = performance.now();
          const bytes = inbound.bytesReceived || 0;
          const bitrate =
            previous && now > previous.at ? ((bytes - previous.bytes) * 8 * 1000) / (now - previous.at) : null;
          previous = { at: now, bytes };
          // Estimated glass-to-glass share the browser can see: half the round trip, the
          // jitter buffer's average hold and the average decode time.
          const emitted = inbound.jitterBufferEmittedCount || 0;
          const buffer = emitted ? inbound.jitterBufferDelay / emitted : null;
          const decode = inbound.framesDecoded ? inbound.totalDecodeTime / inbound.framesDecoded : null;
          const rtt = pair && typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime : null;
          const parts = [rtt !== null ? rtt / 2 : null, buffer, decode].filter((v) => typeof v === "number");
          player.stats = {
            codec: codec ? codec.mimeType : null,
            width: inbound.frameWidth || null,
            height: inbound.frameHeight || null,
            fps: inbound.framesPerSecond || null,
            framesDecoded: inbound.framesDecoded || 0,
            packetsLost: inbound.packetsLost || 0,
            jitter: typeof inbound.jitter === "number" ? inbound.jitter : null,
            bitrate,
            latency: parts.length ? parts.reduce((a, b) => a + b, 0) : null,
          };
          const st = player.stats;
          const bits = [];
          if (st.codec) bits.push(st.codec.replace("video/", ""));
          if (st.width && st.height) bits.push(`${st.width}×${st.height}`);
          if (st.fps) bits.push(`${Math.round(st.fps)} fps`);
          bits.push(`${st.framesDecoded} frames`);
          facts.textContent = bits.join(" · ");
          showOverlay(st);
        }
      } else if (!pc && !player.fmp4) {
        facts.textContent = "";
        previous = null;
      }
    } catch (_) {
      /* the connection went away between the check and getStats */
    } finally {
      setTimeout(pollStats, STATS_MS);
    }
  }

  window.addEventListener("pagehide", () => {
    teardown();
    show("stopped", "Stopped");
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) connect(); // back from the back/forward cache
  });

  if (!streamId) {
    show("stopped", "No stream id in the address (expected /view/<id>).", true);
    return;
  }
  if (typeof RTCPeerConnection === "undefined" && player.path === "webrtc") {
    if (forced) {
      show("stopped", "This browser has no WebRTC (RTCPeerConnection): try ?mode=mse.", true);
      return;
    }
    player.path = "mse";
    player.fallback = "this browser has no WebRTC";
  }
  connect();
  pollStream();
  pollStats();
})();
