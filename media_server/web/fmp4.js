// The player's paths other than WebRTC: the stream's fMP4 into a MediaSource, from the
// signaling WebSocket (MSE) or from the LL-HLS playlist (HLS, where the browser has no
// HLS of its own). window.MediaServerFmp4 = {mse, hls}: each returns {feed, close()}.
//
// Feed: one MediaSource on the <video>, appending in order, keeping near the live edge
// (a jump to it at the start and after a stall, the rate nudged between) and trimming
// what was played.
"use strict";

(function () {
  // How far behind the newest buffered picture to play: MSE's come one by one; HLS's a
  // part (200 ms) at a time, so it keeps a part and its fetch in hand.
  const GAP_MSE_S = 0.05;
  const GAP_HLS_S = 0.35;
  const JUMP_S = 2.0; // further behind than this (after a stall): jump
  const KEEP_S = 20; // seconds of played media kept in the buffer
  const MAX_QUEUED = 300; // appends waiting for the SourceBuffer (each a fragment or part)

  class Feed {
    constructor(video, onError, gapS) {
      this.video = video;
      this.onError = onError;
      this.gap = gapS;
      this.started = false; // sought to the live edge once there was something to play
      this.source = new MediaSource();
      this.buffer = null;
      this.mime = null;
      this.queue = [];
      this.closed = false;
      this.url = URL.createObjectURL(this.source);
      this.opened = new Promise((resolve) => {
        this.source.addEventListener("sourceopen", resolve, { once: true });
      });
      video.srcObject = null; // a WebRTC attempt's stream would hide the source
      video.src = this.url;
      this.timer = setInterval(() => this.keepLive(), 250);
    }

    async setCodecs(codecs) {
      await this.opened;
      if (this.closed) return;
      const mime = `video/mp4; codecs="${codecs}"`;
      if (!MediaSource.isTypeSupported(mime)) throw new Error(`this browser cannot play ${codecs}`);
      if (this.buffer === null) {
        this.buffer = this.source.addSourceBuffer(mime);
        this.buffer.mode = "segments";
        this.buffer.addEventListener("updateend", () => {
          if (!this.started && this.buffer.buffered.length) this.keepLive(); // first picture now
          this.pump();
        });
        this.buffer.addEventListener("error", () => this.onError("the browser refused the stream's media"));
      } else if (mime !== this.mime && this.buffer.changeType) {
        this.queue.push({ changeType: mime });
      }
      this.mime = mime;
      this.pump();
    }

    append(data) {
      if (this.closed) return;
      if (this.queue.length >= MAX_QUEUED) {
        this.onError("the browser cannot keep up with the stream");
        return;
      }
      this.queue.push(data);
      this.pump();
    }

    pump() {
      const buffer = this.buffer;
      if (this.closed || buffer === null || buffer.updating || !this.queue.length) return;
      try {
        const played = this.video.currentTime;
        if (buffer.buffered.length && played - buffer.buffered.start(0) > KEEP_S * 1.5) {
          buffer.remove(0, played - KEEP_S); // its updateend pumps again
          return;
        }
        const next = this.queue.shift();
        if (next.changeType) {
          buffer.changeType(next.changeType);
          this.pump();
          return;
        }
        buffer.appendBuffer(next);
      } catch (err) {
        this.onError(`could not append media: ${err.message || err}`);
      }
    }

    // Newest buffered time minus what is shown: the buffer's share of the latency.
    behind() {
      const ranges = this.buffer ? this.buffer.buffered : null;
      if (!ranges || !ranges.length) return null;
      return ranges.end(ranges.length - 1) - this.video.currentTime;
    }

    // Play `gap` behind the newest picture: jump there at the start and after a stall,
    // and nudge the rate (10% faster, 5% slower) to stay near it.
    keepLive() {
      const ranges = this.buffer ? this.buffer.buffered : null;
      if (this.closed || !ranges || !ranges.length) return;
      const video = this.video;
      const end = ranges.end(ranges.length - 1);
      const start = ranges.start(ranges.length - 1);
      const behind = end - video.currentTime;
      if (!this.started || video.currentTime < start || behind > JUMP_S) {
        this.started = true;
        video.currentTime = Math.max(start, end - this.gap);
      }
      let rate = 1.0;
      if (behind > this.gap * 1.5 + 0.05) rate = 1.1;
      else if (behind < this.gap * 0.5) rate = 0.95;
      video.playbackRate = rate;
      if (video.paused) video.play().catch(() => {});
    }

    close() {
      if (this.closed) return;
      this.closed = true;
      clearInterval(this.timer);
      this.queue = [];
      try {
        if (this.source.readyState === "open") this.source.endOfStream();
      } catch (_) {
        /* already ended */
      }
      URL.revokeObjectURL(this.url);
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  // MSE over the signaling socket: {"type": "mse"}, then a codecs message, the init
  // segment and fragments. Returns {close()}; calls onError(text) once on any failure.
  function mse(wsUrl, video, handlers) {
    const feed = new Feed(video, fail, GAP_MSE_S);
    const ws = new WebSocket(wsUrl);
    ws.binaryType = "arraybuffer";
    let failed = false;
    function fail(text) {
      if (failed) return;
      failed = true;
      handlers.onError(text);
    }
    ws.onopen = () => {
      const opus = plays('audio/mp4; codecs="opus"');
      ws.send(JSON.stringify({ type: "mse", opus, hevc: plays(HEVC) }));
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") {
        feed.append(event.data);
        return;
      }
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (msg.type === "mse") {
        handlers.onCodecs(msg.codecs);
        feed.setCodecs(msg.codecs).catch((err) => fail(err.message || String(err)));
      } else if (msg.type === "error") {
        fail(`${msg.code || "error"}: ${msg.message || "unknown error"}`);
      }
    };
    ws.onclose = (event) => fail(`lost the connection to the gateway (close code ${event.code})`);
    return {
      feed,
      close() {
        failed = true;
        ws.onopen = ws.onmessage = ws.onclose = null;
        try {
          ws.close(1000, "viewer leaving");
        } catch (_) {
          /* already closed */
        }
        feed.close();
      },
    };
  }

  // -- LL-HLS through MSE: the multivariant playlist, then the media playlist's parts
  // from the newest independent one, each next one waited for with a blocking reload.
  function parseMedia(text, base) {
    const out = { map: null, parts: [], next: null };
    let msn = 0;
    let part = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith("#EXT-X-MEDIA-SEQUENCE:")) msn = parseInt(line.slice(22), 10);
      else if (line.startsWith("#EXT-X-MAP:")) out.map = new URL(/URI="([^"]+)"/.exec(line)[1], base).href;
      else if (line.startsWith("#EXT-X-PART:")) {
        const uri = new URL(/URI="([^"]+)"/.exec(line)[1], base).href;
        out.parts.push({ msn, part, uri, independent: line.includes("INDEPENDENT=YES"), map: out.map });
        part += 1;
      } else if (line && !line.startsWith("#")) {
        msn += 1;
        part = 0;
      }
    }
    out.next = { msn, part };
    return out;
  }

  async function text(url, signal) {
    const response = await fetch(url, { signal, cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status} for ${new URL(url).pathname}`);
    return response.text();
  }

  async function bytes(url, signal) {
    const response = await fetch(url, { signal });
    if (!response.ok) throw new Error(`HTTP ${response.status} for ${new URL(url).pathname}`);
    return response.arrayBuffer();
  }

  // Apple's browsers play LL-HLS themselves (and an iPhone may have no MediaSource);
  // others that claim HLS (Chromium's own) do not know fMP4 and parts: MSE for them.
  function nativeHls(video) {
    if (!video.canPlayType("application/vnd.apple.mpegurl")) return false;
    return typeof MediaSource === "undefined" || /Apple/.test(navigator.vendor || "");
  }

  // An H.265 stream comes as it is to a MediaSource that plays it, else as its H.264
  // transcode (Main profile, level 3.1: what a camera's H.265 needs at the least).
  const HEVC = 'video/mp4; codecs="hvc1.1.6.L93.B0"';
  function plays(type) {
    return typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(type);
  }

  function hls(indexUrl, video, handlers) {
    const abort = new AbortController();
    const signal = abort.signal;
    if (nativeHls(video)) {
      // The browser's own HLS (Safari, iOS): it follows parts and blocking reloads itself.
      video.srcObject = null;
      video.src = indexUrl;
      video.onerror = () => handlers.onError(`the browser's HLS failed: ${video.error && video.error.message}`);
      video.play().catch(() => {});
      handlers.onCodecs("native HLS");
      return {
        feed: null,
        close() {
          video.onerror = null;
          video.removeAttribute("src");
          video.load();
        },
      };
    }
    const feed = new Feed(video, fail, GAP_HLS_S);
    let failed = false;
    function fail(text) {
      if (failed) return;
      failed = true;
      handlers.onError(text);
    }
    if (!plays(HEVC)) {
      const url = new URL(indexUrl);
      url.searchParams.set("video", "h264");
      indexUrl = url.href;
    }
    (async () => {
      const index = await text(indexUrl, signal);
      // The first variant: the stream as it is (an H.265 stream's transcode comes second,
      // and this player asked for it alone above where it plays no hvc1).
      const codecs = /CODECS="([^"]+)"/.exec(index);
      const lines = index.trim().split("\n");
      const mediaUri = lines[lines.findIndex((line) => line.startsWith("#EXT-X-STREAM-INF:")) + 1];
      const mediaUrl = new URL(mediaUri, indexUrl).href;
      if (codecs) {
        handlers.onCodecs(codecs[1]);
        await feed.setCodecs(codecs[1]);
      }
      let playlist = parseMedia(await text(mediaUrl, signal), mediaUrl);
      const starts = playlist.parts.filter((p) => p.independent);
      let last = null;
      let map = null;
      let queue = starts.length ? playlist.parts.slice(playlist.parts.indexOf(starts[starts.length - 1])) : [];
      for (;;) {
        for (const p of queue) {
          if (!last && !p.independent) continue; // a picture starts at a keyframe
          if (p.map !== map) {
            map = p.map;
            feed.append(await bytes(map, signal));
          }
          feed.append(await bytes(p.uri, signal));
          last = p;
        }
        const join = mediaUrl.includes("?") ? "&" : "?";
        const wait = `${join}_HLS_msn=${playlist.next.msn}&_HLS_part=${playlist.next.part}`;
        playlist = parseMedia(await text(mediaUrl + wait, signal), mediaUrl);
        queue = playlist.parts.filter((p) => !last || p.msn > last.msn || (p.msn === last.msn && p.part > last.part));
      }
    })().catch((err) => {
      if (!signal.aborted) fail(err.message || String(err));
    });
    return {
      feed,
      close() {
        failed = true;
        abort.abort();
        feed.close();
      },
    };
  }

  window.MediaServerFmp4 = Object.freeze({ mse, hls });
})();
