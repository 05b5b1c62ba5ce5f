// Live refresh: every few seconds, fetch this same page and swap in the fresh contents of
// each element marked data-live (server-rendered and escaped). Forms outside those
// elements are never touched, so typing is not interrupted.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="batchwork-refresh-ms"]');
  var interval = meta ? parseInt(meta.content, 10) : 2000;
  var busy = false;

  function enabled() {
    var box = document.getElementById("live-toggle");
    return !box || box.checked;
  }

  function refresh() {
    if (busy || document.hidden || !enabled()) return;
    var targets = document.querySelectorAll("[data-live]");
    if (!targets.length) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Batchwork-Live": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        targets.forEach(function (el) {
          var next = el.id ? fresh.getElementById(el.id) : null;
          if (next && next.innerHTML !== el.innerHTML) {
            el.replaceWith(document.importNode(next, true));
          }
        });
        var stamp = document.getElementById("live-stamp");
        var freshStamp = fresh.getElementById("live-stamp");
        if (stamp && freshStamp) stamp.textContent = freshStamp.textContent;
        document.documentElement.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the server may be restarting; try again next tick */ })
      .then(function () { busy = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("live-toggle");
    if (box) {
      box.checked = window.localStorage.getItem("batchwork-live") !== "off";
      box.addEventListener("change", function () {
        window.localStorage.setItem("batchwork-live", box.checked ? "on" : "off");
      });
    }
    window.setInterval(refresh, interval);
  });
})();
