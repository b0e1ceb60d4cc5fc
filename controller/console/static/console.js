// Live updates for the rollout console: poll the page's fragment, swap it in when it changed.
// No framework and no build: fetch() and a timer. Open <details> and the focused element
// (by id) are kept across updates, so reading and keyboard navigation are not disturbed.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var status = document.getElementById("updated");
  if (!main || !main.dataset.fragment) { return; }
  var url = main.dataset.fragment;
  var every = parseInt(main.dataset.interval || "2000", 10);
  var last = main.innerHTML;

  function say(text) { if (status) { status.textContent = text; } }

  function openDetails() {
    var open = [];
    main.querySelectorAll("details[open] > summary").forEach(function (s) {
      open.push(s.textContent);
    });
    return open;
  }

  function swap(html) {
    var open = openDetails();
    var focused = document.activeElement && document.activeElement.id;
    var scrolls = [];
    main.querySelectorAll(".scroll").forEach(function (el) { scrolls.push(el.scrollLeft); });
    main.innerHTML = html;
    main.querySelectorAll("details > summary").forEach(function (s) {
      if (open.indexOf(s.textContent) >= 0) { s.parentElement.open = true; }
    });
    main.querySelectorAll(".scroll").forEach(function (el, i) {
      if (i < scrolls.length) { el.scrollLeft = scrolls[i]; }
    });
    if (focused) {
      var again = document.getElementById(focused);
      if (again) { again.focus(); }
    }
  }

  function tick() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          say("Signed out: open the console link with its token again.");
          return null;
        }
        if (!response.ok) { say("Update failed (" + response.status + "); retrying."); return null; }
        return response.text();
      })
      .then(function (html) {
        if (html === null || html === undefined) { return; }
        if (html !== last) { last = html; swap(html); }
        say("Updated " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("Controller unreachable; retrying."); })
      .finally(function () { window.setTimeout(tick, every); });
  }
  // On a narrow screen a chart scrolls sideways: start at its newest end.
  main.querySelectorAll(".chart-scroll").forEach(function (el) { el.scrollLeft = el.scrollWidth; });
  window.setTimeout(tick, every);
})();
