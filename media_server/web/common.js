// Helpers both pages use; loaded before index.js and view.js.
"use strict";

window.MediaServer = Object.freeze({
  // The gateway's error body ({"error": {"code", "message"}}) as one line of text.
  async errorText(response) {
    try {
      const body = await response.json();
      if (body && body.error) return `${body.error.code}: ${body.error.message}`;
    } catch (_) {
      /* not JSON */
    }
    return `HTTP ${response.status}`;
  },
});
