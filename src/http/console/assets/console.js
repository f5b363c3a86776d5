// warden console: live regions. An element with `data-live="<url>"` is re-fetched every few
// seconds and its contents replaced by the fragment's, unless the keyboard focus is inside it
// (so a person's place is never lost). The fragments are rendered and escaped by the server;
// nothing here builds HTML from strings. No inline script: the CSP forbids it.
"use strict";

(function () {
  const PERIOD_MS = 3000;

  async function refresh(el) {
    if (el.contains(document.activeElement)) {
      return;
    }
    let resp;
    try {
      resp = await fetch(el.dataset.live, {
        credentials: "same-origin",
        headers: { "X-Console-Live": "1", Accept: "text/html" },
      });
    } catch (_) {
      return; // offline for a moment: try again next time
    }
    if (resp.redirected && new URL(resp.url).pathname === "/console/sign-in") {
      // The session ended: the sign-in page, with why (`?ended=`) when the server says.
      window.location.assign(resp.url);
      return;
    }
    if (!resp.ok) {
      return;
    }
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.getElementById(el.id);
    if (fresh && fresh.innerHTML !== el.innerHTML) {
      el.replaceChildren(...Array.from(fresh.childNodes, (n) => document.importNode(n, true)));
    }
  }

  function start() {
    for (const el of document.querySelectorAll("[data-live][id]")) {
      setInterval(() => refresh(el), PERIOD_MS);
    }
    const flash = document.getElementById("flash");
    if (flash && flash.classList.contains("error")) {
      flash.setAttribute("tabindex", "-1");
      flash.focus();
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
