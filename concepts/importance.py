"""Concept importance: exact linear contributions and Sobol total-order indices.

Notation: ``u`` codes ``(N, k)`` (or spatial ``(N, k, h, w)``), ``W`` the bank
``(k, C)``, ``a`` pooled activations ``(N, C)``, ``w_c`` the head weights of
class ``c`` ``(C,)`` and ``b`` its bias.

**Exact contributions** (the head after pooling is linear):
``logit = a . w_c + b = sum_k u_k (W_k . w_c) + (a - u W) . w_c + b``, so
``contribution_k = u_k (W_k . w_c)`` (signed), ``residual = (a - u W) . w_c``,
and contributions + residual + bias == logit exactly.

**% of logit** (as the Lens site reports): the mean contribution of each
concept over the images divided by the mean over the images of the summed
contributions, in percent: ``pct_k = 100 * mean_i c_ik / mean_i sum_j c_ij``.
The values sum to 100 (they can be negative for a concept that lowers the
logit); bias and NMF residual are left out (both are reported separately).

**Completeness**: the share of the class evidence the concepts carry,
``mean_i sum_k c_ik / mean_i (logit_i - b)``; the rest is the residual. The
percentages above are shares of this explained part.

**Sobol total-order indices** (CRAFT): masks ``m`` in [0, 1]^k scale the
concept coefficients, ``y(m) = h((u * m) W)[c]``; ``ST_k`` is the share of the
variance of ``y`` that involves concept ``k``. Scrambled Sobol points (not
CRAFT's unscrambled Halton, which is biased at 32 designs), Jansen's estimator
with the variance taken over both sample matrices, zero variance -> 0.
For a linear head ``ST_k = a_k^2 / sum_j a_j^2`` with ``a_k`` the contribution.

**Gradient x input** (for any head): ``u_k * d logit / d u_k`` at the image's own
features ``u W + r`` (the residual ``r = a - u W`` held constant). For a linear
head the gradient is ``W_k . w_c``, so it equals the exact contributions. For a
head that is not linear (a norm, an MLP) these are the contributions
(:func:`gradient_contributions`): the bias is then the logit of all-zero
features and the residual what the concepts' first-order terms leave of the
logit, so completeness is the share the gradient x input sums carry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

__all__ = ["Importance", "completeness", "gradient_contributions", "gradient_x_input", "linear_contributions",
           "percent_of_logit", "sobol_total_indices"]


@dataclass(eq=False)
class Importance:
    """Concept importances for one class.

    Attributes
    ----------
    contributions : Tensor, shape (N, k)
        Signed contribution of each concept to each image's logit: exact for a linear head, gradient x input
        for another.
    residual : Tensor, shape (N,)
        Part of the logit the NMF reconstruction misses.
    bias : float
        Head bias of the class (for a head that is not linear: its logit of all-zero features).
    logits : Tensor, shape (N,)
        ``contributions.sum(1) + residual + bias``.
    percent : Tensor, shape (k,)
        % of logit (see the module docstring); sums to 100.
    sobol : Tensor, shape (k,), or None
        Mean over images of the Sobol total-order indices.
    sobol_per_image : Tensor, shape (N, k), or None
    """

    contributions: torch.Tensor
    residual: torch.Tensor
    bias: float
    logits: torch.Tensor
    percent: torch.Tensor
    sobol: torch.Tensor | None = None
    sobol_per_image: torch.Tensor | None = None

    @property
    def completeness(self) -> float:
        """Share of the class evidence (logit above the bias) the concepts carry (:func:`completeness`)."""
        return completeness(self.contributions, self.logits, self.bias)


def completeness(contributions: torch.Tensor | np.ndarray, logits: torch.Tensor | np.ndarray, bias: float) -> float:
    """``mean_i sum_k contributions[i, k] / mean_i (logits[i] - bias)``, in float64; NaN when the class has no
    evidence above the bias (the denominator is 0)."""
    evidence = float(np.mean(np.asarray(logits, dtype=np.float64) - float(bias)))
    carried = float(np.asarray(contributions, dtype=np.float64).sum(1).mean())
    return carried / evidence if evidence != 0 else float("nan")


def _check_2d(x: torch.Tensor, name: str, caller: str, cols: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or (cols is not None and x.shape[1] != cols):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        want = f"(n, {cols})" if cols is not None else "2-D"
        raise ValueError(f"`{name}` of `{caller}` must be a Tensor of shape {want}; got {shape}.")


def linear_contributions(activations: torch.Tensor, codes: torch.Tensor, components: torch.Tensor,
                         weight: torch.Tensor, bias: float | torch.Tensor = 0.0) -> Importance:
    """Exact per-image contributions of each concept to one class's logit.

    Parameters
    ----------
    activations : Tensor, shape (N, C)
        Pooled features ``a``.
    codes : Tensor, shape (N, k)
        Concept coefficients ``u`` (``NMF.transform(a)``).
    components : Tensor, shape (k, C)
        The bank ``W``.
    weight : Tensor, shape (C,)
        Head weights of the class, ``w_c``.
    bias : float
        Head bias of the class.

    Returns
    -------
    Importance
        With ``sobol`` left as None. Computed in float64.
    """
    caller = "linear_contributions"
    _check_2d(activations, "activations", caller)
    _check_2d(components, "components", caller, activations.shape[1])
    _check_2d(codes, "codes", caller, components.shape[0])
    if codes.shape[0] != activations.shape[0]:
        raise ValueError(f"`codes` of `{caller}` must have one row per row of `activations` "
                         f"({activations.shape[0]}); got {codes.shape[0]}.")
    if not isinstance(weight, torch.Tensor) or weight.shape != (activations.shape[1],):
        raise ValueError(f"`weight` of `{caller}` must be a Tensor of shape ({activations.shape[1]},); got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}. Pass head_weight[class_index].")
    a, u = activations.double(), codes.double()
    W, w = components.to(a), weight.to(a)
    b = float(bias)
    per_concept = W @ w  # (k,)
    contributions = u * per_concept
    residual = (a - u @ W) @ w
    logits = a @ w + b
    return Importance(contributions=contributions, residual=residual, bias=b, logits=logits,
                      percent=percent_of_logit(contributions))


def percent_of_logit(contributions: torch.Tensor) -> torch.Tensor:
    """``100 * mean_i c_ik / mean_i sum_j c_ij``, shape (k,); zeros when the denominator is 0."""
    total = contributions.sum(1).mean()
    if float(total) == 0.0:
        return torch.zeros(contributions.shape[1], dtype=contributions.dtype, device=contributions.device)
    return 100.0 * contributions.mean(0) / total


def _sobol_masks(k: int, n_designs: int, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Masks ``(n_designs * (k + 2), k)``: rows ``[A; B; C_1; ...; C_k]``, ``C_i = A`` with column i of B."""
    engine = torch.quasirandom.SobolEngine(dimension=2 * k, scramble=True, seed=seed)
    points = engine.draw(n_designs, dtype=torch.float64).to(device=device, dtype=dtype)
    A, B = points[:, :k], points[:, k:]
    C = A.unsqueeze(0).repeat(k, 1, 1)  # (k, n, k)
    idx = torch.arange(k, device=device)
    C[idx, :, idx] = B.T
    return torch.cat([A, B, C.reshape(k * n_designs, k)])


