// A WHEP player and nothing else: POST an SDP offer, apply the answer, DELETE to leave
// (the WHEP draft). It plays any WHEP endpoint, this gateway's or another origin's (that
// origin must allow this one with CORS). ?url= and ?stream= fill in the endpoint.
"use strict";

(function () {
  const ICE_GATHER_MS = 2000; // non-trickle: send the offer with what gathered by then
  const form = document.getElementById("whep");
  const urlInput = document.getElementById("url");
  const tokenInput = document.getElementById("token");
  const stopButton = document.getElementById("stop");
  const video = document.getElementById("video");
  const badge = document.getElementById("state");
  const message = document.getElementById("message");
  const errorText = window.MediaServer.errorText;

  const params = new URLSearchParams(location.search);
  const stream = params.get("stream") || "demo";
  urlInput.value =
    params.get("url") || `${location.origin}/api/v1/streams/${encodeURIComponent(stream)}/whep`;

  let pc = null;
  let session = null; // the session URL (Location) to DELETE

  function show(state, text) {
    badge.textContent = state;
    badge.dataset.state = state;
    badge.className = `badge ${state === "playing" ? "live" : state === "failed" ? "error" : "connecting"}`;
    message.textContent = text;
  }

  function authHeaders() {
    const token = tokenInput.value.trim();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  function gathered(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ICE_GATHER_MS);
      peer.addEventListener("icegatheringstatechange", () => {
        if (peer.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  async function stop(reason) {
    const leaving = session;
    session = null;
    if (pc) pc.close();
    pc = null;
    video.srcObject = null;
    stopButton.disabled = true;
    if (leaving) {
      try {
        await fetch(leaving, { method: "DELETE", headers: authHeaders() });
      } catch (_) {
        /* the endpoint is gone: nothing to end */
      }
    }
    if (reason) show("stopped", reason);
  }

  async function play(endpoint) {
    await stop();
    show("connecting", `Offering to ${endpoint}…`);
    const peer = new RTCPeerConnection();
    pc = peer;
    peer.addTransceiver("video", { direction: "recvonly" });
    peer.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    peer.ontrack = (event) => {
      media.addTrack(event.track);
      if (video.srcObject !== media) video.srcObject = media;
    };
    peer.onconnectionstatechange = () => {
      if (pc !== peer) return;
      if (peer.connectionState === "failed") show("failed", "The connection failed.");
      if (peer.connectionState === "disconnected") show("connecting", "Disconnected; waiting…");
    };
    await peer.setLocalDescription(await peer.createOffer());
    await gathered(peer);
    let response;
    try {
      response = await fetch(endpoint, {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/sdp" }, authHeaders()),
        body: peer.localDescription.sdp,
      });
    } catch (err) {
      show("failed", `The endpoint did not answer (${err.message || err}).`);
      return;
    }
    if (response.status !== 201) {
      show("failed", `Refused — ${await errorText(response)}`);
      return;
    }
    const where = response.headers.get("Location");
    session = where ? new URL(where, endpoint).href : null;
    const transport = response.headers.get("X-Media-Transport");
    await peer.setRemoteDescription({ type: "answer", sdp: await response.text() });
    stopButton.disabled = false;
    show("connecting", `Answered${transport ? ` (${transport})` : ""}; connecting…`);
  }

  video.addEventListener("playing", () => {
    if (pc) show("playing", `Playing ${urlInput.value}`);
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    play(urlInput.value.trim()).catch((err) => show("failed", String(err.message || err)));
  });
  stopButton.addEventListener("click", () => stop("Stopped."));
  window.addEventListener("pagehide", () => {
    stop();
  });

  if (typeof RTCPeerConnection === "undefined") {
    show("failed", "This browser has no WebRTC (RTCPeerConnection).");
  } else if (params.get("autoplay") !== "0") {
    form.requestSubmit();
  }
})();
