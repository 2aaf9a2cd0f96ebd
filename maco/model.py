"""Prepare a model for visualization: freeze it, and fold its BatchNorms.

:func:`frozen` puts a model in ``eval()`` mode without weight gradients for
the duration of a run and restores every module's flags afterwards.

In ``eval()`` mode a BatchNorm is an affine map per channel, so
``bn(conv(x))`` equals one convolution with rescaled weights and a bias. The
folded copy runs fewer kernels and reads less memory: on an H100, ResNet50
forward + input gradient went from 3,312 to 6,241 img/s (DESIGN.md).

Pairs are found by running one probe forward pass: a BatchNorm whose input is
the very tensor a convolution just returned is folded into it. The result is
checked against the original model on the probe (every tensor of its output:
a model may return a tuple or a dict); a mismatch raises.

The render loop feeds float32 crops (bf16 autocast on CUDA), so it runs a
float32 copy of a half, bfloat16 or double model (:func:`float32_model`), and
refuses weights that hold NaN or inf (:func:`check_finite_weights`) before they
turn into scores that say nothing.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["check_finite_weights", "float32_model", "fold_batchnorm", "frozen", "model_device"]


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``eval()`` and ``requires_grad_(False)`` inside the context; restored on exit."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_finite_weights(model: nn.Module) -> None:
    """Raise a ValueError naming the first parameter or buffer of ``model`` that holds NaN or inf.

    One device sync for the whole model: every tensor's sum (or flag) is stacked before it is read.
    """
    tensors = [
        (kind, name, tensor)
        for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers()))
        for name, tensor in named
        if tensor.is_floating_point() and tensor.numel()
    ]
    if not tensors:
        return
    device = tensors[0][2].device
    # A NaN or inf anywhere makes its tensor's sum NaN or inf, so finite sums settle it without a full-size mask
    # (a ResNet50: 3 ms instead of 50 ms on a CPU); a non-finite sum may still be an overflow of finite values.
    if bool(torch.stack([tensor.sum().to(device) for _, _, tensor in tensors]).isfinite().all()):
        return
    finite = torch.stack([torch.isfinite(tensor).all().to(device) for _, _, tensor in tensors])
    if bool(finite.all()):
        return
    kind, name, _ = tensors[int((~finite).nonzero()[0, 0])]
    raise ValueError(
        f"{kind} {name!r} of {type(model).__name__} holds NaN or inf values, so every score would be meaningless; "
        "check the model's weights (how they were loaded or trained; torch.isfinite(p).all() for each one)."
    )


def float32_model(model: nn.Module) -> nn.Module:
    """``model`` itself if its floating tensors are float32, else a float32 copy (``model`` is left untouched)."""
    tensors = (*model.parameters(), *model.buffers())
    if all(tensor.dtype == torch.float32 for tensor in tensors if tensor.is_floating_point()):
        return model
    return copy.deepcopy(model).float()


def _output_tensors(output: object) -> list[torch.Tensor]:
    """The non-empty floating tensors of a model's output (a tensor, or tuples, lists and dicts of them), in order."""
    if isinstance(output, torch.Tensor):
        return [output.float()] if output.is_floating_point() and output.numel() else []
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [tensor for item in output for tensor in _output_tensors(item)]
    return []


def _conv_bn_pairs(model: nn.Module, probe: torch.Tensor) -> tuple[list[tuple[str, str]], object]:
    """The (conv, BatchNorm) name pairs that ``model`` runs back to back on ``probe``, and its output there."""
    names = {module: name for name, module in model.named_modules()}
    last_conv_output: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    handles = []

    def conv_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        last_conv_output[id(output)] = names[module]

    def bn_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        conv = last_conv_output.get(id(inputs[0]))
        if conv is not None:
            pairs.append((conv, names[module]))

    for module in model.modules():
        # Exact types only: subclasses (e.g. timm's BatchNormAct2d) do more than the affine map.
        if type(module) is nn.Conv2d:
            handles.append(module.register_forward_hook(conv_hook))
        elif type(module) is nn.BatchNorm2d:
            handles.append(module.register_forward_hook(bn_hook))
    try:
        with torch.no_grad():
            output = model(probe)
    finally:
        for handle in handles:
            handle.remove()
    convs = [conv for conv, _ in pairs]
    return [pair for pair in pairs if convs.count(pair[0]) == 1], output


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def fold_batchnorm(model: nn.Module, probe: torch.Tensor, *, atol: float = 1e-3) -> nn.Module:
    """Return an ``eval()`` copy of ``model`` with BatchNorm folded into convolutions.

    Parameters
    ----------
    model : nn.Module
        Left untouched.
    probe : torch.Tensor
        ``(N, 3, s, s)`` input used to find conv -> BN pairs and to check the result.
    atol : float
        Largest allowed absolute difference of outputs, relative to their scale.

    Returns
    -------
    nn.Module
        A frozen copy (``requires_grad=False``) with the same module names;
        folded BatchNorms are replaced by ``nn.Identity``.
    """
    with frozen(model):  # one probe pass finds the pairs and gives the outputs the folded copy must reproduce
        pairs, output = _conv_bn_pairs(model, probe)
    expected = _output_tensors(output)
    if not expected:
        raise ValueError(
            f"fold_batchnorm cannot check its result: the forward of {type(model).__name__} returns a "
            f"{type(output).__name__} without floating tensors; pass fold_bn=False."
        )
    if not all(bool(torch.isfinite(tensor).all()) for tensor in expected):
        raise ValueError(
            f"{type(model).__name__} produced NaN or inf outputs on a random probe input; check its weights "
            "(torch.isfinite(p).all() for each parameter) and any operation that can overflow in its forward."
        )
    folded = copy.deepcopy(model).eval().requires_grad_(False)
    for conv_name, bn_name in pairs:
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        _set_module(folded, conv_name, fuse_conv_bn_eval(conv, bn).requires_grad_(False))
        _set_module(folded, bn_name, nn.Identity())
    with torch.no_grad():
        got = _output_tensors(folded(probe))
    for want, have in zip(expected, got):
        scale = float(want.abs().max().clamp_min(1.0))
        if not torch.allclose(have, want, atol=atol * scale, rtol=0):
            raise RuntimeError(
                f"folding BatchNorm changed the outputs of {type(model).__name__} "
                f"(max diff {float((have - want).abs().max()):.3g}); pass fold_bn=False."
            )
    return folded
