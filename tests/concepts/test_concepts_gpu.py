"""CUDA paths (skipped without a GPU): NMF on the device, bf16 feature extraction."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from concepts import NMF, extract_features


@pytest.mark.gpu
@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_nmf_on_cuda_matches_cpu_error(solver, make_planted):
    A, _, _ = make_planted(noise=0.05, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu = NMF(5, solver=solver, random_state=0).fit(A)
        gpu = NMF(5, solver=solver, random_state=0, device="cuda")
        U = gpu.fit_transform(torch.as_tensor(A, dtype=torch.float32, device="cuda"))
    assert U.is_cuda and isinstance(gpu.components_, torch.Tensor)
    assert gpu.relative_reconstruction_err_ <= cpu.relative_reconstruction_err_ + 1e-3
    assert np.isfinite(gpu.reconstruction_err_)


@pytest.mark.gpu
def test_extract_features_on_cuda_close_to_cpu(tiny_split, images):
    cpu = extract_features(tiny_split, images, device="cpu")
    gpu = extract_features(tiny_split, images, device="cuda")
    torch.testing.assert_close(gpu, cpu, atol=0.05 * float(cpu.abs().max()), rtol=0.05)
