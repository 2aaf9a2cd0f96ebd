"""Concepts shared across classes: the nearest concepts of other classes, linked both ways on the pages."""

import numpy as np

from pipelines.site.gallery import build_gallery
from pipelines.site.shared import bank_directions, shared_concepts, top_pairs


def test_each_concept_links_to_the_closest_concept_of_another_class():
    base = np.eye(4, 6, dtype=np.float32)
    directions = {3: base[[0, 1]], 7: base[[2, 0]] + 0.05, 12: base[[3, 3]]}  # 3's concept 0 ~ 7's concept 1
    ranks = {3: [0, 1], 7: [1, 0], 12: [0, 1]}
    shared = shared_concepts(directions, ranks, {3: "a", 7: "b", 12: "c"}, min_cosine=0.9)
    assert [(s.class_index, s.rank) for s in shared[3][0]] == [(7, 0)]  # 7's concept id 1 has rank 0
    assert [(s.class_index, s.rank) for s in shared[7][0]] == [(3, 0)]
    assert 1 not in shared[3] and 12 not in shared  # nothing else is that close; a class never matches itself
    assert len(top_pairs(shared)) == 1


def test_pages_show_shared_concepts(fake_run, fake_spec):
    (index_a, _, _), (index_b, _, _) = fake_spec.classes[0], fake_spec.classes[2]
    w = np.eye(fake_spec.k, 8, dtype=np.float32)
    for index, rows in ((index_a, w), (index_b, w[::-1].copy())):
        bank = fake_run / "classes" / f"{index:04d}" / "bank"
        bank.mkdir(parents=True)
        np.savez(bank / "arrays.npz", W=rows)
    build_gallery(fake_run)
    page = (fake_run / "classes" / f"{index_a:04d}" / "index.html").read_text()
    assert "Shared with" in page and f'href="../{index_b:04d}/index.html#concept-' in page
    assert "Concepts shared across classes" in (fake_run / "index.html").read_text()


def test_a_class_without_a_readable_bank_is_said_not_skipped_silently(tmp_path, caplog):
    (tmp_path / "bank").mkdir()
    (tmp_path / "bank" / "arrays.npz").write_bytes(b"not a zip")
    with caplog.at_level("WARNING", logger="pipelines.site.shared"):
        assert bank_directions(tmp_path) is None
    assert str(tmp_path) in caplog.text and "no shared concepts" in caplog.text
