// The console's only script (our own; nothing vendored). Every page works without it:
// it adds a "select all" box to the table and keeps the overview current.
(function () {
  "use strict";

  // The table: one box in the header selects or clears every row of this page.
  var head = document.querySelector("th[data-select-all]");
  if (head) {
    var all = document.createElement("input");
    all.type = "checkbox";
    all.id = "select-all";
    all.setAttribute("aria-label", "select every callback on this page");
    head.textContent = "";
    head.appendChild(all);
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=ids]").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  // The overview: fetched again every 15 s while the tab is visible, its figures swapped
  // in place (the same server-rendered HTML; no data format of its own).
  var live = document.querySelector("[data-live]");
  if (live && window.fetch && window.DOMParser) {
    var every = 15000;
    var refresh = function () {
      if (document.hidden) return;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live]");
          if (fresh) live.innerHTML = fresh.innerHTML;
          var stamp = document.getElementById("live-stamp");
          if (stamp) stamp.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
        })
        .catch(function () { /* signed out or offline: the page stays as it was */ });
    };
    window.setInterval(refresh, every);
  }
})();
