"""pipelines.site.gallery: a static site whose images and links all resolve."""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from pipelines.run.record import ClassRecord
from pipelines.site.gallery import build_gallery


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: Path) -> _Collector:
    collector = _Collector()
    collector.feed(page.read_text(encoding="utf-8"))
    return collector


def _local(page: Path, url: str) -> Path:
    assert "://" not in url and not url.startswith("/"), url
    return (page.parent / unquote(url.split("#")[0])).resolve()


def _pages(run_dir: Path) -> list[Path]:
    return [run_dir / "index.html"] + sorted(run_dir.glob("classes/*/index.html"))


def test_builds_index_and_one_page_per_class(fake_run, fake_spec):
    index = build_gallery(fake_run)
    assert index == fake_run / "index.html"
    for class_index, _, _ in fake_spec.classes:
        assert (fake_run / "classes" / f"{class_index:04d}" / "index.html").is_file()
    assert (fake_run / "assets" / "style.css").is_file()
    assert (fake_run / "assets" / "app.js").is_file()
    assert not list(fake_run.rglob("*.tmp"))


def test_every_img_src_exists(fake_run, fake_spec):
    build_gallery(fake_run)
    counts = {}
    for page in _pages(fake_run):
        srcs = [a["src"] for tag, a in _parse(page).tags if tag == "img"]
        counts[page] = len(srcs)
        for src in srcs:
            assert _local(page, src).is_file(), (page, src)
    assert counts[fake_run / "index.html"] == len(fake_spec.classes)
    per_class = fake_spec.k * (2 + 1 + fake_spec.n_crops) + 2 * fake_spec.n_inversions
    assert counts[fake_run / "classes" / "0003" / "index.html"] == per_class


def test_links_and_assets_resolve_and_are_local(fake_run):
    build_gallery(fake_run)
    for page in _pages(fake_run):
        for tag, attrs in _parse(page).tags:
            url = attrs.get("href") if tag in ("a", "link") else attrs.get("src")
            if tag in ("a", "link", "script", "img") and url:
                assert _local(page, url).is_file(), (page, url)


def test_links_use_class_index_not_name(fake_run, fake_spec):
    build_gallery(fake_run)
    index = _parse(fake_run / "index.html")
    hrefs = [a["href"] for tag, a in index.tags if tag == "a"]
    assert sorted(hrefs) == sorted(f"classes/{i:04d}/index.html" for i, _, _ in fake_spec.classes)
    page = _parse(fake_run / "classes" / "0003" / "index.html")
    hrefs = {a["href"] for tag, a in page.tags if tag == "a"}
    assert "../0007/index.html" in hrefs and "../0012/index.html" in hrefs
    assert "../0999/index.html" not in hrefs  # aligned class not in the run: no link


def test_html_name_is_escaped_everywhere(fake_run, fake_spec):
    build_gallery(fake_run)
    for page in _pages(fake_run):
        raw = page.read_text(encoding="utf-8")
        assert "<script>alert" not in raw
        assert "<b>odd</b>" not in raw
        scripts = [a for tag, a in _parse(page).tags if tag == "script"]
        code = [s for s in scripts if s.get("type") != "application/json"]  # data is no code
        assert all(s.get("src", "").endswith("assets/app.js") for s in code) and len(code) == 1
    evil_page = fake_run / "classes" / "0007" / "index.html"
    text = "".join(_parse(evil_page).text)
    assert f"{fake_spec.evil_name} (7)" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in evil_page.read_text()
    assert "<b>odd</b>.jpg" in text and "truncated <file>" in text


