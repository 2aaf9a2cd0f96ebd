"""The gallery in a real headless Chromium, opened from disk (file://).

The gallery's own ``app.js`` writes a self-check on ``<body>`` after the
window's load event: ``data-images-ok="loaded/total"`` (an image counts as
loaded when ``naturalWidth > 0``) and ``data-errors`` (JS errors). Chromium's
``--dump-dom`` prints the DOM after the page settled, and
``--enable-logging=stderr`` prints every console message as ``CONSOLE``.
Skipped when no Chromium is installed (``.ci/install-browser`` installs it).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.site.gallery import build_gallery

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                               "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH")


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless=new", "--disable-gpu", "--no-sandbox",
               "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0",
               *extra, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _open(page: Path, profile: Path, query: str = "") -> tuple[dict[str, str], str, str]:
    """Load ``page``; return the <body> data attributes, the DOM and console lines."""
    result = _chromium(page.as_uri() + query, profile, "--dump-dom")
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body, result.stdout[:500]
    data = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))
    console = "\n".join(line for line in result.stderr.splitlines()
                        if "CONSOLE" in line or "Uncaught" in line)
    return data, result.stdout, console


@pytest.fixture
def big_run(make_fake_run) -> Path:
    """Like ``fake_run`` but with 96 px images, so screenshots show something."""
    run_dir = make_fake_run(size=96)
    build_gallery(run_dir)
    return run_dir


def _assert_clean(data: dict[str, str], console: str) -> None:
    assert data.get("ready") == "1", data
    loaded, total = map(int, data["images-ok"].split("/"))
    assert total > 0 and loaded == total, data
    assert data.get("errors", "") == "", data
    assert console == "", console


@needs_chromium
@pytest.mark.parametrize("page", ["index.html", "classes/0003/index.html",
                                  "classes/0007/index.html"])
def test_page_loads_every_image_without_console_errors(big_run, tmp_path, page):
    data, dom, console = _open(big_run / page, tmp_path / "profile")
    _assert_clean(data, console)
    assert "alert(1)" not in console
    assert not re.search(r"<script>alert", dom)


@needs_chromium
def test_broken_image_is_detected(big_run, tmp_path):
    """The self-check is not vacuous: a deleted image is reported."""
    (big_run / "classes" / "0003" / "concepts" / "00_crop_0.png").unlink()
    data, _, _ = _open(big_run / "classes" / "0003" / "index.html", tmp_path / "profile")
    loaded, total = map(int, data["images-ok"].split("/"))
    assert loaded == total - 1
    assert "00_crop_0.png" in data["images-broken"]


@needs_chromium
def test_search_filters_cards(big_run, tmp_path, fake_spec):
    _, dom, console = _open(big_run / "index.html", tmp_path / "profile", "?q=tabby")
    cards = re.findall(r'<a class="card"[^>]*>', dom)
    assert len(cards) == len(fake_spec.classes)
    shown = [c for c in cards if " hidden" not in c]
    assert len(shown) == 1 and "0012" in shown[0]
    assert "1 of 3 shown" in dom
    assert console == ""


@needs_chromium
@pytest.mark.parametrize("page", ["index.html", "classes/0003/index.html"])
def test_screenshot_is_non_trivial(big_run, tmp_path, page):
    shot = tmp_path / "shot.png"
    _chromium((big_run / page).as_uri(), tmp_path / "profile",
              f"--screenshot={shot}", "--window-size=1200,900", "--hide-scrollbars")
    assert shot.is_file() and shot.stat().st_size > 10_000
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 10
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500


_TOGGLE_PROBE = """<script>
window.addEventListener("load", function () {
  var figure = document.querySelector(".viz");
  function shown(sel) { return getComputedStyle(figure.querySelector(sel)).display !== "none"; }
  var before = [shown(".plain"), shown(".alpha")].join(",");
  figure.querySelector("button.toggle-alpha").click();
  var after = [shown(".plain"), shown(".alpha")].join(",");
  document.body.dataset.toggle = before + "|" + after;
});
</script></body>"""


@needs_chromium
def test_alpha_toggle_switches_images(big_run, tmp_path):
    """A copy of a class page with a probe script clicks the first toggle."""
    page = big_run / "classes" / "0003" / "index.html"
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", _TOGGLE_PROBE))
    data, _, console = _open(probe, tmp_path / "profile")
    assert data["toggle"] == "true,false|false,true"
    assert console == ""


_QUERIES = ["s", "sp", "spr", "springer", "n02102040", "0217", "english springer", "zzz", ""]
_SEARCH_PROBE = """<script>
var QUERIES = %s;
window.addEventListener("load", function () {
  var input = document.getElementById("search");
  var cards = document.querySelectorAll(".cards > .card");
  var times = [], counts = [];
  QUERIES.forEach(function (query) {
    var start = performance.now();
    input.value = query;
    input.dispatchEvent(new Event("input"));
    void document.body.offsetHeight;  /* style and layout of the new result are part of the answer */
    times.push(performance.now() - start);
    var shown = 0;
    for (var i = 0; i < cards.length; i++) { if (getComputedStyle(cards[i]).display !== "none") { shown++; } }
    counts.push(shown);
  });
  document.body.dataset.searchMs = Math.max.apply(null, times).toFixed(1);
  document.body.dataset.searchCounts = counts.join(",");
  document.body.dataset.searchLabel = document.getElementById("search-count").textContent;
});
</script></body>""" % json.dumps(_QUERIES)


@needs_chromium
def test_search_over_1000_classes_answers_as_you_type(tmp_path):
    """1000 generated classes: every keystroke filters the cards (hidden ones really vanish) in well under 0.1 s."""
    from tests.pipelines.test_gallery_scale import write_synthetic_run

    run_dir = write_synthetic_run(tmp_path / "run", 1000, k=1, top_crops=1, inversions=0)
    build_gallery(run_dir)
    probe = run_dir / "probe.html"
    probe.write_text((run_dir / "index.html").read_text().replace("</body>", _SEARCH_PROBE))
    data, _, console = _open(probe, tmp_path / "profile")
    counts = [int(n) for n in data["search-counts"].split(",")]
    assert counts == [_expected_hits(query) for query in _QUERIES], data
    assert counts[4] == 1 and counts[6] == 1 and counts[7] == 0 and counts[8] == 1000
    assert data["search-label"] == "1000 of 1000 shown"
    assert float(data["search-ms"]) < 100, data
    assert data.get("errors", "") == "" and console == ""


def _expected_hits(query: str) -> int:
    """What app.js should show for ``query``: the classes whose name, index, 4-digit index and wnid hold every word."""
    from concepts import imagenet_classes

    table = imagenet_classes()
    texts = [f"{table.names[i]} {i} {i:04d} {table.wnids[i]}".lower() for i in range(1000)]
    return sum(all(word in text for word in query.lower().split()) for text in texts)


@needs_chromium
@pytest.mark.slow
def test_a_real_class_page_shows_its_maps_and_a_non_blank_deletion_plot(tmp_path):
    """A class run on the demo world, opened in Chromium: every map and picture loads, the plot has data."""
    from dataclasses import replace

    from maco import RenderSettings
    from pipelines.demo.run import DEMO_CONFIG, demo_jobs
    from pipelines.models import demo_model
    from pipelines.run.classes import run_classes

    tiny = RenderSettings(steps=2, image_size=64, crops=2, seed=0)
    config = replace(DEMO_CONFIG, visualization=tiny, inversion=tiny, inversions=1, top_crops=3)
    run_classes(demo_jobs(tmp_path / "images", n_per_class=8)[3:4], demo_model(), config, tmp_path / "run",
                progress=False)
    data, dom, console = _open(tmp_path / "run" / "classes" / "0003" / "index.html", tmp_path / "profile")
    _assert_clean(data, console)
    assert int(data["images-ok"].split("/")[1]) >= 6 + 5 * 3  # overlays and every concept's strip of maps
    lines = re.findall(r'<polyline[^>]*points="([^"]+)"', dom)
    assert len(lines) == 10  # deletion and insertion (3 curves each), C-Deletion and C-Insertion (2 each)
    heights = {round(float(y)) for y in re.findall(r",([\d.]+)", lines[0])}
    assert len(heights) > 1  # the ranking's curve moves: the plot is not blank
