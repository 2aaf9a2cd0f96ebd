"""Benchmark: concepts.NMF (torch HALS / MU) versus scikit-learn's NMF.

Times each solver on the same non-negative matrix ``A (n, C)`` with the same
rank and seed, and reports the relative reconstruction error
``||A - UW||_F / ||A||_F`` beside the time, so speed is compared at equal or
better error. The matrix is a planted low-rank product plus noise, or real
activations from an ``.npy`` file (``--npy``, shape (n, C), >= 0).

Examples
--------
    python benchmarks/bench_nmf.py --n 20000 --c 2048 --k 10 --device cuda
    python benchmarks/bench_nmf.py --n 5000 --device cpu --threads 2

Prints a markdown table; the last column is scikit-learn's time divided by
the solver's time (higher is faster), and ``ok`` says whether the solver's
error is no worse than scikit-learn's + 0.001.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import sklearn
import torch
from sklearn.decomposition import NMF as SklearnNMF
from sklearn.exceptions import ConvergenceWarning

from concepts import NMF


def planted_matrix(n: int, c: int, k: int, noise: float, seed: int) -> np.ndarray:
    """``A = U W + noise``, sparse-ish non-negative factors, float32, shape (n, c)."""
    rng = np.random.default_rng(seed)
    U = rng.random((n, k), dtype=np.float32) ** 3
    W = rng.random((k, c), dtype=np.float32) ** 3
    A = U @ W
    A += noise * float(A.mean()) * np.abs(rng.standard_normal((n, c), dtype=np.float32))
    return A


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(A: np.ndarray, k: int, solver: str, device: torch.device,
              args: argparse.Namespace) -> tuple[float, float, int]:
    """Seconds (data already on the device), relative error, iterations."""
    data = torch.from_numpy(A).to(device)
    tol = args.tol if args.our_tol is None else args.our_tol
    nmf = NMF(k, solver=solver, max_iter=args.max_iter, tol=tol, random_state=args.seed, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        nmf.fit(data[: min(len(data), 2 * k + 64)])  # warm-up: kernels, allocator, lazy init
        _sync(device)
        start = time.perf_counter()
        nmf.fit(data)
        _sync(device)
    return time.perf_counter() - start, nmf.relative_reconstruction_err_, nmf.n_iter_


def time_sklearn(A: np.ndarray, k: int, args: argparse.Namespace) -> tuple[float, float, int]:
    """scikit-learn's NMF (coordinate descent, nndsvda) on float64 data."""
    A64 = A.astype(np.float64)
    est = SklearnNMF(k, init="nndsvda", solver="cd", max_iter=args.max_iter, tol=args.tol, random_state=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        est.fit(A64)
    seconds = time.perf_counter() - start
    return seconds, est.reconstruction_err_ / np.linalg.norm(A64), est.n_iter_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="rows (crops); default %(default)s")
    parser.add_argument("--c", type=int, default=2048, help="columns (channels); default %(default)s")
    parser.add_argument("--k", type=int, default=10, help="components; default %(default)s")
    parser.add_argument("--noise", type=float, default=0.5, help="noise scale relative to mean(UW)")
    parser.add_argument("--npy", default=None, help="real activations (n, C) instead of the planted matrix")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--solvers", nargs="+", default=["hals", "mu"], choices=["hals", "mu"])
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--our-tol", type=float, default=None,
                        help="tol of the torch solvers (default: --tol); lower it to reach sklearn's error")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--skip-sklearn", action="store_true", help="time only the torch solvers")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.npy:
        A = np.load(args.npy, allow_pickle=False).astype(np.float32)
        source = args.npy
    else:
        A = planted_matrix(args.n, args.c, args.k, args.noise, args.seed)
        source = f"planted rank {args.k} + noise {args.noise}"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"A: {A.shape[0]} x {A.shape[1]} ({source}), k={args.k}, tol={args.tol} (torch solvers: "
          f"{args.tol if args.our_tol is None else args.our_tol}), max_iter={args.max_iter}, "
          f"torch {torch.__version__}, scikit-learn {sklearn.__version__}, device {name}\n")
    print("| solver | device | n x C | k | time (s) | iterations | rel. error | sklearn rel. error | ok | "
          "speed-up vs sklearn |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ref = (float("nan"), float("nan"), 0) if args.skip_sklearn else time_sklearn(A, args.k, args)
    shape = f"{A.shape[0]} x {A.shape[1]}"
    print(f"| sklearn cd | CPU | {shape} | {args.k} | {ref[0]:.2f} | {ref[2]} | {ref[1]:.5f} | {ref[1]:.5f} | - "
          "| 1.0x |")
    for solver in args.solvers:
        seconds, err, n_iter = time_ours(A, args.k, solver, device, args)
        ok = "yes" if err <= ref[1] + 1e-3 else ("?" if np.isnan(ref[1]) else "no")
        print(f"| {solver} | {name} | {shape} | {args.k} | {seconds:.2f} | {n_iter} | {err:.5f} | {ref[1]:.5f} | "
              f"{ok} | {ref[0] / seconds:.1f}x |")


if __name__ == "__main__":
    main()