def _jansen(outputs: torch.Tensor, k: int, n_designs: int) -> torch.Tensor:
    """Total indices ``(k,)`` from the outputs ``(n_designs * (k + 2),)`` of :func:`_sobol_masks`."""
    f_a, f_b = outputs[:n_designs], outputs[n_designs:2 * n_designs]
    f_c = outputs[2 * n_designs:].view(k, n_designs)
    var = torch.cat([f_a, f_b]).var()
    if not bool(var > 0):
        return torch.zeros(k, dtype=outputs.dtype, device=outputs.device)
    return (f_a[None] - f_c).pow(2).mean(1) / (2 * var)


@torch.no_grad()
def sobol_total_indices(codes: torch.Tensor, components: torch.Tensor,
                        h: Callable[[torch.Tensor], torch.Tensor], class_index: int, *, n_designs: int = 32,
                        batch_size: int = 1024, seed: int = 0, device: torch.device | str | None = None,
                        progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """Per-image Sobol total-order indices of the concepts for one class.

    Parameters
    ----------
    codes : Tensor, shape (N, k) or (N, k, h, w)
        Concept coefficients per image (pooled) or per position (spatial).
    components : Tensor, shape (k, C)
        The bank ``W``.
    h : callable
        Rebuilt activations -> logits: ``(M, C) -> (M, classes)`` for pooled
        codes, ``(M, C, h, w) -> (M, classes)`` for spatial codes.
    class_index : int
    n_designs : int, default 32
        Sobol points per sample matrix (a power of 2 keeps the Sobol balance);
        ``n_designs * (k + 2)`` evaluations of ``h`` per image.
    batch_size : int, default 1024
        Masked inputs per call of ``h``.
    seed : int, default 0
        Scrambling seed of the Sobol sequence.
    device : torch.device or str, optional
        Default: the device of ``codes``.
    progress : callable, optional
        Called with the number of images done after each group of images.

    Returns
    -------
    Tensor, shape (N, k), float32 on the CPU
        ``ST[i, k]``; 0 for an image whose output does not vary.
    """
    caller = "sobol_total_indices"
    if not isinstance(codes, torch.Tensor) or codes.ndim not in (2, 4):
        raise ValueError(f"`codes` of `{caller}` must be a Tensor (N, k) or (N, k, h, w); got "
                         f"{getattr(codes, 'shape', type(codes).__name__)}.")
    _check_2d(components, "components", caller)
    if codes.shape[1] != components.shape[0]:
        raise ValueError(f"`codes` of `{caller}` must have k={components.shape[0]} concepts on dim 1 (as "
                         f"`components`); got {codes.shape[1]}.")
    for name, value, low in (("n_designs", n_designs, 2), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` of `{caller}` must be an int >= {low}; got {value!r}.")
    dev = torch.device(device) if device is not None else codes.device
    k = components.shape[0]
    W = components.to(dev, torch.float32)
    masks = _sobol_masks(k, n_designs, seed, dev, torch.float32)  # (M, k)
    m_count = len(masks)
    group = max(1, batch_size // m_count)  # images per batch of masked inputs
    result = torch.empty(codes.shape[0], k)
    for start in range(0, codes.shape[0], group):
        u = codes[start:start + group].to(dev, torch.float32)  # (g, k[, h, w])
        g = u.shape[0]
        outputs = []
        for lo in range(0, g * m_count, batch_size):
            rows = torch.arange(lo, min(lo + batch_size, g * m_count), device=dev)
            img, m = rows // m_count, masks[rows % m_count]
            if u.ndim == 2:
                rebuilt = (m * u[img]) @ W  # (b, C)
            else:  # the same mask value scales concept k at every position
                rebuilt = torch.einsum("bk,bkhw,kc->bchw", m, u[img], W)
            outputs.append(h(rebuilt)[:, class_index].double())
        outputs_all = torch.cat(outputs).view(g, m_count)
        for j in range(g):
            result[start + j] = _jansen(outputs_all[j], k, n_designs).float().cpu()
        if progress is not None:
            progress(g)
    return result


def gradient_x_input(activations: torch.Tensor, codes: torch.Tensor, components: torch.Tensor,
                     h: Callable[[torch.Tensor], torch.Tensor], class_index: int, *,
                     batch_size: int = 1024, device: torch.device | str | None = None) -> torch.Tensor:
    """Per-image ``u_k * d logit_c / d u_k``, shape (N, k), float64 on the CPU.

    Parameters
    ----------
    activations : Tensor, shape (N, C)
        Pooled features ``a`` (their residual ``a - u W`` is held constant, so the
        gradient is taken at the model's own input to the head).
    codes : Tensor, shape (N, k)
    components : Tensor, shape (k, C)
    h : callable
        Pooled features ``(M, C)`` -> logits ``(M, classes)``, differentiable.
    class_index : int
    batch_size : int, default 1024
    device : torch.device or str, optional
        Where ``h`` runs; default: the device of ``components``.
    """
    caller = "gradient_x_input"
    _check_2d(activations, "activations", caller)
    _check_2d(components, "components", caller, activations.shape[1])
    _check_2d(codes, "codes", caller, components.shape[0])
    W = components.detach().float().to(device if device is not None else components.device)
    result = []
    for start in range(0, codes.shape[0], batch_size):
        a = activations[start:start + batch_size].detach().float().to(W.device)
        u = codes[start:start + batch_size].detach().float().to(W.device).requires_grad_(True)
        with torch.enable_grad():
            rebuilt = u @ W + (a - u.detach() @ W)
            (grad,) = torch.autograd.grad(h(rebuilt)[:, class_index].sum(), u)
        result.append((u.detach().double() * grad.double()).cpu())
    return torch.cat(result)


def gradient_contributions(activations: torch.Tensor, codes: torch.Tensor, components: torch.Tensor,
                           h: Callable[[torch.Tensor], torch.Tensor], class_index: int, *,
                           device: torch.device | str | None = None) -> Importance:
    """Gradient x input contributions through any head, as :func:`linear_contributions` gives exact ones.

    ``contributions`` from :func:`gradient_x_input`; ``bias`` the class logit of all-zero features (the bias of
    a linear head); ``residual = logits - bias - contributions.sum(1)``: the identity contributions + residual +
    bias == logit holds, and on a linear head every term equals the exact one. Arguments as in
    :func:`gradient_x_input`; float64 on the CPU.
    """
    contributions = gradient_x_input(activations, codes, components, h, class_index, device=device)
    dev = device if device is not None else components.device
    with torch.no_grad():
        logits = h(activations.detach().float().to(dev))[:, class_index].double().cpu()
        bias = float(h(activations.new_zeros(1, activations.shape[1], dtype=torch.float32, device=dev))[0, class_index])
    return Importance(contributions=contributions, residual=logits - bias - contributions.sum(1), bias=bias,
                      logits=logits, percent=percent_of_logit(contributions))
