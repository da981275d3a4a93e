"""The classifier's networks: draw-ai's CNN and the two recipes it is compared with, built by name
(`ARCHITECTURES`, `build_model`), and the fused copy every prediction runs (`for_inference`)."""

from __future__ import annotations

import copy
import functools
import inspect
import json

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DoodleCNN(nn.Module):
    """draw-ai's default: VGG-style stages of 3x3 convolutions at 28, 14, 7 and 3 px, global average
    pooling, one linear layer.

    Small on purpose, so that it trains in minutes on two CPU cores; the fourth stage, at 3x3 px, is where
    extra capacity costs least time (docs/experiments/classifier.md, "The sweep").
    """

    def __init__(self, n_classes: int, widths: tuple = (32, 64, 128, 256), depth: tuple = (2, 2, 2, 1),
                 dropout: float = 0.2):
        super().__init__()
        layers, c_in = [], 1
        for stage, (w, d) in enumerate(zip(widths, depth)):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(d):
                layers.append(conv_bn(c_in, w))
                c_in = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class OriginalMLP(nn.Module):
    """The original draw-ai recipe: 784-128-100-64 with BatchNorm (trained with Adam 3e-3)."""

    def __init__(self, n_classes: int):
        super().__init__()
        layers, sizes = [nn.Flatten()], [784, 128, 100, 64]
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DoodleNet(nn.Module):
    """The doodleNet recipe: conv 16-16-pool-32-32-pool-64-64-pool, dense 512 tanh (Adam, batch 256)."""

    def __init__(self, n_classes: int):
        super().__init__()
        def block(a, b):
            return [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64), nn.Flatten(),
                                      nn.Linear(64 * 3 * 3, 512), nn.Tanh())
        self.head = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


ARCHITECTURES = {"cnn": DoodleCNN, "mlp": OriginalMLP, "doodlenet": DoodleNet}


def build_model(arch: str, n_classes: int, arch_kwargs: dict | None = None) -> nn.Module:
    return ARCHITECTURES[arch](n_classes, **(arch_kwargs or {}))


def resolved_arch_kwargs(arch: str, arch_kwargs: dict | None = None) -> dict:
    """`arch_kwargs` with every default of the architecture filled in (JSON-ready), for the manifest: a saved
    model then describes its network fully and still loads after the defaults change."""
    params = inspect.signature(ARCHITECTURES[arch].__init__).parameters
    out = {name: p.default for name, p in params.items() if name not in ("self", "n_classes")
           and p.default is not inspect.Parameter.empty}
    out.update(arch_kwargs or {})
    return json.loads(json.dumps(out))  # tuples -> lists, as the file will hold them


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware; elsewhere autocast would emulate it, slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def mirror_probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities of a batch (N, 1, 28, 28), each the mean over the drawing and its mirror image
    (one forward pass of 2N): how every draw-ai prediction reads a drawing (`Classifier.probabilities`)."""
    p = F.softmax(model(torch.cat([x, x.flip(3)])).float(), dim=1)
    return (p[:len(x)] + p[len(x):]) / 2


class InferenceNet(nn.Module):
    """A model's layers as one flat list, each called by its `forward`: for one drawing the pass is short
    enough that nn.Module's call machinery (hooks, nested Sequentials) is a noticeable share of it
    (docs/benchmark.md, "Latency")."""

    def __init__(self, layers: list[nn.Module], head: nn.Module):
        super().__init__()
        self.layers, self.head = nn.ModuleList(layers), head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.forward(self.features(x))


def for_inference(model: nn.Module) -> InferenceNet:
    """A copy of `model` (features + head, as every draw-ai architecture) for prediction: every BatchNorm
    folded into the convolution or linear layer before it (in eval mode the same function, to float
    rounding, in fewer passes over memory), dropout left out, channels-last, one flat list of layers:
    a faster prediction of the same answers (docs/benchmark.md, "Latency")."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            layer, norm = seq[i], seq[i + 1]
            if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                seq[i], seq[i + 1] = torch.nn.utils.fusion.fuse_conv_bn_eval(layer, norm), nn.Identity()
            elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
                seq[i], seq[i + 1] = torch.nn.utils.fusion.fuse_linear_bn_eval(layer, norm), nn.Identity()
    layers = [m for m in model.features.modules()
              if not any(m.children()) and not isinstance(m, nn.Identity | nn.Dropout)]
    return InferenceNet(layers, model.head).to(memory_format=torch.channels_last)
