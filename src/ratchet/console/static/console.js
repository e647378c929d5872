// Ratchet console: three small behaviours, no dependencies. Pages work without it (forms post, links navigate).
// 1. <form data-confirm="…">: ask before submitting (the message names the consequence).
// 2. [data-key="x"]: pressing x (outside a text field) clicks the element — keyboard shortcuts.
// 3. [data-live="seconds"]: the element is refreshed from the same page every few seconds (live experiments).
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  function typing(target) {
    if (!target || !target.tagName) { return false; }
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var key = event.key;
    if (!key || key.length !== 1 && key !== "Enter" && key !== "Escape") { return; }
    var selector = '[data-key="' + (key === '"' ? '\\"' : key) + '"]';
    var target = document.querySelector(selector);
    if (target && !target.disabled) {
      event.preventDefault();
      target.click();
    }
  });

  function refresh(element) {
    var seconds = parseFloat(element.getAttribute("data-live")) || 10;
    window.setTimeout(function () {
      if (document.hidden) { refresh(element); return; }
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html) {
            var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(element.id);
            if (fresh) { element.innerHTML = fresh.innerHTML; }
          }
        })
        .catch(function () { /* the next round tries again */ })
        .then(function () { refresh(element); });
    }, seconds * 1000);
  }

  document.querySelectorAll("[data-live][id]").forEach(refresh);
}());
