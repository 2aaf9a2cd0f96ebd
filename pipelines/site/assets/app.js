/* concept-lens gallery: search, alpha toggle, and a self-check used by the
 * browser test (document.body.dataset.imagesOk = "loaded/total",
 * document.body.dataset.errors = JS errors seen). index.html?q=lamp opens
 * with the search filled in. No network, no libraries. */
(function () {
  "use strict";
  var errors = [];
  document.documentElement.classList.add("js");

  function record(message) {
    errors.push(String(message));
    if (document.body) { document.body.dataset.errors = errors.join(" | "); }
  }
  window.addEventListener("error", function (event) {
    if (event.target && event.target.tagName === "IMG") { return; }
    record(event.message || "error");
  }, true);

  /* The index's search: #search-index holds [index, name, wnid] per card,
   * in the order of the cards; a card is shown when every word typed is
   * part of its name, index (also as 0042) or wnid. Only cards whose state
   * changes are touched, so 1000 cards answer at once as you type. */
  function setupSearch() {
    var input = document.getElementById("search");
    var source = document.getElementById("search-index");
    if (!input || !source) { return; }
    var entries = JSON.parse(source.textContent);
    var cards = document.querySelectorAll(".cards > .card");
    if (cards.length !== entries.length) {
      record("search index: " + entries.length + " entries for " + cards.length + " cards");
      return;
    }
    var texts = entries.map(function (entry) {
      var index = String(entry[0]);
      return [entry[1], index, ("000" + index).slice(-Math.max(4, index.length)), entry[2]].join(" ").toLowerCase();
    });
    var counter = document.getElementById("search-count");
    function apply() {
      var words = input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      for (var i = 0; i < cards.length; i++) {
        var hit = true;
        for (var w = 0; w < words.length && hit; w++) { hit = texts[i].indexOf(words[w]) !== -1; }
        if (cards[i].hidden === hit) { cards[i].hidden = !hit; }
        if (hit) { shown++; }
      }
      if (counter) { counter.textContent = shown + " of " + cards.length + " shown"; }
    }
    input.addEventListener("input", apply);
    var fromUrl = new URLSearchParams(window.location.search).get("q");
    if (fromUrl) { input.value = fromUrl; }
    apply();
  }

  function setupToggles() {
    var buttons = document.querySelectorAll("button.toggle-alpha");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;
      buttons[i].addEventListener("click", function (event) {
        var figure = event.currentTarget.closest(".viz");
        var on = figure.classList.toggle("show-alpha");
        event.currentTarget.setAttribute("aria-pressed", on ? "true" : "false");
        event.currentTarget.textContent = on ? "Show plain" : "Show alpha";
      });
    }
  }

  function checkImages() {
    var images = document.images;
    var ok = 0;
    var pending = 0;
    var broken = [];
    for (var i = 0; i < images.length; i++) {
      var img = images[i];
      if (img.complete && img.naturalWidth > 0) { ok++; }
      else if (img.loading === "lazy" && !img.complete) { pending++; }
      else { broken.push(img.getAttribute("src")); }
    }
    /* lazy images below the fold have not loaded yet: not counted */
    document.body.dataset.imagesOk = ok + "/" + (images.length - pending);
    document.body.dataset.imagesPending = String(pending);
    document.body.dataset.imagesBroken = broken.join(" ");
    document.body.dataset.errors = errors.join(" | ");
    document.body.dataset.ready = "1";
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupSearch();
    setupToggles();
  });
  window.addEventListener("load", checkImages);
})();
