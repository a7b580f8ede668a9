"""The network: a compact U-Net with a per-pixel head and an image-level cell-type head.

Input: float32 ``(B, 1, H, W)`` normalised image, H and W multiples of ``2 ** (len(channels) - 1)``.
Output: a dict with

* ``"pixel"``: ``(B, 2, H, W)`` logits — channel 0 foreground, channel 1 normalised distance to
  the cell's border (1 at each cell's most interior pixel, 0 outside cells);
* ``"cell_type"``: ``(B, n_cell_types)`` logits of the culture's cell type (one per image).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
        self.pixel_head = nn.Conv2d(ch[0], N_PIXEL_OUTPUTS, 1)
        self.type_head = nn.Linear(ch[-1], config.n_cell_types)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
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


def build_model(config: NetConfig | dict | None = None) -> UNet:
    """Build the network from a :class:`NetConfig` or its dict form."""
    if isinstance(config, dict):
        config = NetConfig.from_dict(config)
    return UNet(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["NetConfig", "UNet", "build_model", "count_parameters", "field"]