def test_index_has_search_and_counts(fake_run, fake_spec):
    build_gallery(fake_run)
    parsed = _parse(fake_run / "index.html")
    inputs = [a for tag, a in parsed.tags if tag == "input"]
    assert any(a.get("id") == "search" and a.get("type") == "search" for a in inputs)
    cards = [a for tag, a in parsed.tags if tag == "a" and a.get("class") == "card"]
    raw = (fake_run / "index.html").read_text()
    search = json.loads(re.search(r'<script type="application/json" id="search-index">(.*?)</script>', raw).group(1))
    assert search == [[i, name, wnid or ""] for i, name, wnid in fake_spec.classes]  # in card order
    assert [c["href"] for c in cards] == [f"classes/{i:04d}/index.html" for i, _, _ in fake_spec.classes]
    assert "<script>alert" not in raw  # the JSON of a name like a tag cannot close its script
    text = " ".join(" ".join(parsed.text).split())
    n, spec = len(fake_spec.classes), fake_spec
    assert f"classes {n}" in text and f"concepts {n * spec.k}" in text
    assert f"images {n * spec.n_images}" in text and f"skipped {n * spec.n_skipped}" in text
    assert "lamp" in text and "tabby cat" in text
    assert "onclick" not in (fake_run / "index.html").read_text()


def test_class_page_orders_concepts_and_shows_numbers(fake_run):
    build_gallery(fake_run)
    raw = (fake_run / "classes" / "0003" / "index.html").read_text()
    assert raw.index("52.5%") < raw.index("30.2%") < raw.index("17.2%")
    assert "Sobol 0.41" in raw and "of logit" in raw
    assert "toggle-alpha" in raw and "00_alpha.png" in raw
    assert "cosine <b>0.930</b>" in raw
    assert "bad_3.jpg" in raw and "cannot identify image file" in raw
    assert "lamp (3)" in raw


def test_broken_class_json_is_listed_not_fatal(fake_run):
    bad = fake_run / "classes" / "0042"
    bad.mkdir(parents=True)
    (bad / "class.json").write_text("{not json", encoding="utf-8")
    malformed = fake_run / "classes" / "0043"
    malformed.mkdir()
    (malformed / "class.json").write_text(json.dumps({"class_name": "m", "concepts": 5}))
    (fake_run / "classes" / "0050").mkdir()  # no class.json: ignored
    build_gallery(fake_run)
    raw = (fake_run / "index.html").read_text()
    assert "could not be read" in raw and "0042" in raw and "0043" in raw
    assert 'href="classes/0042/index.html"' not in raw
    assert not (bad / "index.html").exists() and not (malformed / "index.html").exists()
    assert "0050" not in raw


def test_missing_image_shows_placeholder_and_warns(fake_run, caplog):
    (fake_run / "classes" / "0003" / "concepts" / "01_crop_2.png").unlink()
    with caplog.at_level("WARNING", logger="pipelines.site.gallery"):
        build_gallery(fake_run)
    raw = (fake_run / "classes" / "0003" / "index.html").read_text()
    assert "missing image: concepts/01_crop_2.png" in raw
    assert 'src="concepts/01_crop_2.png"' not in raw
    assert any("01_crop_2.png" in r.getMessage() for r in caplog.records)


def test_paths_leaving_the_class_folder_are_not_linked(fake_run):
    meta = fake_run / "classes" / "0012" / "class.json"
    data = json.loads(meta.read_text())
    data["concepts"][0]["mosaic"] = "../0003/concepts/00_viz.png"
    data["concepts"][1]["mosaic"] = "/etc/hostname"
    meta.write_text(json.dumps(data))
    build_gallery(fake_run)
    raw = (fake_run / "classes" / "0012" / "index.html").read_text()
    assert 'src="../0003' not in raw and 'src="/etc' not in raw
    assert raw.count("missing image:") == 2


def test_rebuild_is_idempotent(fake_run):
    build_gallery(fake_run)
    first = {p: p.read_bytes() for p in _pages(fake_run)}
    build_gallery(fake_run)
    assert {p: p.read_bytes() for p in _pages(fake_run)} == first


def test_empty_run_and_missing_run_dir(tmp_path):
    index = build_gallery(tmp_path)
    assert "classes <b>0</b>" in index.read_text()
    with pytest.raises(FileNotFoundError, match="run_dir"):
        build_gallery(tmp_path / "nope")


