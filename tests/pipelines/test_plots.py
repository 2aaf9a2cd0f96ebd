"""Plots and notebook displays of a finished class, drawn on one tiny demo class: what they draw is the record's."""

import dataclasses
import re
from dataclasses import replace

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from concepts import ConceptBank  # noqa: E402
from maco import RenderResult, RenderSettings  # noqa: E402
from pipelines.run import plots  # noqa: E402
from pipelines.run.result import open_class  # noqa: E402
from pipelines.demo.run import DEMO_CONFIG, demo_jobs  # noqa: E402
from pipelines.models import demo_model  # noqa: E402
from pipelines.run.record import ClassRecord  # noqa: E402
from pipelines.run.classes import run_classes  # noqa: E402

VIZ = RenderSettings(steps=2, image_size=32, crops=1, seed=0)
TINY = replace(DEMO_CONFIG, concepts=replace(DEMO_CONFIG.concepts, n_concepts="auto"), visualization=VIZ,
               inversion=VIZ, inversions=1, top_crops=3, map_images=2, map_strip=2, deletion_seeds=1,
               fidelity_seeds=2, cluster_images=8)


@pytest.fixture(scope="module")
def demo_class(tmp_path_factory):
    """One finished demo class (k chosen by the sweep), with its page: ``(folder, record)``.

    On one thread: the sweep's many small factorizations ran 20x slower on two threads of a busy 2-core machine.
    """
    root = tmp_path_factory.mktemp("plots")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_classes(demo_jobs(root / "images", n_per_class=4)[:1], demo_model(), TINY, root / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    folder = root / "run" / "classes" / "0000"
    return folder, ClassRecord.load(folder / "class.json")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def ranked(record):
    return sorted(record.concepts, key=lambda c: c.rank)


def pixels(folder, rel):
    with Image.open(folder / rel) as image:
        return np.asarray(image.convert("RGB"))


def test_importance_bars_are_the_records_by_rank_and_signed(demo_class):
    _, record = demo_class
    ax = plots.plot_importances(record, ax=plt.figure().subplots())
    bars = ax.patches
    assert [bar.get_width() for bar in bars] == [c.importance_pct for c in ranked(record)]
    assert [bar.get_y() for bar in bars] == sorted(bar.get_y() for bar in bars) and ax.yaxis_inverted()  # rank 1 on top
    negative = replace(record, concepts=[replace(c, importance_pct=-12.5) if c.rank == 1 else c
                                         for c in record.concepts])
    bars = plots.plot_importances(negative, ax=plt.figure().subplots()).patches
    assert bars[1].get_width() == -12.5 and bars[0].get_width() > 0
    # each bar in its concept's colour (as the maps and the cluster graph), the sign told by side and hatching
    assert [bar.get_facecolor() for bar in bars] == [to_rgba(c.colour) for c in ranked(negative)]
    assert bars[1].get_hatch() and not bars[0].get_hatch()


def test_top_crops_and_concept_maps_show_the_records_pictures(demo_class):
    folder, record = demo_class
    for draw, field in ((plots.plot_top_crops, "top_crops"), (plots.plot_concept_maps, "maps")):
        fig = draw(record, folder)
        rows = np.array(fig.axes).reshape(len(record.concepts), -1)
        for row, concept in zip(rows, ranked(record)):
            shown = [ax.images[0].get_array() for ax in row if ax.images]
            assert len(shown) == len(getattr(concept, field)) > 0
            assert all(np.array_equal(a, pixels(folder, rel)) for a, rel in zip(shown, getattr(concept, field)))
    assert len(plots.plot_top_crops(record, folder, n=1).axes) == len(record.concepts)


def test_one_images_concepts_is_its_overlay_with_every_concept_in_the_legend(demo_class):
    folder, record = demo_class
    ax = plots.plot_image_concepts(record, folder, 1, ax=plt.figure().subplots())
    assert len(ax.images) == 1 and np.array_equal(ax.images[0].get_array(), pixels(folder, record.overlays[1]))
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [f"concept {c.rank + 1} ({c.importance_pct:.1f}%)" for c in ranked(record)]
    with pytest.raises(ValueError, match="map_images"):
        plots.plot_image_concepts(record, folder, len(record.overlays))


@pytest.mark.parametrize("check", plots.CURVES)
def test_curves_are_the_records_numbers(demo_class, check):
    _, record = demo_class
    curves = getattr(record.fidelity, check) if check.startswith("c_") else getattr(record, check)
    lines = plots.plot_curves(record, check, ax=plt.figure().subplots()).get_lines()
    fields = ["ranking", "random_order"] + (["random_regions"] if hasattr(curves, "random_regions") else [])
    assert [list(line.get_ydata()) for line in lines] == [getattr(curves, f) for f in fields]
    assert all(list(line.get_xdata()) == list(range(record.n_concepts + 1)) for line in lines)
    assert f"area {curves.auc_ranking:.3f}" in lines[0].get_label()


def test_curves_refuse_a_missing_check(demo_class):
    _, record = demo_class
    with pytest.raises(ValueError, match="no deletion curves"):
        plots.plot_curves(replace(record, deletion=None), "deletion")
    with pytest.raises(ValueError, match="must be one of"):
        plots.plot_curves(record, "sobol")


def test_cluster_graph_places_and_colours_the_records_images(demo_class):
    _, record = demo_class
    ax = plots.plot_clusters(record, ax=plt.figure().subplots())
    points = ax.collections[0]
    assert np.allclose(points.get_offsets(), [(p.x, p.y) for p in record.clusters])
    colours = {c.rank: matplotlib.colors.to_rgba(c.colour) for c in record.concepts}
    assert np.allclose(points.get_facecolors(), [colours[p.rank] for p in record.clusters])
    assert plots.plot_clusters(replace(record, clusters=[]), ax=plt.figure().subplots()).get_legend() is None


def test_k_sweep_draws_the_curve_the_threshold_and_the_chosen_k(demo_class):
    _, record = demo_class
    sweep = record.n_concepts_sweep
    assert sweep is not None and record.n_concepts == sweep.chosen
    lines = {line.get_label(): line for line in plots.plot_n_concepts(record, ax=plt.figure().subplots()).get_lines()}
    completeness = lines["completeness"]
    assert list(completeness.get_xdata()) == [k for k, c in zip(sweep.k, sweep.completeness) if c is not None]
    assert list(completeness.get_ydata()) == [c for c in sweep.completeness if c is not None]
    assert list(lines["reconstruction error (crops)"].get_ydata()) == sweep.reconstruction_error
    assert list(lines["reconstruction error (images)"].get_ydata()) == sweep.reconstruction_error_images
    assert list(lines[f"threshold {sweep.threshold:.2f}"].get_ydata()) == [sweep.threshold] * 2
    assert list(lines[f"chosen k = {sweep.chosen}"].get_xdata()) == [sweep.chosen] * 2
    with pytest.raises(ValueError, match="--n-concepts auto"):
        plots.plot_n_concepts(replace(record, n_concepts_sweep=None))


def test_the_class_page_and_the_plots_show_the_same_numbers(demo_class):
    folder, record = demo_class
    page = (folder / "index.html").read_text(encoding="utf-8")
    shown = re.findall(r'<span class="pct">(-?[\d.]+)%</span>', page)
    bars = plots.plot_importances(record, ax=plt.figure().subplots()).patches
    assert shown == [f"{bar.get_width():.1f}" for bar in bars] and len(shown) == record.n_concepts
    chips = re.findall(r'<h3><span class="chip" style="background: (#[0-9A-Fa-f]{6})">', page)  # the cards
    assert [to_rgba(chip) for chip in chips] == [bar.get_facecolor() for bar in bars]  # one colour per concept
    area = re.search(r"Area: ranking <b>([\d.]+)</b>", page).group(1)
    assert area in plots.plot_curves(record, "deletion", ax=plt.figure().subplots()).get_lines()[0].get_label()


def test_a_finished_class_displays_inline_in_a_notebook(demo_class):
    folder, record = demo_class
    result = open_class(folder)
    assert result.record == record and result.folder == folder
    # not the whole record
    assert repr(result) == f"ClassResult('lamp' (0), n_concepts={record.n_concepts}, folder={str(folder)!r})"
    page = result._repr_html_()
    sources = re.findall(r'<img src="([^"]+)"', page)
    expected = 1 + sum(1 + min(len(c.top_crops), 4) for c in record.concepts)  # the chart, visualizations, crops
    assert len(sources) == expected and all(src.startswith("data:image/") for src in sources)
    assert all(f"{c.importance_pct:.1f}%" in page for c in record.concepts)
    assert len(page) < 200_000 and not plt.get_fignums()  # small, and no figure left for the notebook to show
    lost = replace(result, record=replace(record, concepts=[replace(c, visualization="gone.webp")
                                                            for c in record.concepts]))
    assert lost._repr_html_().count("missing gone.webp") == record.n_concepts  # a missing picture is named, not fatal


def test_bank_and_render_result_display_inline(demo_class):
    folder, record = demo_class
    bank = ConceptBank.load(folder / "bank")
    page = bank._repr_html_()
    assert page.count("<tr><td>") == bank.n_concepts and f"{bank.importance_pct[bank.order[0]]:.1f}%" in page
    signed = dataclasses.replace(bank, importance_pct=np.array([150.0, -50.0] + [0.0] * (bank.n_concepts - 2)))
    assert "margin-left:80px;width:80px" in signed._repr_html_()  # a negative share centres the zero line
    assert "margin-left:53px;width:27px" in signed._repr_html_()

    renders = RenderResult.load(folder / "renders" / "concepts")
    assert renders._repr_html_().count("<img src=\"data:image/jpeg;base64,") == len(renders.names) == record.n_concepts
    assert renders._repr_png_() is None  # several targets: the HTML shows them
    one = dataclasses.replace(renders, images=renders.images[:1], names=renders.names[:1],
                              history=renders.history[:, :1])
    png = one._repr_png_()
    assert png.startswith(b"\x89PNG")


def test_a_concept_in_every_crop_alike_says_so_in_the_plot_the_display_and_the_page(demo_class):
    from pipelines.site import gallery

    folder, record = demo_class
    assert not any(c.everywhere for c in record.concepts)  # the demo CNN's concepts are parts
    offset = replace(record, concepts=[replace(c, spread=0.05 if c.rank == 0 else 0.8) for c in record.concepts])
    ax = plots.plot_importances(offset, ax=plt.figure().subplots())
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels[0] == "concept 1\n(in every crop)" and not any("every" in label for label in labels[1:])
    assert open_class(folder)._repr_html_().count("in every crop") == 0
    assert dataclasses.replace(open_class(folder), record=offset)._repr_html_().count("<i>in every crop</i>") == 1
    c = gallery._read_class(folder)
    page = gallery._TEMPLATES.get_template("class.html").render(
        cls=gallery._record(dataclasses.replace(c, record=offset), []), known=set())
    legend = re.findall(r'<li><span class="chip".*?</li>', page, flags=re.S)
    assert len(legend) == record.n_concepts and ["in every crop" in item for item in legend] == \
        [c.rank == 0 for c in ranked(offset)]
    assert page.count('class="everywhere"') == 1
