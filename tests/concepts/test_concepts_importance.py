"""Importance: exact contributions add up to the logit; Sobol matches the linear-head theory."""
from __future__ import annotations

import pytest
import torch

from concepts import linear_contributions, percent_of_logit, sobol_total_indices


def _setup(n: int = 8, k: int = 4, c: int = 12, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    W = torch.rand(k, c, generator=gen)
    codes = torch.rand(n, k, generator=gen)
    acts = codes @ W + 0.1 * torch.rand(n, c, generator=gen)  # with a residual
    head = torch.nn.Linear(c, 3)
    with torch.no_grad():
        head.weight.copy_(torch.randn(3, c, generator=gen))
        head.bias.copy_(torch.randn(3, generator=gen))
    return acts, codes, W, head


def test_contributions_plus_residual_plus_bias_equal_logit():
    acts, codes, W, head = _setup()
    imp = linear_contributions(acts, codes, W, head.weight[1].detach(), float(head.bias[1].detach()))
    logits = head(acts)[:, 1].detach().double()
    torch.testing.assert_close(imp.contributions.sum(1) + imp.residual + imp.bias, logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(imp.logits, logits, rtol=0, atol=1e-5)
    assert imp.contributions.shape == (8, 4) and imp.residual.shape == (8,)
    assert imp.percent.sum().item() == pytest.approx(100.0)


def test_percent_of_logit_definition():
    c = torch.tensor([[1.0, 3.0], [3.0, 1.0], [2.0, -2.0]])
    # mean contributions (2, 2/3) over mean total (8/3)
    torch.testing.assert_close(percent_of_logit(c), torch.tensor([75.0, 25.0]))
    assert torch.equal(percent_of_logit(torch.zeros(3, 2)), torch.zeros(2))


def test_sobol_matches_linear_theory_and_ranks_like_contributions():
    acts, codes, W, head = _setup(n=3, k=4, seed=2)
    cls = 0
    st = sobol_total_indices(codes, W, head, cls, n_designs=1024, seed=0)
    imp = linear_contributions(codes @ W, codes, W, head.weight[cls].detach())
    a2 = imp.contributions.float() ** 2
    expected = a2 / a2.sum(1, keepdim=True)
    torch.testing.assert_close(st, expected, atol=0.05, rtol=0)
    assert torch.equal(st.argsort(1), expected.argsort(1))


def test_sobol_spatial_codes_equal_pooled_for_linear_head():
    acts, codes, W, head = _setup(n=2, k=3, seed=3)
    gen = torch.Generator().manual_seed(9)
    spatial = torch.rand(2, 3, 4, 4, generator=gen)

    def h_spatial(x: torch.Tensor) -> torch.Tensor:
        return head(x.mean((2, 3)))

    st_spatial = sobol_total_indices(spatial, W, h_spatial, 1, n_designs=64, seed=1)
    st_pooled = sobol_total_indices(spatial.mean((2, 3)), W, head, 1, n_designs=64, seed=1)
    torch.testing.assert_close(st_spatial, st_pooled, atol=1e-4, rtol=0)


def test_sobol_zero_variance_gives_zero_not_nan():
    W = torch.rand(3, 5)
    st = sobol_total_indices(torch.zeros(2, 3), W, torch.nn.Linear(5, 2), 0, n_designs=16)
    assert torch.equal(st, torch.zeros(2, 3))


def test_sobol_batching_does_not_change_the_result():
    acts, codes, W, head = _setup(n=5, k=4, seed=4)
    a = sobol_total_indices(codes, W, head, 2, n_designs=32, batch_size=7)
    b = sobol_total_indices(codes, W, head, 2, n_designs=32, batch_size=4096)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_importance_input_errors():
    acts, codes, W, head = _setup()
    with pytest.raises(ValueError, match="`weight` of `linear_contributions` must be a Tensor of shape"):
        linear_contributions(acts, codes, W, head.weight)
    with pytest.raises(ValueError, match="`codes` of `sobol_total_indices` must have k=4"):
        sobol_total_indices(codes[:, :2], W, head, 0)
    with pytest.raises(ValueError, match="`n_designs` of `sobol_total_indices` must be an int >= 2"):
        sobol_total_indices(codes, W, head, 0, n_designs=1)


def test_sobol_masks_range_mean_and_structure():
    from concepts.importance import _sobol_masks

    k, n = 3, 256
    masks = _sobol_masks(k, n, seed=5, device=torch.device("cpu"), dtype=torch.float64)
    assert masks.shape == (n * (k + 2), k)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    A, B = masks[:n], masks[n:2 * n]
    assert abs(float(A.mean()) - 0.5) < 0.01 and abs(float(B.mean()) - 0.5) < 0.01
    for i in range(k):
        C = masks[(2 + i) * n:(3 + i) * n]
        assert torch.equal(C[:, i], B[:, i])
        assert torch.equal(C[:, [j for j in range(k) if j != i]], A[:, [j for j in range(k) if j != i]])
    assert not torch.equal(masks, _sobol_masks(k, n, seed=6, device=torch.device("cpu"), dtype=torch.float64))


def test_gradient_x_input_equals_exact_contributions_on_a_linear_head():
    from concepts import gradient_x_input

    acts, codes, W, head = _setup(n=10, k=4, c=12, seed=3)
    exact = linear_contributions(acts, codes, W, head.weight[2].detach(), float(head.bias[2].detach()))
    gxi = gradient_x_input(acts, codes, W, head, 2, batch_size=3)  # batches of 3: the split must not matter
    torch.testing.assert_close(gxi, exact.contributions, rtol=1e-5, atol=1e-5)


def test_gradient_x_input_on_a_nonlinear_head_is_the_first_order_term():
    from concepts import gradient_x_input

    acts, codes, W, _ = _setup(n=5, k=3, c=12, seed=4)
    head = torch.nn.Sequential(torch.nn.LayerNorm(12), torch.nn.Linear(12, 3))
    gxi = gradient_x_input(acts, codes, W, head, 1)
    eps = 1e-3  # finite difference along each concept's coefficient, scaled by the coefficient
    for j in range(3):
        bumped = acts + eps * codes[:, j:j + 1] * W[j]
        finite = (head(bumped)[:, 1] - head(acts)[:, 1]).detach().double() / eps
        torch.testing.assert_close(gxi[:, j], finite, rtol=2e-2, atol=2e-3)
