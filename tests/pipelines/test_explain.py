"""explain_class: the one class path, in memory or into a folder, with each stage's own typed result."""

import json
from dataclasses import replace

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from concepts import ClassFeatures, ConceptBank, ConceptFidelity  # noqa: E402
from maco import RenderResult, RenderSettings  # noqa: E402
from pipelines import ClassExplanation, explain_class, open_class  # noqa: E402
from pipelines.demo.run import DEMO_CONFIG, demo_jobs  # noqa: E402
from pipelines.models import demo_model  # noqa: E402
from pipelines.run import plots  # noqa: E402
from pipelines.run.classes import run_classes  # noqa: E402
from pipelines.run.record import ClassRecord  # noqa: E402
from pipelines.run.stages import ConceptPanels, Inversions, Layouts, MapsOnImages, RankingChecks  # noqa: E402

VIZ = RenderSettings(steps=2, image_size=32, crops=1, seed=0)
TINY = replace(DEMO_CONFIG, concepts=replace(DEMO_CONFIG.concepts, n_concepts=3), visualization=VIZ, inversion=VIZ,
               inversions=1, top_crops=3, map_images=2, map_strip=2, deletion_seeds=1, fidelity_seeds=2,
               cluster_images=6)
RUN_ONLY = {"timings", "peak_memory_mb", "digest"}  # what two runs of the same class may differ in


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    return demo_jobs(tmp_path_factory.mktemp("explain") / "images", n_per_class=4)[1]


@pytest.fixture(scope="module")
def in_memory(job):
    before = sorted(job.folder.parent.rglob("*"))
    explanation = explain_class(demo_model(), job.folder, job.class_index, config=TINY, progress=False)
    assert sorted(job.folder.parent.rglob("*")) == before  # nothing written, not even next to the images
    return explanation


def test_in_memory_explanation_holds_every_stage_typed_and_pictures_for_every_name(in_memory, job):
    ex = in_memory
    assert isinstance(ex, ClassExplanation) and ex.folder is None
    for value, kind in ((ex.record, ClassRecord), (ex.features, ClassFeatures), (ex.bank, ConceptBank),
                        (ex.renders, RenderResult), (ex.panels, ConceptPanels), (ex.inversions, Inversions),
                        (ex.maps, MapsOnImages), (ex.checks, RankingChecks), (ex.layouts, Layouts),
                        (ex.fidelity, ConceptFidelity)):
        assert isinstance(value, kind)
    r = ex.record
    assert (r.class_index, r.class_name, r.n_concepts) == (job.class_index, job.class_name, 3)
    assert r.files == {} and r.stamp == {}
    named = [name for c in r.concepts for name in (c.visualization, c.visualization_alpha, c.mosaic, *c.top_crops,
                                                   *c.maps)]
    named += [name for i in r.inversions for name in (i.reference, i.inversion)] + r.overlays + [r.cluster_sprite]
    assert sorted(named) == sorted(ex.pictures) and all(isinstance(p, Image.Image) for p in ex.pictures.values())
    assert len(r.overlays) == 2 and all(len(c.maps) == 2 for c in r.concepts)
    assert r.deletion is ex.checks.deletion and len(r.deletion.ranking) == r.n_concepts + 1
    # each stage keeps its own result: the maps reach the concepts in the record, not the panels stage's entries
    assert all(entry.maps == [] for entry in ex.panels.entries)
    # every timing is one stage's; the in-memory run writes no pictures
    assert set(r.timings) == {"load", "features", "concepts", "visualizations", "mosaics", "inversions", "maps",
                              "deletion and insertion", "layouts", "concept fidelity"}


def test_the_command_lines_class_run_is_explain_class_into_a_folder(in_memory, job, tmp_path):
    run_classes([job], demo_model(), TINY, tmp_path / "run", progress=False, gallery=False)
    by_run = tmp_path / "run" / "classes" / f"{job.class_index:04d}"
    folder = tmp_path / "mine"
    ex = explain_class(demo_model(), job.folder, job.class_index, config=TINY, folder=folder, progress=False)
    assert ex.folder == folder and (folder / "class.json").is_file()
    mine, theirs = (json.loads((f / "class.json").read_text()) for f in (folder, by_run))
    for record in (mine, theirs):
        for key in RUN_ONLY:
            record.pop(key)
    assert mine == theirs  # same stamp: a run over this folder would reuse it
    for name, size in ex.record.files.items():  # the same pictures, byte for byte
        assert (folder / name).read_bytes() == (by_run / name).read_bytes() and (folder / name).stat().st_size == size
    # the bank does not depend on where it is kept; the renders in a folder are the 8-bit ones read back
    assert np.array_equal(ex.bank.W, in_memory.bank.W) and np.array_equal(ex.bank.U, in_memory.bank.U)
    assert torch.allclose(ex.renders.images, in_memory.renders.images, atol=1 / 255 + 1e-6)
    assert open_class(folder).record == ex.record  # what a reader of the folder sees, digest included
    # a rerun into the same folder reuses every cached stage
    again = explain_class(demo_model(), job.folder, job.class_index, config=TINY, folder=folder, progress=False)
    assert again.record.concepts == ex.record.concepts


