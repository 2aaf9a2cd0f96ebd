"""The class pipeline end to end in the mode a CUDA run takes, on the CPU: bf16 autocast, channels_last, folded BN.

The renders ask for it through their settings (``RenderSettings(amp=True, channels_last=True)``); the split's
batched forward passes (features of images and crops, inversion cosines) take it on CUDA by themselves, so here
:meth:`concepts.ModelSplit.map_batches` is made to request it explicitly, as CUDA would. A hook on the model's
first convolution then shows what every forward pass of the run really did.
"""

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from concepts import ConceptBank, ModelSplit
from maco import RenderResult, RenderSettings
from pipelines.run.config import INVERSION_CROP_SIZE
from pipelines.demo.run import DEMO_CONFIG, demo_jobs
from pipelines.models import demo_model
from pipelines.run.classes import run_classes

DEFAULT_VIZ = RenderSettings(steps=3, image_size=64, crops=2, seed=0)  # amp, channels_last: None (on CUDA only)
GPU_VIZ = replace(DEFAULT_VIZ, amp=True, channels_last=True)


def tiny_config(viz: RenderSettings):
    return replace(
        DEMO_CONFIG, visualization=viz, inversion=replace(viz, crop_size=INVERSION_CROP_SIZE), inversions=1, top_crops=2
    )


DEFAULT_CONFIG, GPU_CONFIG = tiny_config(DEFAULT_VIZ), tiny_config(GPU_VIZ)
# what the first convolution sees: (bf16 autocast, channels_last input, channels_last weights)
RENDER_STEP, BATCHED_FORWARD, FOLDING_PROBE = (True, True, True), (True, True, False), (False, False, False)


def request_cuda_like_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``map_batches`` call run in bf16 autocast and channels_last, as its defaults do on CUDA."""
    real = ModelSplit.map_batches

    def cuda_like(self, images, fn, **options):
        return real(self, images, fn, **{**options, "amp": True, "channels_last": True})

    monkeypatch.setattr(ModelSplit, "map_batches", cuda_like)


def record_forward_passes(model: nn.Module) -> list[tuple[bool, bool, bool]]:
    """What the first convolution of every forward pass sees (the hook travels into folded copies)."""
    events: list[tuple[bool, bool, bool]] = []

    def hook(module: nn.Module, inputs: tuple) -> None:
        (x,) = inputs
        events.append(
            (
                torch.is_autocast_enabled(x.device.type),
                x.is_contiguous(memory_format=torch.channels_last),
                module.weight.is_contiguous(memory_format=torch.channels_last),
            )
        )

    model.conv1.register_forward_pre_hook(hook)
    return events


def test_a_class_runs_end_to_end_in_bf16_and_channels_last_on_the_cpu(tmp_path, monkeypatch):
    job = demo_jobs(tmp_path / "images", n_per_class=5)[0]
    run_classes([job], demo_model(), DEFAULT_CONFIG, tmp_path / "fp32", progress=False, gallery=False)
    request_cuda_like_batches(monkeypatch)
    split = demo_model()
    events = record_forward_passes(split.model)
    summary = run_classes([job], split, GPU_CONFIG, tmp_path / "bf16", progress=False, gallery=False)
    assert summary.done == [0] and not summary.failed

    seen = Counter(events)
    assert set(seen) == {RENDER_STEP, BATCHED_FORWARD, FOLDING_PROBE}  # nothing else ran in float32
    assert seen[RENDER_STEP] == 2 * GPU_VIZ.steps  # concept visualizations + inversions, one chunk per step
    assert seen[BATCHED_FORWARD] >= 3  # image features, crop features, inversion cosines

    folder, reference = (tmp_path / run / "classes" / "0000" for run in ("bf16", "fp32"))
    record, expected = (json.loads((f / "class.json").read_text()) for f in (folder, reference))
    assert record["peak_memory_mb"] == {}  # the CPU counts no peak memory: missing, not zero
    stages = {"load", "features", "concepts", "visualizations", "mosaics", "inversions",
              "maps", "deletion and insertion", "layouts", "concept fidelity", "pictures"}
    assert set(record["timings"]) == stages
    assert all(Path(folder, name).stat().st_size > 0 for name in record["files"])
    for stage in ("concepts", "inversions"):
        renders = RenderResult.load(folder / "renders" / stage)
        assert (renders.config["amp"], renders.config["channels_last"]) == (True, True)
        assert torch.isfinite(renders.images).all()
        assert renders.alphas.sum() > 0 if stage == "concepts" else renders.alphas is None  # inversions keep none
    # the same class as the float32 run, to bf16's precision (measured: 0.2 points, 5e-5 and 0.014)
    assert [c["concept_id"] for c in record["concepts"]] == [c["concept_id"] for c in expected["concepts"]]
    for ours, theirs in zip(record["concepts"], expected["concepts"]):
        assert abs(ours["importance_pct"] - theirs["importance_pct"]) < 1.0
    errors = [ConceptBank.load(f / "bank").relative_reconstruction_error for f in (folder, reference)]
    assert abs(errors[0] - errors[1]) < 1e-3
    assert abs(record["inversions"][0]["cosine"] - expected["inversions"][0]["cosine"]) < 0.05


@pytest.mark.gpu
def test_a_class_on_cuda_records_every_stages_peak_memory(tmp_path):
    job = demo_jobs(tmp_path / "images", n_per_class=5)[0]
    summary = run_classes(
        [job], demo_model(), DEFAULT_CONFIG, tmp_path / "run", device="cuda", progress=False, gallery=False
    )
    assert summary.done == [0] and not summary.failed
    record = json.loads((tmp_path / "run" / "classes" / "0000" / "class.json").read_text())
    assert record["device"].startswith("cuda") and set(record["peak_memory_mb"]) == set(record["timings"])
    assert all(peak > 0 for peak in record["peak_memory_mb"].values())
    assert 0.5 < record["inversions"][0]["cosine"] <= 1
