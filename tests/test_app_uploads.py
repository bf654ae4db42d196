"""Uploads from the codebases researchers use: the SalUn reference code's ResNet-18 checkpoints (input
normalisation as ``normalize.*`` buffers, optimizer and scheduler state beside the weights) and torchvision's.

The SalUn-layout model is written here with the same parameter and buffer names as that code's
``Classification/models/ResNet.py`` (``normalize.mean``, ``conv1``, ``bn1``, ``layer1.0.conv1`` …
``layerN.0.downsample.0/1`` … ``fc``), at the CIFAR stem (3×3 conv1, no max-pool).
"""

import io

import pytest
import torch
from torch import nn

from test_app import upload_app as upload
from wsscl_core.engine import to_float

class ChannelNormalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x):
        return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class SalUnLayoutResNet18(nn.Module):
    """Same state-dict keys as the SalUn reference ResNet-18 (CIFAR stem)."""

    def __init__(self, in_channels, num_classes, mean, std):
        super().__init__()
        self.normalize = ChannelNormalise(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths, cin = (64, 128, 256, 512), 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(Block(cin, width, stride), Block(width, width, 1)))
            cin = width
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _trained_a_little(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[dict, dict]:
    """A few SGD steps, as the SalUn training script would run them: returns optimizer and scheduler state."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=[91, 136], gamma=0.1)
    model.train()
    for _ in range(3):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(to_float(images)), labels).backward()
        optimiser.step()
        scheduler.step()
    return optimiser.state_dict(), scheduler.state_dict()


def _salun_checkpoint(digits, mean, std) -> tuple[bytes, nn.Module]:
    torch.manual_seed(0)
    model = SalUnLayoutResNet18(digits.channels, digits.num_classes, mean, std)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer, scheduler = _trained_a_little(model, digits.train.images[:64], digits.train.labels[:64])
    buffer = io.BytesIO()
    torch.save({"state": 0, "result": {"train_ta": [10.0], "test_ta": [9.0]}, "epoch": 3,
                "state_dict": model.state_dict(), "best_sa": 9.0, "optimizer": optimizer, "scheduler": scheduler,
                "init_weight": initial}, buffer)
    return buffer.getvalue(), model.eval()


def test_salun_key_layout_matches_ours_apart_from_the_normalisation_buffers(digits):
    from wsscl_core.models import build_model

    theirs = set(SalUnLayoutResNet18(1, 10, [0.5], [0.25]).state_dict())
    ours = set(build_model("resnet18", 1, 10).state_dict())
    assert theirs - ours == {"normalize.mean", "normalize.std"} and ours <= theirs


def test_salun_checkpoint_loads_with_its_buffers_as_the_input_normalisation(digits):
    mean, std = [0.3], [0.2]  # not the dataset's statistics, so using them is visible in the outputs
    assert (mean[0], std[0]) != (pytest.approx(digits.mean[0]), pytest.approx(digits.std[0]))
    payload, salun_model = _salun_checkpoint(digits, mean, std)
    at = upload(payload)
    assert at.success and not at.error, [e.value for e in at.error]
    ws = at.session_state["workspace"]
    assert ws.model_name == "resnet18"
    assert ws.metadata["mean"] == pytest.approx(mean) and ws.metadata["std"] == pytest.approx(std)
    images = to_float(digits.test.images[:32])
    with torch.no_grad():
        ours, theirs = ws.original.eval()(images.to(ws.device)).cpu(), salun_model(images)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_a_lone_normalisation_buffer_is_refused_with_a_message(digits):
    payload, _ = _salun_checkpoint(digits, [0.3], [0.2])
    checkpoint = torch.load(io.BytesIO(payload), weights_only=True)
    del checkpoint["state_dict"]["normalize.std"]
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    at = upload(buffer.getvalue())
    assert any("normalize.mean but not its pair" in e.value for e in at.error) and not at.success


def test_normalisation_for_other_channels_is_refused_with_a_message(digits):
    model = SalUnLayoutResNet18(digits.channels, digits.num_classes, [0.5, 0.5, 0.5], [0.2, 0.2, 0.2])
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict()}, buffer)
    at = upload(buffer.getvalue())
    assert any("normalises 3 input channel(s)" in e.value for e in at.error) and not at.success


def test_torchvision_resnet18_still_loads(digits):
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=digits.num_classes)
    tv.conv1 = nn.Conv2d(digits.channels, 64, 7, 2, 3, bias=False)
    buffer = io.BytesIO()
    torch.save({"model": tv.state_dict(), "epoch": 1}, buffer)
    at = upload(buffer.getvalue())
    assert at.success and not at.error, [e.value for e in at.error]
    ws = at.session_state["workspace"]
    assert ws.model_name == "resnet18-imagenet-stem"
    images = to_float(digits.test.images[:16])
    normalised = (images - torch.tensor(digits.mean).view(1, -1, 1, 1)) / torch.tensor(digits.std).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ws.original.eval()(images), tv.eval()(normalised), rtol=1e-4, atol=1e-4)