def test_index_uses_small_thumbnails(fake_run, fake_spec):
    from PIL import Image

    build_gallery(fake_run)
    thumbs = sorted((fake_run / "assets" / "thumbs").glob("*.webp"))
    assert [t.stem for t in thumbs] == [f"{i:04d}" for i, _, _ in fake_spec.classes]
    for i, _, _ in fake_spec.classes:  # sources change: thumbnails are remade, small
        big = Image.new("RGB", (400, 400), (200, 30, 30))
        big.save(fake_run / "classes" / f"{i:04d}" / "concepts" / "00_viz.png")
    build_gallery(fake_run)
    assert {Image.open(t).size for t in thumbs} == {(240, 240)}


def test_index_placeholder_when_top_visualization_missing(fake_run):
    (fake_run / "classes" / "0012" / "concepts" / "00_viz.png").unlink()
    build_gallery(fake_run)
    raw = (fake_run / "index.html").read_text()
    assert "missing image: concepts/00_viz.png" in raw
    assert 'src="assets/thumbs/0012.webp"' not in raw and 'src="assets/thumbs/0003.webp"' in raw


def test_wrong_types_in_class_json_mark_class_broken(fake_run):
    meta = fake_run / "classes" / "0012" / "class.json"
    data = json.loads(meta.read_text())
    data["concepts"][0]["top_crops"] = "concepts/00_crop_0.png"
    meta.write_text(json.dumps(data))
    build_gallery(fake_run)
    raw = (fake_run / "index.html").read_text()
    assert "malformed class.json" in raw and 'href="classes/0012/index.html"' not in raw
    other = (fake_run / "classes" / "0003" / "index.html").read_text()
    assert "../0012/index.html" not in other  # no links to the broken page


def test_no_network_references(fake_run):
    build_gallery(fake_run)
    files = _pages(fake_run) + sorted((fake_run / "assets").glob("*.*"))
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


def test_unfinished_class_is_badged_and_concepts_shown_by_rank(fake_run):
    meta = fake_run / "classes" / "0003" / "class.json"
    data = json.loads(meta.read_text())
    data["status"] = "running"  # the fixture stores the concepts out of rank order on purpose
    meta.write_text(json.dumps(data))
    build_gallery(fake_run)
    raw = (fake_run / "classes" / "0003" / "index.html").read_text()
    assert raw.index("52.5%") < raw.index("30.2%") < raw.index("17.2%")
    assert '<span class="badge">running</span>' in raw
    assert '<span class="badge">running</span>' in (fake_run / "index.html").read_text()


def test_pages_read_the_typed_record_with_pictures_in_place_of_file_names(fake_run):
    """The pages see the ClassRecord itself (no dict copy): every field as loaded, file names as pictures."""
    from pipelines.site import gallery

    c = gallery._read_class(fake_run / "classes" / "0003")
    view = gallery._record(c, [])
    r = c.record
    assert (view.n_concepts, view.n_images, view.completeness) == (r.n_concepts, r.n_images, r.completeness)
    assert view.deletion is c.record.deletion and (view.index, view.name) == (3, "lamp")
    for shown, entry in zip(view.concepts, sorted(c.record.concepts, key=lambda e: e.rank)):
        assert shown.importance_pct == entry.importance_pct and shown.aligned_classes is entry.aligned_classes
        assert shown.visualization.path == entry.visualization and shown.visualization.src is not None
        assert [p.path for p in shown.top_crops] == entry.top_crops
    html = gallery._TEMPLATES.get_template("class.html").render(cls=view, known={3, 7})
    assert "lamp (3)" in html and "Sobol 0.41" in html
    assert copy.copy(view).n_concepts == r.n_concepts  # a bare instance (copy, pickle) is no recursion trap


def test_a_finished_class_of_record_schema_6_still_reads(fake_run):
    """Schema 7 only renamed `k` to `n_concepts`: pages of a run made before it still build."""
    path = fake_run / "classes" / "0003" / "class.json"
    data = json.loads(path.read_text())
    data["k"] = data.pop("n_concepts")
    data["schema"] = 6
    path.write_text(json.dumps(data))
    assert ClassRecord.load(path).n_concepts == data["k"]
    build_gallery(fake_run)
    assert "lamp (3)" in (path.parent / "index.html").read_text()


