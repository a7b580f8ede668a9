"""The network: a compact U-Net with a per-pixel head and an image-level cell-type head.

Input: float32 ``(B, 1, H, W)`` normalised image, H and W multiples of ``2 ** (len(channels) - 1)``.
With ``input_scale`` s != 1 the network enlarges the image to ``(ceil(s*H), ceil(s*W))``
(rounded up to the stride, bilinear), runs there, and area-averages the pixel logits back to
``(H, W)``: a finer working resolution for small cells, with outputs on the image's own grid.
Output: a dict with

* ``"pixel"``: ``(B, 2, H, W)`` logits — channel 0 foreground, channel 1 normalised distance to
  the cell's border (1 at each cell's most interior pixel, 0 outside cells);
* with ``centre`` set, a third pixel channel: the cell-centre map (a bump on each cell's most
  interior pixel, :func:`phaseseg.train.targets.centre_map`), from which seeds can be taken;
* ``"cell_type"``: ``(B, n_cell_types)`` logits of the culture's cell type (one per image).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

N_PIXEL_OUTPUTS = 2


@dataclass
class NetConfig:
    """Architecture hyper-parameters (saved with the model)."""

    channels: tuple[int, ...] = (16, 32, 64, 128, 192)
    convs_per_block: int = 2
    n_cell_types: int = 3
    input_scale: float = 1.0  # the network works on the image enlarged by this factor
    centre: bool = False  # a third pixel output: the cell-centre map

    @property
    def n_pixel_outputs(self) -> int:
        """Channels of the ``"pixel"`` output: foreground, distance (and centre)."""
        return N_PIXEL_OUTPUTS + int(self.centre)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)

    @property
    def stride(self) -> int:
        """The factor H and W must be divisible by."""
        return 2 ** (len(self.channels) - 1)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, n_convs: int):
        layers = [_conv_bn_relu(c_in, c_out)]
        layers += [_conv_bn_relu(c_out, c_out) for _ in range(n_convs - 1)]
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net: max-pool down, bilinear up, concatenated skips, BatchNorm + ReLU convs."""

    def __init__(self, config: NetConfig | None = None):
        super().__init__()
        self.config = config = config or NetConfig()
        ch, n = config.channels, config.convs_per_block
        self.down = nn.ModuleList(
            [_Block(1 if i == 0 else ch[i - 1], ch[i], n) for i in range(len(ch))]
        )
        self.up = nn.ModuleList(
            [_Block(ch[i + 1] + ch[i], ch[i], n) for i in reversed(range(len(ch) - 1))]
        )
        self.pixel_head = nn.Conv2d(ch[0], config.n_pixel_outputs, 1)
        self.type_head = nn.Linear(ch[-1], config.n_cell_types)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        scale = self.config.input_scale
        if scale != 1.0:
            st = self.config.stride
            big = [math.ceil(n * scale / st) * st for n in size]
            x = F.interpolate(x, size=big, mode="bilinear", align_corners=False)
        out = self._forward(x)
        if scale != 1.0:
            out["pixel"] = _area_average(out["pixel"], (size[0], size[1]))
        return out

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        cell_type = self.type_head(x.mean(dim=(2, 3)))
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return {"pixel": self.pixel_head(x), "cell_type": cell_type}


