/* Heartbeat Monitor console: enhancements only. Every action works without this script.
   - live refresh: regions marked data-live are re-read from the server every
     data-refresh seconds (set on <body>), unless focus is inside one, and images marked
     data-live-src fetched again;
   - copy buttons: copy the text of the element named by data-copy. */
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var regions = document.querySelectorAll("[data-live]");

  function refresh() {
    var active = document.activeElement;
    fetch(window.location.href, {credentials: "same-origin", headers: {"X-Live-Refresh": "1"}})
      .then(function (response) {
        if (response.redirected || !response.ok) { return null; }
        return response.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        regions.forEach(function (region) {
          if (region.contains(active) && active !== document.body) { return; }
          var replacement = fresh.getElementById(region.id);
          if (replacement && replacement.innerHTML !== region.innerHTML) {
            region.innerHTML = replacement.innerHTML;
          }
        });
        // Images of a live state (the status badge) are fetched again, past the browser's cache.
        document.querySelectorAll("img[data-live-src]").forEach(function (image) {
          image.src = image.getAttribute("data-live-src") + "?at=" + Date.now();
        });
        var stamp = fresh.getElementById("updated");
        var mine = document.getElementById("updated");
        if (stamp && mine) { mine.innerHTML = stamp.innerHTML; }
      })
      .catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { window.setTimeout(refresh, seconds * 1000); });
  }
  if (seconds > 0 && regions.length) { window.setTimeout(refresh, seconds * 1000); }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    var text = source.value !== undefined ? source.value : source.textContent;
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      if (source.select) { source.select(); }
      document.execCommand("copy");
      done();
    }
  });
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
  });
}());
