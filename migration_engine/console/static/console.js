// peppol-migrate console: live figures (polling), row filters, "tick all". No build step, no dependency.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-live-url");
  var every = parseFloat(body.getAttribute("data-refresh-s") || "10") * 1000;

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var key = el.getAttribute("data-live");
          if (Object.prototype.hasOwnProperty.call(data, key)) { el.textContent = String(data[key]); }
        });
      })
      .catch(function () { /* the next poll tries again */ });
  }
  if (url && every > 0) { window.setInterval(refresh, every); }

  document.querySelectorAll("input.filter[data-filter-for]").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-filter-for"));
    if (!table) { return; }
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      table.querySelectorAll("tbody tr").forEach(function (row) {
        row.hidden = needle !== "" && row.textContent.toLowerCase().indexOf(needle) < 0;
      });
    });
  });

  document.querySelectorAll("input.tick-all[data-for]").forEach(function (box) {
    box.addEventListener("change", function () {
      var table = document.getElementById(box.getAttribute("data-for"));
      table.querySelectorAll("tbody tr:not([hidden]) input[name=ids]").forEach(function (b) { b.checked = box.checked; });
    });
  });

  document.querySelectorAll("button.danger").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm("Cancel the ticked migrations? A cancelled migration cannot be resumed.")) { event.preventDefault(); }
    });
  });
})();