def _area_average(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, C, *size)`` by area averaging (adaptive average pooling).

    Apple's MPS backend pools only when the sizes divide evenly; otherwise the (small,
    two-channel) map is pooled on the CPU.
    """
    if x.device.type == "mps" and any(a % b for a, b in zip(x.shape[-2:], size, strict=True)):
        return F.adaptive_avg_pool2d(x.cpu(), size).to(x.device)
    return F.adaptive_avg_pool2d(x, size)


def build_model(config: NetConfig | dict | None = None) -> UNet:
    """Build the network from a :class:`NetConfig` or its dict form."""
    if isinstance(config, dict):
        config = NetConfig.from_dict(config)
    return UNet(config)


def can_widen(old: NetConfig, new: NetConfig) -> bool:
    """Whether :func:`widen` can grow ``old`` into ``new``: same depth and block layout, every
    level at least as wide, at least one wider."""
    return (
        len(old.channels) == len(new.channels)
        and old.convs_per_block == new.convs_per_block
        and old.n_cell_types == new.n_cell_types
        and old.input_scale == new.input_scale
        and old.centre == new.centre
        and all(n >= o for n, o in zip(new.channels, old.channels, strict=True))
        and new.channels != old.channels
    )


def widen(old_net: UNet, config: NetConfig) -> UNet:
    """A wider U-Net (``config``) that computes exactly what ``old_net`` computes.

    The old weights fill the leading channels of every layer; the weights that read the new
    channels are zero, so the new channels start unused and training grows them (function-
    preserving widening, as in Net2Net). Lets a trained model continue with more capacity,
    e.g. a wider full-resolution level for sharper outlines.
    """
    if not can_widen(old_net.config, config):
        raise ValueError(f"cannot widen {old_net.config} to {config}")
    new_net = UNet(config)
    old_ch, new_ch = old_net.config.channels, config.channels

    def inputs_of(block_inputs: list[int], chs: tuple[int, ...]) -> list[int]:
        return [1 if i < 0 else chs[i] for i in block_inputs]

    # (old module, new module, the levels whose channels it reads, concatenated in this order)
    pairs: list[tuple[nn.Module, nn.Module, list[int]]] = []
    for i in range(len(old_ch)):
        for k, (old, new) in enumerate(
            zip(old_net.down[i].children(), new_net.down[i].children(), strict=True)
        ):
            pairs.append((old, new, [i - 1] if k == 0 else [i]))
    for j, i in enumerate(reversed(range(len(old_ch) - 1))):
        for k, (old, new) in enumerate(
            zip(old_net.up[j].children(), new_net.up[j].children(), strict=True)
        ):
            pairs.append((old, new, [i + 1, i] if k == 0 else [i]))
    pairs.append((old_net.pixel_head, new_net.pixel_head, [0]))
    pairs.append((old_net.type_head, new_net.type_head, [len(old_ch) - 1]))
    for old, new, reads in pairs:
        old_layers = old if isinstance(old, nn.Sequential) else [old]
        new_layers = new if isinstance(new, nn.Sequential) else [new]
        for o, n in zip(old_layers, new_layers, strict=True):
            _copy_into(o, n, inputs_of(reads, old_ch), inputs_of(reads, new_ch))
    return new_net


@torch.no_grad()
def _copy_into(old: nn.Module, new: Any, widths_old: list[int], widths_new: list[int]):
    """Copy a layer's weights into the leading channels of its wider twin; zero the weights
    that read new input channels (``widths_*``: the widths of the concatenated inputs)."""
    if isinstance(old, (nn.Conv2d, nn.Linear)):
        rows, at_old, at_new = old.weight.shape[0], 0, 0
        for w_old, w_new in zip(widths_old, widths_new, strict=True):
            new.weight[:rows, at_new : at_new + w_old] = old.weight[:, at_old : at_old + w_old]
            new.weight[:, at_new + w_old : at_new + w_new] = 0
            at_old, at_new = at_old + w_old, at_new + w_new
        if old.bias is not None:
            new.bias[:rows] = old.bias
    elif isinstance(old, nn.BatchNorm2d):
        k = old.num_features
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new, name)[:k] = getattr(old, name)
        new.num_batches_tracked.copy_(old.num_batches_tracked)


def add_cell_types(net: UNet, sources: list[int]) -> UNet:
    """A copy of ``net`` whose cell-type head has one more class per entry of ``sources``.

    New class ``n_cell_types + i`` starts as a copy of class ``sources[i]`` (its weights and
    bias: the closest known type): the known classes keep their logits, and the new one has
    its source's, tied with it until training tells them apart. Everything else is ``net``'s
    (copied, not shared).

    >>> net = UNet(NetConfig(channels=(4, 8), convs_per_block=1))
    >>> grown = add_cell_types(net, [2])
    >>> grown.config.n_cell_types, tuple(grown.type_head.weight.shape)
    (4, (4, 8))
    >>> bool((grown.type_head.weight[3] == net.type_head.weight[2]).all())
    True
    """
    n = net.config.n_cell_types
    if not all(0 <= s < n for s in sources):
        raise ValueError(f"source classes {sources} not all in 0..{n - 1}")
    new_net = copy.deepcopy(net)
    new_net.config = replace(net.config, n_cell_types=n + len(sources))
    old = net.type_head
    head = nn.Linear(old.in_features, n + len(sources)).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        rows = list(range(n)) + list(sources)
        head.weight.copy_(old.weight[rows])
        head.bias.copy_(old.bias[rows])
    new_net.type_head = head
    return new_net


def add_centre_head(net: UNet) -> UNet:
    """A copy of ``net`` with the cell-centre output (``NetConfig.centre``) added.

    The new channel starts as a copy of the distance channel (the normalised distance also
    peaks in each cell's interior, the closest thing the network already knows); everything
    else is ``net``'s (copied, not shared), so its other outputs are unchanged.

    >>> net = UNet(NetConfig(channels=(4, 8), convs_per_block=1))
    >>> grown = add_centre_head(net)
    >>> grown.config.centre, tuple(grown.pixel_head.weight.shape)
    (True, (3, 4, 1, 1))
    """
    if net.config.centre:
        raise ValueError("the network already has a centre output")
    new_net = copy.deepcopy(net)
    new_net.config = replace(net.config, centre=True)
    old = net.pixel_head
    head = nn.Conv2d(old.in_channels, N_PIXEL_OUTPUTS + 1, 1)
    head = head.to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        head.weight.copy_(old.weight[[0, 1, 1]])
        head.bias.copy_(old.bias[[0, 1, 1]])
    new_net.pixel_head = head
    return new_net


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "NetConfig",
    "UNet",
    "add_centre_head",
    "add_cell_types",
    "build_model",
    "can_widen",
    "count_parameters",
    "field",
    "widen",
]
