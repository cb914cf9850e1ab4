"""PyTorch modules of the reference models.

This file is shipped with each logged model (MLflow ``code_paths``) and imported under its bare name,
``servebench_torch_nets``, so a runtime environment can unpickle the modules without the harness.
Keep it free of imports other than torch.
"""

from __future__ import annotations

import torch
from torch import nn


class Normalise(nn.Module):
    """Input standardisation baked into the model, so every runtime receives raw pixel values."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float().clamp_min(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class DigitsMLP(nn.Module):
    """64 raw pixels -> class probabilities."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int = 10) -> None:
        super().__init__()
        self.normalise = Normalise(mean, std)
        self.layers = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, n_classes)
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(self.normalise(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


class DigitsCNN(nn.Module):
    """64 raw pixels, reshaped to one 8x8 channel -> class probabilities."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int = 10) -> None:
        super().__init__()
        self.normalise = Normalise(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, n_classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        images = self.normalise(x).reshape(-1, 1, 8, 8)
        out: torch.Tensor = self.head(self.features(images))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)