def test_plots_and_display_work_from_in_memory_pictures(in_memory):
    ex = in_memory
    fig = plots.plot_top_crops(ex.record, ex.pictures)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == sum(len(c.top_crops) for c in ex.record.concepts)
    first = ex.record.concepts[0]
    assert np.array_equal(shown[0].images[0].get_array(), np.asarray(ex.pictures[first.top_crops[0]].convert("RGB")))
    ax = plots.plot_image_concepts(ex.record, ex.pictures, 0, ax=plt.figure().gca())
    assert ax.images[0].get_array().shape[:2] == ex.pictures[ex.record.overlays[0]].size[::-1]
    page = ex._repr_html_()
    assert page.count("data:image/jpeg;base64,") == sum(1 + min(len(c.top_crops), 4) for c in ex.record.concepts)
    assert "missing" not in page and "in memory" in repr(ex)


def test_explain_class_refuses_a_class_that_is_not_an_index(job):
    with pytest.raises(ValueError, match="class_index"):
        explain_class(demo_model(), job.folder, "lamp", config=TINY)


class _PositiveSiLU(torch.nn.Module):
    """An EfficientNet's layout whose features end in SiLU but are all positive (bias +4): the layer can go
    negative, these data do not."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 8, 4, stride=4)
        torch.nn.init.constant_(conv.bias, 4.0)
        self.features = torch.nn.Sequential(conv, torch.nn.SiLU())
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.classifier = torch.nn.Sequential(torch.nn.Linear(8, 4))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_auto_factorization_is_the_layers_for_the_api_as_for_the_command_line(job, tmp_path):
    """`auto` follows the layer (it ends in SiLU: Semi-NMF) in explain_class and run_classes, as the CLI decides it,
    not this class's features (all positive here, where the library alone would pick NMF)."""
    from concepts import extract_concepts, load_images, split_model

    split = split_model(_PositiveSiLU(), mean=(0.5,) * 3, std=(0.5,) * 3, input_size=64, categories=list("abcd"))
    config = replace(TINY, concepts=replace(TINY.concepts, factorization="auto"), image_size=64, cluster_images=4)
    loaded = load_images(job.folder, image_size=64)
    assert extract_concepts(split, loaded, 1, n_concepts=3, progress=False).factorization == "nmf"
    ex = explain_class(split, job.folder, 1, config=config, progress=False)
    assert ex.record.factorization == ex.bank.factorization == "semi-nmf"
    run_classes([replace(job, class_index=1)], split, config, tmp_path / "run", progress=False, gallery=False)
    record = json.loads((tmp_path / "run" / "classes" / "0001" / "class.json").read_text())
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["factorization"] == run["config"]["concepts"]["factorization"] == "semi-nmf"
    with pytest.raises(ValueError, match="--factorization nmf"):
        explain_class(split, job.folder, 1, config=replace(config, concepts=replace(config.concepts,
                                                                                    factorization="nmf")))


def test_explain_class_refuses_a_folder_with_other_files_and_an_index_beyond_the_model(job, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"new or empty folder.*also holds notes\.txt"):
        explain_class(demo_model(), job.folder, 0, config=TINY, folder=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ValueError, match=r"an int in \[0, 5\]\); got 6"):
        explain_class(demo_model(), job.folder, 6, config=TINY)


def test_a_concept_in_every_crop_alike_is_left_out_of_the_photo_checks_and_the_page_says_so(job, tmp_path):
    """The demo ViT's offset concept has no region: deletion and insertion take the other concepts (C-Deletion, in
    the features, keeps it), and the page and the plot name it."""
    from pipelines.run.overlays import all_concepts_overlay
    from pipelines.site.gallery import build_gallery

    run = tmp_path / "run"
    ex = explain_class(demo_model("vit"), job.folder, job.class_index, config=TINY,
                       folder=run / "classes" / f"{job.class_index:04d}", progress=False)
    r = ex.record
    offset = [c.rank for c in r.concepts if c.everywhere]
    assert len(offset) == 1 and ex.bank.everywhere.sum() == 1
    for curves in (r.deletion, r.insertion):
        assert curves.left_out == offset and len(curves.ranking) == r.n_concepts  # k - 1 concepts, plus none taken
    assert len(r.fidelity.c_deletion.ranking) == r.n_concepts + 1
    # the overlays draw the located concepts only: a flat map would colour the photo and dim the parts
    order, shown = [int(c) for c in ex.bank.order], ex.maps.images[0]
    drawn = all_concepts_overlay(ex.images.images[shown], ex.maps.maps[ex.maps.rows[shown]], order,
                                 hidden={order[offset[0]]})
    assert np.array_equal(np.asarray(ex.pictures[r.overlays[0]]), np.asarray(drawn))
    build_gallery(run)
    page = " ".join((ex.folder / "index.html").read_text().split())
    assert "<dt>In every crop, in every photo</dt>" in page  # the page's reading help explains it
    assert page.count(f"Concept {offset[0] + 1} is left out: in every crop or photo alike, it has no region of its "
                      f"own, so these curves take the other {r.n_concepts - 1}.") == 2
    ax = plots.plot_curves(r, "deletion", ax=plt.figure().subplots())
    assert ax.get_xlabel() == f"concepts removed (left out, in every crop or photo alike: {offset[0] + 1})"
    plt.close("all")
