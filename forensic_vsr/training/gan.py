"""Adversarial fine-tuning for the one generative model we ship (`perceptual-sr-x4`).

The generator starts from a fidelity model's weights and is trained with
    a * L1 + b * feature matching + c * adversarial (non-saturating),
where feature matching is the L1 distance between the discriminator's intermediate features of
the output and of the ground truth (pix2pixHD). No pretrained feature network (VGG) can be
fetched here, and the discriminator's features are the field's standard substitute. The
discriminator is a small spectrally normalised PatchGAN on luma.

Such a model invents plausible texture the input does not determine: this is exactly what the
evidential policy refuses, and why its card says `class: generative`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forensic_vsr.models.arch import load_pinned


class PatchDiscriminator(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        c = channels
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(sn(nn.Conv2d(1, c, 3, 1, 1)), nn.LeakyReLU(0.2)),
                nn.Sequential(sn(nn.Conv2d(c, c, 4, 2, 1)), nn.LeakyReLU(0.2)),
                nn.Sequential(sn(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2)),
                nn.Sequential(sn(nn.Conv2d(2 * c, 4 * c, 4, 2, 1)), nn.LeakyReLU(0.2)),
            ]
        )
        self.out = sn(nn.Conv2d(4 * c, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        h = x * 2 - 1
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        return self.out(h), feats


def load_init(spec: dict[str, Any], config_dir: Path) -> dict[str, torch.Tensor]:
    """The generator's starting weights, checked against the sha256 the config pins."""
    return load_pinned((config_dir / spec["weights"]).resolve(), spec["sha256"], "init weights")


class GanLoss:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.l1_weight = float(spec.get("l1_weight", 0.1))
        self.fm_weight = float(spec.get("fm_weight", 1.0))
        self.adv_weight = float(spec.get("adv_weight", 0.01))

    def describe(self) -> str:
        return (
            f"{self.l1_weight} L1 + {self.fm_weight} discriminator feature matching + "
            f"{self.adv_weight} adversarial (non-saturating); spectrally normalised PatchGAN discriminator"
        )

    @staticmethod
    def discriminator(d: PatchDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real_logits, _ = d(real)
        fake_logits, _ = d(fake.detach())
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def generator(self, d: PatchDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            _, real_feats = d(real)
        fake_logits, fake_feats = d(fake)
        l1 = F.l1_loss(fake, real)
        fm = sum(F.l1_loss(a, b) for a, b in zip(fake_feats, real_feats, strict=True)) / len(fake_feats)
        adv = F.softplus(-fake_logits).mean()
        total = self.l1_weight * l1 + self.fm_weight * fm + self.adv_weight * adv
        return total, {"l1": l1.item(), "fm": float(fm.detach()), "adv": adv.item()}
