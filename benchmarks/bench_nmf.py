"""Benchmark: concepts.NMF (torch HALS / MU) versus scikit-learn's NMF, on planted and on real (non-planted) data.

Every solver, scikit-learn's included, is warmed up on a slice of the data first (library loading, kernels,
allocator) and then timed on the same matrix, given in the same dtype (``--dtype``, default float32), with the
same rank and seed. scikit-learn and ``concepts.NMF`` both compute in that dtype on the CPU (``concepts.NMF``
in float32 on a GPU). Each fit is timed ``--repeat`` times and the fastest counts (a busy machine only slows a
run). The relative reconstruction error ``||A - UW||_F / ||A||_F`` sits beside the time, so speed is compared at
equal error: ``ok`` means within 0.5% of scikit-learn's. Matrices (``--matrices``, all by default):

- ``planted``: a low-rank non-negative product plus noise (``--n`` x ``--c``, rank ``--k``): NMF's easy case;
- ``demo``: real crop features, not planted: the demo model's pooled ``layer4`` features of the CRAFT crop grid
  (patch 64 px, stride 51) of ``--demo-images`` demo-world images per class, all six classes;
- ``npy``: activations from ``.npy`` files (``--npy``, one matrix each, shape (n, C), >= 0), e.g. real ImageNet
  crop features (``imagenette_features.py``'s ``crop_features``).

Examples
--------
    python benchmarks/bench_nmf.py --n 20000 --c 2048 --k 10 --device cuda --out benchmarks/results/gpu
    python benchmarks/bench_nmf.py --n 5000 --device cpu --threads 1
    python benchmarks/bench_nmf.py --matrices npy --npy /tmp/inv/n0*.npy --threads 2 --solvers hals

Prints a Markdown table: ``ok`` says whether the solver's error is within 0.5% of scikit-learn's, the last
column is scikit-learn's time divided by the solver's (higher is faster).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from _report import synchronize, write_report
from sklearn.decomposition import NMF as SklearnNMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from concepts import NMF, extract_crops, extract_features

_WARM_UP_ROWS = 256


def planted_matrix(n: int, c: int, k: int, noise: float, seed: int) -> np.ndarray:
    """``A = U W + noise``, sparse-ish non-negative factors, float32, shape (n, c)."""
    rng = np.random.default_rng(seed)
    U = rng.random((n, k), dtype=np.float32) ** 3
    W = rng.random((k, c), dtype=np.float32) ** 3
    A = U @ W
    A += noise * float(A.mean()) * np.abs(rng.standard_normal((n, c), dtype=np.float32))
    return A


def demo_crop_features(images_per_class: int) -> np.ndarray:
    """Pooled features ``(n_crops, 128)`` of the demo model on the crop grid of demo-world images (every class)."""
    from pipelines.demo import DEMO_INPUT_SIZE, DemoWorld
    from pipelines.demo.run import DEMO_IMAGES_SEED
    from pipelines.models import demo_model

    images, _, _ = DemoWorld(image_size=DEMO_INPUT_SIZE).dataset(images_per_class, seed=DEMO_IMAGES_SEED)
    crops = extract_crops(images, patch_size=DEMO_INPUT_SIZE // 2, out_size=DEMO_INPUT_SIZE)
    return extract_features(demo_model(), crops, batch_size=256, device="cpu").numpy()


def _fit_quietly(estimator: NMF | SklearnNMF, data: np.ndarray | torch.Tensor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(data)


def time_ours(A: np.ndarray, solver: str, device: torch.device, args: argparse.Namespace) -> tuple[float, float, int]:
    """Seconds (data already on the device), relative error, iterations."""
    data = torch.from_numpy(A).to(device)
    tol = args.tol if args.our_tol is None else args.our_tol
    nmf = NMF(args.k, solver=solver, max_iter=args.max_iter, tol=tol, random_state=args.seed, device=device)
    _fit_quietly(nmf, data[:_WARM_UP_ROWS])
    times = []
    for _ in range(args.repeat):
        synchronize(device)
        start = time.perf_counter()
        _fit_quietly(nmf, data)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), float(nmf.relative_reconstruction_err_), int(nmf.n_iter_)


def time_sklearn(A: np.ndarray, args: argparse.Namespace) -> tuple[float, float, int]:
    """scikit-learn's NMF (coordinate descent, nndsvda init) in A's own dtype."""

    def estimator() -> SklearnNMF:
        return SklearnNMF(args.k, init="nndsvda", solver="cd", max_iter=args.max_iter, tol=args.tol,
                          random_state=args.seed)

    _fit_quietly(estimator(), A[:_WARM_UP_ROWS])
    times = []
    for _ in range(args.repeat):
        est = estimator()
        start = time.perf_counter()
        _fit_quietly(est, A)
        times.append(time.perf_counter() - start)
    return min(times), float(est.reconstruction_err_ / np.linalg.norm(A)), int(est.n_iter_)


def matrices(args: argparse.Namespace) -> dict[str, tuple[np.ndarray, str]]:
    """The matrices to factorise, by name, each with a description, in ``--dtype``."""
    found: dict[str, tuple[np.ndarray, str]] = {}
    for name in args.matrices:
        if name == "planted":
            found[name] = planted_matrix(args.n, args.c, args.k, args.noise, args.seed), \
                f"planted rank {args.k} + noise {args.noise}"
        elif name == "demo":
            found[name] = demo_crop_features(args.demo_images), \
                f"demo crop features ({args.demo_images} images per class, 6 classes)"
        elif not args.npy:
            raise SystemExit("bench_nmf: --matrices npy needs --npy FILE [FILE ...].")
        else:
            for path in args.npy:
                found[path.stem] = np.load(path, allow_pickle=False), str(path)
    return {name: (A.astype(args.dtype), text) for name, (A, text) in found.items()}


def _cell(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else format(value, spec) + unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="rows (crops) of the planted matrix")
    parser.add_argument("--c", type=int, default=2048, help="columns (channels) of the planted matrix")
    parser.add_argument("--k", type=int, default=10, help="components, every matrix")
    parser.add_argument("--noise", type=float, default=0.5, help="planted noise scale relative to mean(UW)")
    parser.add_argument("--matrices", nargs="+", default=["planted", "demo"], choices=["planted", "demo", "npy"])
    parser.add_argument("--demo-images", type=int, default=200, help="demo-world images per class (4 crops each)")
    parser.add_argument("--npy", type=Path, nargs="+", default=None,
                        help="real activations (n, C) for --matrices npy, one matrix per file")
    parser.add_argument("--repeat", type=int, default=3, help="timed fits per solver; the fastest counts")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="of every solver's data")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--solvers", nargs="+", default=["hals", "mu"], choices=["hals", "mu"])
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--our-tol", type=float, default=None,
                        help="tol of the torch solvers (default: --tol); lower it to reach sklearn's error")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch and of scikit-learn's BLAS alike (default: each library's own)")
    parser.add_argument("--skip-sklearn", action="store_true", help="time only the torch solvers")
    parser.add_argument("--out", type=Path, default=None, help="also write nmf.md and nmf.json into this folder")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # scikit-learn's BLAS: the same number of threads as torch
    device = torch.device(args.device)
    rows, lines = [], []
    for name, (A, text) in matrices(args).items():
        shape = f"{A.shape[0]} x {A.shape[1]}"
        ref = (None, None, None) if args.skip_sklearn else time_sklearn(A, args)
        results = [] if args.skip_sklearn else [("sklearn cd", "CPU", ref)]
        results += [(solver, device.type, time_ours(A, solver, device, args)) for solver in args.solvers]
        for solver, where, (seconds, error, n_iter) in results:
            ok = None if ref[1] is None or solver.startswith("sklearn") else error <= ref[1] * 1.005
            speedup = None if ref[0] is None else ref[0] / seconds
            rows.append(dict(matrix=name, source=text, rows=A.shape[0], columns=A.shape[1], solver=solver,
                             device=where, seconds=seconds, iterations=n_iter, relative_error=error,
                             sklearn_relative_error=ref[1], ok=ok, speedup_vs_sklearn=speedup))
            verdict = "-" if ok is None else "yes" if ok else "no"
            lines.append(f"| {name} | {shape} | {solver} | {where} | {seconds:.2f} | {n_iter} | {error:.5f} | "
                         f"{_cell(ref[1], '.5f')} | {verdict} | {_cell(speedup, '.1f', 'x')} |")
    tol = args.tol if args.our_tol is None else args.our_tol
    table = "\n".join([
        f"k={args.k}, {args.dtype} data for every solver (computed in that dtype on the CPU; torch on a GPU in "
        f"float32), tol={args.tol} (torch solvers: {tol}), max_iter={args.max_iter}, every solver warmed up on "
        f"{_WARM_UP_ROWS} rows first, fastest of {args.repeat} fits; scikit-learn {sklearn.__version__}",
        "",
        "| matrix | n x C | solver | device | time (s) | iterations | rel. error | sklearn rel. error | ok | "
        "speed-up vs sklearn |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *lines,
    ])
    write_report("nmf", table, device=device, settings=vars(args) | {"sklearn": sklearn.__version__},
                 figures={"rows": rows}, out=args.out)


if __name__ == "__main__":
    main()
