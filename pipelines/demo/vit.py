"""The demo transformer: a tiny Vision Transformer with timm's ``VisionTransformer`` layout.

Notation: ``N`` images, ``C = embed_dim`` channels, ``T = (H / 16) * (W / 16)``
patch tokens (64 at 128 px: an 8 x 8 grid, the cells of :class:`DemoNet`'s
stride-16 ``layer4``), one class token before them (``num_prefix_tokens = 1``).

``forward_features`` maps images to the ``(N, 1 + T, C)`` tokens after the final
LayerNorm (signed, unlike the CNN's post-ReLU features); ``forward_head`` pools
them with ``global_pool = "avg"`` (the mean of the patch tokens; the class token
is not read) and applies the linear ``head``. So the head reads the mean of the
patch tokens, as the CNN's reads the mean of its feature cells: a logit is the
sum of one linear contribution per patch, which the concept stage can split
exactly. With ``"token"`` (the class token only) the logit would depend on one
token that is no place in the image.

Attribute and state-dict names are timm's (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.i.norm1``, ``blocks.i.attn.qkv``, ``blocks.i.attn.proj``,
``blocks.i.norm2``, ``blocks.i.mlp.fc1``/``fc2``, ``norm``, ``head``), so the
weights also load into ``timm.models.VisionTransformer(img_size=128,
patch_size=16, num_classes=6, global_pool="avg", fc_norm=False,
embed_dim=64, depth=4, num_heads=4)`` and give the same logits. timm is not
needed to run it.

Inputs are normalised by the caller with ``DEMO_MEAN`` / ``DEMO_STD`` and
are ``DEMO_INPUT_SIZE`` pixels square (the position embeddings are fixed).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .model import DEMO_INPUT_SIZE

__all__ = ["DemoViT"]


class PatchEmbed(nn.Module):
    """Images ``(N, 3, H, W)`` -> patch tokens ``(N, T, C)`` by a stride-``patch_size`` convolution ``proj``."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.img_size:
            raise ValueError(f"`x` of DemoViT must be RGB images of shape (N, 3, {self.img_size[0]}, "
                             f"{self.img_size[1]}); got {tuple(x.shape)}. Resize them to the model's input size.")
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` (one linear map), scaled dot product, ``proj``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, t, c))


class Mlp(nn.Module):
    """``fc1`` -> GELU -> ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DemoViT(nn.Module):
    """Tiny ViT: ``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``, ``norm``, ``head``.

    With the defaults (``embed_dim=64``, ``depth=4``, ``num_heads=4``,
    ``mlp_ratio=4``): about 250 k parameters (1.0 MB in float32), ``C = 64``.

    Parameters
    ----------
    num_classes : int, default 6
        Outputs of ``head``.
    img_size : int, default DEMO_INPUT_SIZE (128)
    patch_size : int, default 16
    embed_dim : int, default 64
    depth : int, default 4
        Number of blocks.
    num_heads : int, default 4
        Must divide ``embed_dim``.
    mlp_ratio : float, default 4.0
    """

    num_prefix_tokens = 1
    global_pool = "avg"

    def __init__(self, num_classes: int = 6, *, img_size: int = DEMO_INPUT_SIZE, patch_size: int = 16,
                 embed_dim: int = 64, depth: int = 4, num_heads: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("img_size", img_size), ("patch_size", patch_size),
                            ("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` of DemoViT must be a positive integer; got {value!r}.")
        if img_size % patch_size or embed_dim % num_heads:
            raise ValueError(f"`patch_size` of DemoViT must divide `img_size` and `num_heads` divide `embed_dim`; "
                             f"got img_size={img_size}, patch_size={patch_size}, embed_dim={embed_dim}, "
                             f"num_heads={num_heads}.")
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + self.patch_embed.num_patches,
                                                  embed_dim))
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.Identity()  # timm's names: the pooled features are not normalised again, no dropout
        self.head_drop = nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's init: truncated normal (std 0.02) for embeddings and linear weights, zero biases."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(N, 3, H, W)`` -> tokens ``(N, 1 + T, C)`` after ``norm`` (class token first)."""
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``(N, 1 + T, C)`` -> logits ``(N, num_classes)``: the mean of the patch tokens, then ``head``.

        ``pre_logits=True`` returns the pooled features ``(N, C)`` instead.
        """
        x = self.head_drop(self.fc_norm(x[:, self.num_prefix_tokens:].mean(1)))
        return x if pre_logits else self.head(x)

    def get_classifier(self) -> nn.Linear:
        """The linear head (pooled features -> logits), timm's accessor."""
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(N, 3, H, W)`` -> logits ``(N, num_classes)``."""
        return self.forward_head(self.forward_features(x))
