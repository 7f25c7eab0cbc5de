// The progress bar of a measure import: polls the import's state and reloads the page (which
// then shows the report) when it has ended. Without this script, the page's link reloads it.
(function () {
  var bar = document.getElementById("import-progress");
  if (!bar) return;
  var count = document.getElementById("import-count");
  var url = bar.getAttribute("data-state");
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s) {
          bar.max = Math.max(s.total, 1);
          bar.value = s.done;
          count.textContent = s.done + " ligne" + (s.done > 1 ? "s" : "") + " sur " + s.total;
          if (s.state !== "running") { window.location.reload(); return; }
        }
        window.setTimeout(tick, 500);
      })
      .catch(function () { window.setTimeout(tick, 2000); });
  }
  window.setTimeout(tick, 300);
})();
