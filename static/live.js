// Live refresh without a full reload: every N seconds fetch the region's partial and swap it in
// when it changed. Keeps focus and scroll, skips hidden tabs; no framework.
(function () {
  "use strict";
  function start(region) {
    var url = region.getAttribute("data-live-url");
    var seconds = parseFloat(region.getAttribute("data-live-seconds")) || 10;
    var busy = false;
    function tick() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" }, redirect: "error" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          region.removeAttribute("data-live-stale");
          if (html === region.getAttribute("data-live-last")) return;
          var focusedId = document.activeElement && region.contains(document.activeElement) ? document.activeElement.id : "";
          var scroll = window.scrollY;
          region.innerHTML = html;
          region.setAttribute("data-live-last", html);
          region.setAttribute("data-live-updated", String(Date.now()));
          if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus({ preventScroll: true });
          window.scrollTo(0, scroll);
        })
        // Logged out, server down: keep what is shown, and say it is no longer live.
        .catch(function () { region.setAttribute("data-live-stale", String(Date.now())); })
        .then(function () { busy = false; });
    }
    window.setInterval(tick, seconds * 1000);
    document.addEventListener("visibilitychange", tick);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-url]").forEach(start);
  });
})();
