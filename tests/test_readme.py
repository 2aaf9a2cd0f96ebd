"""README.md must stay true: its Python blocks run, its inline names exist, its set-up lines are what CI runs.

The Python blocks run for real, with three substitutions that keep them offline and quick: torchvision's
ResNet50 is a small random-weight ResNet with the same layer names and a 2048-d ``avgpool`` (Bottleneck
blocks, one per stage), ``"path/to/..."`` placeholders are folders of a few generated images, and the
visualization defaults (steps, canvas, crops, input side), including those of ``explain_class``'s default run
settings, are tiny. Everything else is the real code path.
The ```bash blocks are not run (they download weights and take long); only the set-up lines are checked.
"""

import ast
import importlib
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models.resnet import Bottleneck, ResNet

from maco import RenderSettings, methods
from pipelines.run import explain
from pipelines.run.config import RunConfig

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.M | re.S)
BASH_BLOCKS = re.findall(r"^```bash\n(.*?)^```", README, flags=re.M | re.S)
CI_SETUP_LINES = ('pip install -e ".[test]" && pytest',)  # .ci/run makes the fresh venv itself
TINY_RENDER = dict(steps=2, image_size=64, crops=2, input_size=32, progress=False)


def _python_api_section() -> str:
    match = re.search(r"^## Python API\n(.*?)(?=^## )", README, flags=re.M | re.S)
    assert match, "README.md lost its '## Python API' section"
    return match.group(1)


def _small_resnet(*args, **kwargs) -> ResNet:
    """Stands in for torchvision.models.resnet50(weights=...): same names, 2048-d avgpool, no download."""
    torch.manual_seed(0)
    return ResNet(Bottleneck, [1, 1, 1, 1])


def _no_download(*args, **kwargs):
    raise AssertionError("a README block tried to download weights; tests/test_readme.py must stand in for them")


@pytest.fixture
def offline_readme(monkeypatch, tmp_path):
    """Run README code in ``tmp_path`` with a small ResNet, generated images and a tiny render budget."""
    monkeypatch.setattr(torchvision.models, "resnet50", _small_resnet)
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", _no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    for method in (methods.maco, methods.fourier, methods.pixels):
        for name, value in TINY_RENDER.items():
            monkeypatch.setitem(method.__kwdefaults__, name, value)
    tiny = RenderSettings(steps=2, image_size=64, crops=2, seed=0)  # explain_class's default run, as small
    monkeypatch.setattr(explain, "RunConfig", lambda: RunConfig(visualization=tiny, inversion=tiny, inversions=1,
                                                                map_images=1, map_strip=1, deletion_seeds=1))
    rng = np.random.default_rng(0)
    for placeholder in set(re.findall(r"[\"'](path/to/[^\"']+)[\"']", README)):
        folder = tmp_path / placeholder
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(2):  # 32 crops: enough for the README's 10 concepts
            pixels = rng.integers(0, 256, size=(72 + 8 * i, 96, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"image_{i}.png")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import matplotlib.pyplot as plt

    plt.close("all")


def test_readme_has_python_blocks():
    assert PYTHON_BLOCKS, "no ```python block found in README.md"


@pytest.mark.slow
@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme_python_block_runs(offline_readme, code):
    exec(compile(code, "README.md (python block)", "exec"), {"__name__": "__readme__"})


def test_readme_inline_names_exist():
    """Inline ``name.attr`` references of the Python API section resolve where the README's imports put them.

    ``from maco import maco`` binds the *function* ``maco``: ``maco.fourier`` written after it is wrong even
    though the package ``maco`` has ``fourier``. Inline import statements (``from maco import ...``) must run.
    """
    section = _python_api_section()
    spans = [" ".join(span.split()) for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", section)]
    namespace: dict = {}
    for block in PYTHON_BLOCKS:
        for node in ast.parse(block).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)
    for span in spans:
        if span.startswith(("from ", "import ")):
            exec(span, namespace)
    checked = []
    for span in spans:
        match = re.match(r"([A-Za-z_]\w*)\.([A-Za-z_]\w*)", span)
        if not match:
            continue
        head, attr = match.groups()
        if head in namespace:
            owner = namespace[head]
        else:
            try:
                owner = importlib.import_module(head)
            except ImportError:
                continue  # an object the blocks create (e.g. bank.W), not a name to check here
        assert hasattr(owner, attr), f"README.md's Python API mentions `{span}`, but {head}.{attr} does not exist"
        checked.append(span)
    assert checked, "no `name.attr` reference was checked: the section or this test's pattern changed"


def test_readme_shows_the_setup_lines_ci_runs():
    bash_lines = {line.strip() for block in BASH_BLOCKS for line in block.splitlines()}
    ci_lines = {line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()}
    for line in CI_SETUP_LINES:
        assert line in bash_lines, f"README.md must show, verbatim in a ```bash block: {line}"
        assert line in ci_lines, f".ci/run must run, verbatim as a line: {line}"
