"""The ``concept-lens`` command line: argument types and the parser, one subparser per job."""

from __future__ import annotations

import argparse
from pathlib import Path

from concepts import AUTO_CANDIDATES, AUTO_COMPLETENESS, FIT_ON
from concepts.extract import FACTORIZATION, IMPORTANCE_ON, IMPORTANCES
from maco import RenderSettings

from ..run.config import ConceptConfig, RunConfig
from ..demo.run import DEMO_ARCHS, DEMO_CONFIG, DEMO_IMAGES_PER_CLASS

__all__ = ["build_parser"]


def _int_at_least(low: int, what: str):
    """An argparse type: an integer >= ``low``, with a message saying what was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def _path(text: str) -> Path:
    """A path argument; an empty one is refused (``Path("")`` is the current folder, never what was meant)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return Path(text)


def _n_concepts(text: str) -> int | str:
    """``--n-concepts``: a positive integer, or ``auto`` (chosen by completeness)."""
    return "auto" if text.strip().lower() == "auto" else _int_at_least(1, "a positive integer or 'auto'")(text)


def _even(text: str) -> int:
    value = _positive(text)
    if value % 2:
        raise argparse.ArgumentTypeError(
            f"expected an even size (the Fourier parameterization needs it), got {value}; try {value + 1}"
        )
    return value


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="resnet50",
        metavar="NAME",
        help="a torchvision classification model (resnet50, efficientnet_b0, regnet_y_800mf, convnext_tiny, ...) "
        "or timm:NAME when timm is installed (default: %(default)s)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        metavar="NAME|FILE",
        help="the model's weights name (torchvision: IMAGENET1K_V2, DEFAULT, ...; timm: pretrained; downloaded once "
        "and cached) or a local state_dict file, whose head may have any number of classes (default: the model's "
        "default weights)",
    )
    for name, what in (("mean", "means"), ("std", "standard deviations")):
        parser.add_argument(
            f"--{name}",
            type=float,
            nargs=3,
            default=None,
            metavar=("R", "G", "B"),
            help=f"with a weights file: the input normalisation's channel {what} it was trained with "
            "(default: those of the model's default weights)",
        )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")


