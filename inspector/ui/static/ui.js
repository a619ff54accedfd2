/* Inspector review desk: keyboard review, heatmap controls, clickable rows. No dependencies. */
(function () {
  "use strict";

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" && target.type !== "radio" && target.type !== "checkbox" &&
      target.type !== "range" || tag === "TEXTAREA" || tag === "SELECT" ||
      (target && target.isContentEditable);
  }

  // Whole table rows open their link; real links and controls inside keep working.
  document.querySelectorAll("tr[data-href]").forEach(function (row) {
    row.addEventListener("click", function (e) {
      if (e.target.closest("a, button, input, select")) return;
      window.location.href = row.dataset.href;
    });
  });

  // Period selects apply as soon as they change.
  document.querySelectorAll("select.autosubmit").forEach(function (sel) {
    sel.addEventListener("change", function () { sel.form.submit(); });
  });

  // Queue: Enter starts reviewing from the top.
  var start = document.querySelector("[data-testid=start-review]");
  if (start) {
    document.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !typing(e.target) && !e.target.closest("a, button")) {
        window.location.href = start.href;
      }
    });
  }

  // Part page.
  var form = document.getElementById("review-form");
  if (!form) return;
  var toggle = document.getElementById("heat-toggle");
  var slider = document.getElementById("heat-opacity");
  var shown = document.getElementById("heat-opacity-value");
  var overlay = document.getElementById("heat-overlay");
  var newType = document.getElementById("new-type");
  var radios = Array.prototype.slice.call(form.querySelectorAll("input[name=defect_type]"));
  var submitted = false;

  var saved = window.localStorage && localStorage.getItem("inspector.heatmap");
  if (saved) {
    try {
      saved = JSON.parse(saved);
      toggle.checked = !!saved.on;
      slider.value = String(saved.opacity);
    } catch (err) { /* ignore a bad stored value */ }
  }

  function applyHeatmap() {
    shown.textContent = slider.value + "%";
    slider.disabled = !toggle.checked || toggle.disabled;
    if (overlay) overlay.style.opacity = toggle.checked ? String(slider.value / 100) : "0";
    if (window.localStorage) {
      localStorage.setItem("inspector.heatmap",
        JSON.stringify({ on: toggle.checked, opacity: Number(slider.value) }));
    }
  }
  toggle.addEventListener("change", applyHeatmap);
  slider.addEventListener("input", applyHeatmap);
  applyHeatmap();

  radios.forEach(function (r) {
    r.addEventListener("change", function () { if (r.checked) newType.value = ""; });
  });
  newType.addEventListener("input", function () {
    if (newType.value) radios.forEach(function (r) { r.checked = false; });
  });
  newType.addEventListener("keydown", function (e) {
    if (e.key === "Escape") newType.blur();
  });

  form.addEventListener("submit", function (e) {
    if (submitted) { e.preventDefault(); return; }
    submitted = true;
    form.querySelectorAll("button").forEach(function (b) { b.classList.add("is-busy"); });
  });

  function decide(id) {
    var button = document.getElementById(id);
    if (button && !submitted) form.requestSubmit(button);
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    var key = e.key.toLowerCase();
    if (key === "d") { e.preventDefault(); decide("btn-defect"); }
    else if (key === "g") { e.preventDefault(); decide("btn-good"); }
    else if (key === "s") {
      e.preventDefault();
      if (!submitted) window.location.href = document.getElementById("btn-skip").href;
    } else if (key === "h" && !toggle.disabled) {
      toggle.checked = !toggle.checked; applyHeatmap();
    } else if (key === "n") {
      e.preventDefault(); newType.focus();
    } else if (/^[1-9]$/.test(key)) {
      var r = radios[Number(key) - 1];
      if (r) { r.checked = !r.checked; newType.value = ""; }
    }
  });
})();
