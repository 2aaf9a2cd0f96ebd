"""Benchmark: concepts.SemiNMF (torch, HALS and multiplicative codes) versus a plain numpy reference of Ding et al.

The data are signed, as ViT / ConvNeXt activations are: ``A = U W + noise`` with sparse non-negative ``U`` and
Gaussian ``W`` (``--n`` x ``--c``, rank ``--k``, Gaussian noise of standard deviation ``--noise``), the tests'
``signed_planted``. Every
method starts from the same codes (SemiNMF's ``nndsvda`` initialisation, seeded by ``--seed``) and stops on the
same rule: the squared error decreasing by less than ``--tol`` of its value over one iteration. The reference is
``tests/concepts/seminmf_reference.py`` (Ding, Li & Jordan 2010, Algorithm 1, as printed, in numpy). Each method
is warmed up, then timed ``--repeat`` times; the fastest counts.

Example
-------
    python benchmarks/bench_seminmf.py --n 2000 --c 512 --k 10 --threads 2

Prints a Markdown table: the last columns are the error relative to the reference's and the speed-up over it.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from _report import synchronize, write_report
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from concepts import SemiNMF
from concepts._semi_solvers import init_semi

Result = tuple[float, float, int]  # seconds, relative error, iterations


def _fastest(run: Callable[[], tuple[float, int]], repeat: int, device: torch.device) -> Result:
    """Warm up once, then the fastest of ``repeat`` timed runs of ``run`` (which returns the error and iterations)."""
    run()
    times = []
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        error, n_iter = run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), error, n_iter


def time_ours(A: np.ndarray, solver: str, device: torch.device, args: argparse.Namespace) -> Result:
    data = torch.from_numpy(A).to(device)

    def run() -> tuple[float, int]:
        semi = SemiNMF(args.k, solver=solver, max_iter=args.max_iter, tol=args.tol, random_state=args.seed,
                       device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            semi.fit(data)
        return semi.relative_reconstruction_err_, semi.n_iter_

    return _fastest(run, args.repeat, device)


def time_reference(A: np.ndarray, reference_semi_nmf: Callable[..., tuple], args: argparse.Namespace) -> Result:
    U0, _ = init_semi(torch.from_numpy(A), args.k, "nndsvda", torch.Generator().manual_seed(args.seed))

    def run() -> tuple[float, int]:
        U, W, n_iter = reference_semi_nmf(A, U0.numpy(), max_iter=args.max_iter, tol=args.tol)
        return float(np.linalg.norm(A - U @ W) / np.linalg.norm(A)), n_iter

    return _fastest(run, args.repeat, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="rows of the signed planted matrix")
    parser.add_argument("--c", type=int, default=512, help="columns of the signed planted matrix")
    parser.add_argument("--k", type=int, default=10, help="components")
    parser.add_argument("--noise", type=float, default=0.5, help="noise std (UW's: about sqrt(k / 10))")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"], help="of the data, every method")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-iter", type=int, default=5000)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--repeat", type=int, default=3, help="timed fits per method; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch and of numpy's BLAS alike")
    parser.add_argument("--out", type=Path, default=None, help="also write seminmf.md and seminmf.json here")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/
    from tests.concepts.seminmf_reference import reference_semi_nmf, signed_planted

    device = torch.device(args.device)
    A = signed_planted(args.n, args.c, args.k, args.noise, args.seed)[0].astype(args.dtype)
    ref = time_reference(A, reference_semi_nmf, args)
    results = [("numpy reference (Ding MU)", "cpu", ref)]
    results += [(f"SemiNMF {solver}", device.type, time_ours(A, solver, device, args)) for solver in ("hals", "mu")]
    rows, lines = [], []
    for method, where, (seconds, error, n_iter) in results:
        rows.append(dict(method=method, device=where, seconds=seconds, iterations=n_iter, relative_error=error,
                         error_vs_reference=error / ref[1], speedup_vs_reference=ref[0] / seconds))
        lines.append(f"| {method} | {where} | {seconds:.2f} | {n_iter} | {error:.5f} | "
                     f"{100 * (error / ref[1] - 1):+.2f}% | {ref[0] / seconds:.1f}x |")
    table = "\n".join([
        f"{args.n} x {args.c} signed planted (rank {args.k}, noise {args.noise}), {args.dtype}, tol={args.tol}, "
        f"max_iter={args.max_iter}, same initial codes, fastest of {args.repeat} after a warm-up",
        "",
        "| method | device | time (s) | iterations | rel. error | vs reference | speed-up |",
        "|---|---|---|---|---|---|---|",
        *lines,
    ])
    write_report("seminmf", table, device=device, settings=vars(args), figures={"rows": rows}, out=args.out)


if __name__ == "__main__":
    main()
