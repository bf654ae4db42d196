"""Model registry: every model exposes penultimate features and logits.

Models take float images in [0, 1] and normalise them themselves (mean/std are
non-persistent buffers rebuilt from checkpoint metadata), so checkpoints from other
tools load without normalisation keys.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torch import nn

from .errors import WssclError


class Classifier(nn.Module):
    """Base: ``features(x)`` gives the penultimate vector, ``output_layer()`` maps it to logits."""

    head_name = "head"

    def __init__(self, in_channels: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        super().__init__()
        mean = list(mean) if mean else [0.5] * in_channels
        std = list(std) if std else [0.25] * in_channels
        self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def output_layer(self) -> nn.Linear:
        """The final Linear layer (named ``head`` or ``fc`` depending on the architecture)."""
        return getattr(self, self.head_name)

    def replace_head(self, new_head: nn.Linear) -> None:
        """Swap the output layer (boundary expanding adds, then removes, a class)."""
        setattr(self, self.head_name, new_head)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        return self.output_layer()(feats), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer()(self.features(x))


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CompactCNN(Classifier):
    """Three conv blocks (32-64-128) pooled to 2x2 (512 features): fast on a laptop CPU.

    Pooling to 2x2 rather than 1x1 keeps coarse spatial layout, which the head needs on
    small grey images; any input size works (the pooling is adaptive).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__(in_channels, mean, std)
        w = width
        self.body = nn.Sequential(
            _conv_block(in_channels, w), nn.MaxPool2d(2),
            _conv_block(w, 2 * w), nn.MaxPool2d(2),
            _conv_block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.head = nn.Linear(16 * w, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalise(x))


@functools.cache
def resnet18_class() -> type[Classifier]:
    """torchvision's ResNet-18 as a :class:`Classifier`, imported on first use: importing torchvision
    costs ~1.3 s (it loads torch._dynamo), which the compact-net studio should not pay at start-up."""
    import torchvision

    class ResNet18(Classifier, torchvision.models.ResNet):
        """torchvision's ResNet-18; ``cifar_stem`` swaps the 7x7/stride-2 conv + max-pool for a 3x3 conv.

        Subclassing torchvision's class keeps its parameter names, so torchvision-style
        checkpoints load as they are.
        """

        head_name = "fc"

        def __init__(self, in_channels: int = 3, num_classes: int = 10, cifar_stem: bool = True,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
            torchvision.models.ResNet.__init__(self, torchvision.models.resnet.BasicBlock, [2, 2, 2, 2],
                                               num_classes=num_classes)
            mean = list(mean) if mean else [0.5] * in_channels
            std = list(std) if std else [0.25] * in_channels
            self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
            if cifar_stem:
                self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
                self.maxpool = nn.Identity()
            elif in_channels != 3:
                self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalise(x)))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x))

    return ResNet18


MODELS: dict[str, Callable[..., Classifier]] = {
    "compact": CompactCNN,
    "resnet18": lambda **kw: resnet18_class()(cifar_stem=True, **kw),
    "resnet18-imagenet-stem": lambda **kw: resnet18_class()(cifar_stem=False, **kw),
}
MODEL_HELP = {
    "compact": "3-block CNN, fast on CPU (default)",
    "resnet18": "ResNet-18 with the CIFAR stem (3x3 conv1, no max-pool); for GPUs",
    "resnet18-imagenet-stem": "torchvision's standard ResNet-18 (7x7 conv1 + max-pool)",
}


def build_model(name: str, in_channels: int, num_classes: int,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Classifier:
    """Build a registered model with fresh weights (seed torch first for reproducibility).

    Weights are channels-last (NHWC), the layout :func:`~wsscl_core.engine.to_float` gives image
    batches: convolutions run 1.3-1.8x faster that way on CPU (oneDNN) and use cuDNN's fast path.
    """
    if name not in MODELS:
        raise WssclError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    model = MODELS[name](in_channels=in_channels, num_classes=num_classes, mean=mean, std=std)
    return model.to(memory_format=torch.channels_last)


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when available (or asked for), CPU otherwise."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise WssclError("CUDA was requested but no CUDA GPU is available; use --device cpu.")
    return torch.device(preference)