def _add_budget_arguments(parser: argparse.ArgumentParser, viz: RenderSettings) -> None:
    parser.add_argument("--steps", type=_positive, default=viz.steps, help="MaCo steps (default: %(default)s)")
    parser.add_argument(
        "--image-size", type=_even, default=viz.image_size, help="MaCo canvas side (default: %(default)s)"
    )
    parser.add_argument(
        "--crops", type=_positive, default=viz.crops, help="crops per step and target (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concept-lens",
        description="Concept-based explanations of vision models: "
        "CRAFT concepts, MaCo visualizations, a static gallery.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run every stage on the embedded demo world (offline, a few CPU minutes)")
    demo.add_argument("--out", type=_path, default=Path("outputs/demo"), help="run folder (default: %(default)s)")
    demo.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    demo_viz = DEMO_CONFIG.visualization
    demo.add_argument("--steps", type=_positive, default=demo_viz.steps, help="MaCo steps (default: %(default)s)")
    demo.add_argument(
        "--image-size", type=_even, default=demo_viz.image_size, help="MaCo canvas side (default: %(default)s)"
    )
    demo.add_argument(
        "--crops", type=_positive, default=demo_viz.crops, help="crops per step and target (default: %(default)s)"
    )
    demo.add_argument(
        "--images-per-class",
        type=_positive,
        default=DEMO_IMAGES_PER_CLASS,
        help="demo images generated per class (default: %(default)s)",
    )
    demo.add_argument(
        "--arch",
        choices=DEMO_ARCHS,
        default=DEMO_ARCHS[0],
        help="the demo network to explain: the small CNN or the tiny ViT (default: %(default)s)",
    )

    run = sub.add_parser("run", help="explain the classes of a classifier: concepts, visualizations, gallery")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--imagenet-root", type=_path, help="folder of <wnid>/ class folders (ImageNet layout, an ImageNet-1k model)"
    )
    source.add_argument(
        "--data-root",
        type=_path,
        help="folder of <class name>/ folders of images (ImageFolder layout), each named as a class of the model",
    )
    source.add_argument("--images", type=_path, help="one folder of images of a single class (with --class-index)")
    run.add_argument(
        "--classes",
        nargs="+",
        default=None,
        help="with --imagenet-root (required) or --data-root (default: all its folders): indices, ranges (0-9), "
        "names (WordNet ids on ImageNet), or all (every class folder under the root)",
    )
    run.add_argument("--class-index", default=None, help="with --images: the class index (or exact name) they show")
    run.add_argument(
        "--class-names",
        type=_path,
        default=None,
        metavar="FILE",
        help="with a weights file: its class names, one per line, in the order of its outputs (default: the model's "
        "default weights' names when the head has as many classes, else --data-root's folders in ImageFolder order)",
    )
    run.add_argument(
        "--layer",
        default=None,
        metavar="MODULE",
        help="where concepts live: a module whose output the head reads after pooling; for a ViT, its last block "
        "(encoder.layers.encoder_layer_11, blocks.11) "
        "(default: the model's last spatial layer: layer4, trunk_output, features, encoder, norm, ...)",
    )
    run.add_argument(
        "--shift-features",
        action="store_true",
        help="when the layer ends in an activation bounded below (SiLU, Hardswish, GELU, Mish) and the head is "
        "linear: add that bound to its features so they are non-negative for NMF (instead of Semi-NMF); the head's "
        "bias absorbs it (stated on every page)",
    )
    run.add_argument(
        "--out", type=_path, default=Path("outputs/run"), help="run folder; rerun to resume (default: %(default)s)"
    )
    run.add_argument(
        "--n-concepts",
        "--k",
        dest="n_concepts",
        type=_n_concepts,
        default=ConceptConfig.n_concepts,
        help=f"concepts per class, or 'auto': the smallest of {', '.join(map(str, AUTO_CANDIDATES))} whose "
        f"concepts carry {AUTO_COMPLETENESS:.0%}% of the class evidence (completeness; the curve is on the page) "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--patch-size", type=_positive, default=ConceptConfig.patch_size, help="crop side in px (default: %(default)s)"
    )
    run.add_argument("--max-images", type=_positive, default=None, help="cap on images per class (default: all)")
    run.add_argument(
        "--importance",
        choices=IMPORTANCES,
        default=ConceptConfig.importance,
        help="what ranks the concepts: their exact share of the class logit (a linear head), gradient x input through "
        "the head, or CRAFT's Sobol total index through the head; auto: exact for a linear head (the best by "
        "concept-space fidelity on imagenette-val; BENCHMARKS.md), gradient-input for another (default: %(default)s)",
    )
    run.add_argument(
        "--importance-on",
        choices=IMPORTANCE_ON,
        default=ConceptConfig.importance_on,
        help="measure the importance on the whole images or on the crops the concepts were found on "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--fit-on",
        choices=["auto", *FIT_ON],
        default=ConceptConfig.fit_on,
        help="what the NMF factorises: " + "; ".join(f"{name}: {label}" for name, label in FIT_ON.items())
        + "; auto: positions for NMF, crops+images for Semi-NMF (default: %(default)s, chosen on real photos: "
        "BENCHMARKS.md)",
    )
    run.add_argument(
        "--factorization",
        choices=FACTORIZATION,
        default=ConceptConfig.factorization,
        help="how the features become concepts: NMF (non-negative features), or Semi-NMF (features of any sign: "
        "ViTs, ConvNeXt, Hardswish or SiLU layers; a signed bank, non-negative coefficients); auto: Semi-NMF "
        "where the layer's features can be negative, NMF otherwise (default: %(default)s)",
    )
    run.add_argument(
        "--inversions",
        type=_non_negative,
        default=RunConfig.inversions,
        help="feature inversions per class (default: %(default)s)",
    )
    run.add_argument(
        "--workers",
        type=_non_negative,
        default=RunConfig.load_workers,
        help="image decoding processes (default: %(default)s)",
    )
    run.add_argument("--no-gallery", action="store_true", help="do not build the gallery at the end")
    run.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="do not keep each class's crop features in features/ (saves disk: about 10 MB per 120 images at "
        "1280 channels; a rerun with another --n-concepts then computes them again)",
    )
    _add_model_arguments(run)
    _add_budget_arguments(run, RenderSettings())

    gallery = sub.add_parser("gallery", help="(re)build the static HTML gallery of a run folder")
    gallery.add_argument("out", type=_path, help="the run folder (holds classes/)")

    spectrum = sub.add_parser("spectrum", help="compute a natural-image magnitude spectrum for MaCo")
    spectrum.add_argument("--images", type=_path, required=True, help="folder of natural images")
    spectrum.add_argument("-o", "--output", type=_path, required=True, help=".npy file to write")
    spectrum.add_argument("--size", type=_even, default=512, help="canvas side (default: %(default)s)")

    viz = sub.add_parser("visualize", help="visualize one neuron, channel or direction of a model with MaCo")
    viz.add_argument(
        "--layer", default="fc", help="module name (e.g. fc, layer4, avgpool) or child index (default: %(default)s)"
    )
    what = viz.add_mutually_exclusive_group(required=True)
    what.add_argument("--neuron", type=int, help="unit index (class index for fc)")
    what.add_argument("--channel", type=int, help="channel index")
    what.add_argument("--direction", type=_path, help=".npy file with one (C,) or (k, C) direction")
    viz.add_argument("-o", "--output", type=_path, required=True, help="PNG to write (several targets: NAME_i.png)")
    _add_model_arguments(viz)
    _add_budget_arguments(viz, RenderSettings())
    return parser