def test_a_record_of_an_older_schema_shows_but_is_not_reused_as_a_finished_class(fake_run):
    """Schema 8 added each concept's spread: a schema-7 page still builds, a rerun redoes the class."""
    from pipelines.run.cache import finished_record
    from pipelines.run.stamp import Stamp

    path = fake_run / "classes" / "0003" / "class.json"
    stamp = Stamp({"model": "fake-resnet"})
    record = dataclasses.replace(ClassRecord.load(path), stamp=stamp.to_dict())
    record.save(path)  # with its digest and stamp, as a run writes it
    assert finished_record(path.parent, stamp)[1] is None  # current schema: reused
    dataclasses.replace(record, schema=7).save(path)
    assert ClassRecord.load(path).schema == 7
    assert "older version (schema 7" in finished_record(path.parent, stamp)[1]
    build_gallery(fake_run)
    assert "lamp (3)" in (path.parent / "index.html").read_text()


def test_a_concept_in_every_crop_alike_is_named_on_its_page_and_only_there(fake_run):
    path = fake_run / "classes" / "0003" / "class.json"
    data = json.loads(path.read_text())
    for concept in data["concepts"]:  # rank 1 (the second) is a shared offset; the others are parts
        concept["spread"] = 0.05 if concept["rank"] == 1 else 0.8
    path.write_text(json.dumps(data))
    build_gallery(fake_run)
    raw = (path.parent / "index.html").read_text()
    cards = raw.split('<article class="concept')[1:]
    assert ['class="everywhere"' in card for card in cards] == [False, True, False]  # by rank
    note = " ".join(cards[1].split())
    assert "varies by only 5% of its mean over the crops" in note and "all the features of layer4" in note
    assert "<dt>In every crop, in every photo</dt>" in raw
    other = (fake_run / "classes" / "0007" / "index.html").read_text()  # no spread recorded: nothing said
    assert 'class="everywhere"' not in other and "<dt>In every crop, in every photo</dt>" not in other


def _deletion(auc_ranking: float, auc_random_order: float) -> dict:
    return {"ranking": [0.9, 0.5, 0.2, 0.1], "random_order": [0.9, 0.7, 0.5, 0.3],
            "random_regions": [0.9, 0.9, 0.8, 0.8], "auc_ranking": auc_ranking, "auc_random_order": auc_random_order,
            "auc_random_regions": 0.85, "share": 0.1, "seeds": 3, "n_images": 6, "fill": "blur"}


def test_index_shows_deletion_per_class_and_how_often_the_ranking_wins(fake_run):
    for index, aucs in ((3, (0.21, 0.45)), (12, (0.5, 0.4))):  # class 7 has no deletion curves
        meta = fake_run / "classes" / f"{index:04d}" / "class.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "deletion": _deletion(*aucs)}))
    build_gallery(fake_run)
    raw = (fake_run / "index.html").read_text()
    text = " ".join(" ".join(_parse(fake_run / "index.html").text).split())
    assert "the ranking beats random order in 1 of 2 classes" in text
    assert "1 class(es) have no deletion curves" in text
    dels = re.findall(r'<div class="del"[^>]*>(.*?)</div>', raw)
    assert dels == ["deletion <b>0.21</b> &lt; 0.45", "deletion &mdash;", "deletion <b>0.50</b> ≥ 0.40"]
    assert 'title="deletion AUC: ranking 0.210, random order 0.450, random regions 0.850"' in raw


def test_index_without_deletion_curves_shows_dashes_and_no_summary(fake_run, fake_spec):
    build_gallery(fake_run)
    raw = (fake_run / "index.html").read_text()
    assert raw.count('<div class="del">deletion &mdash;</div>') == len(fake_spec.classes)
    assert "beats random order" not in raw


def test_rebuild_writes_only_changed_pages(fake_run):
    build_gallery(fake_run)
    stamps = {p: p.stat().st_mtime_ns for p in _pages(fake_run) + sorted((fake_run / "assets").rglob("*.*"))}
    meta = fake_run / "classes" / "0012" / "class.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "n_images": 41}))
    build_gallery(fake_run)
    changed = sorted(p.relative_to(fake_run).as_posix() for p, t in stamps.items() if p.stat().st_mtime_ns != t)
    assert changed == ["classes/0012/index.html", "index.html"]
