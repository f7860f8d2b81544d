"""The thesis's small CNN (thesis §2.1.1, SPEC §6.1): the network, with access to every named
layer in one pass, and its family: 28 × 28 grey inputs, layers ``input conv1 pool1 conv2 pool2
fc1 fc2`` (``fc2`` = logits)."""

from __future__ import annotations

import torch
from torch import nn

from transferability.models.base import Family
from transferability.models.layers import CNN_LAYERS
from transferability.models.spec import InputSpec, ModelError, ModelSpec

__all__ = ["CNN_LAYERS", "ThesisCNN", "ThesisCNNFamily", "build_cnn", "check_layers"]


class ThesisCNN(nn.Module):
    """conv3x3(32) → ReLU → maxpool2 → conv3x3(64) → ReLU → maxpool2 → flatten(1600) →
    dropout 0.25 → fc 128 → ReLU → dropout 0.5 → fc ``num_classes``.

    ``forward`` returns logits; :meth:`forward_layers` returns every named layer's output
    (post-ReLU where a ReLU follows; ``fc2`` are the logits).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(1600, 128)
        self.drop2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, num_classes)

    def forward_layers(self, x: torch.Tensor, layers: tuple[str, ...] | None = None):
        """Named layer outputs as a dict: all of them, or only ``layers`` — then the pass stops
        after the last requested one."""
        last = len(CNN_LAYERS) - 1 if layers is None else max(map(CNN_LAYERS.index, layers))
        out: dict[str, torch.Tensor] = {"input": x}
        stages = (
            lambda h: torch.relu(self.conv1(h)),
            self.pool,
            lambda h: torch.relu(self.conv2(h)),
            self.pool,
            lambda h: torch.relu(self.fc1(self.drop1(h.flatten(1)))),
            lambda h: self.fc2(self.drop2(h)),
        )
        for name, stage in zip(CNN_LAYERS[1 : last + 1], stages[:last], strict=True):
            x = out[name] = stage(x)
        if layers is None:
            return out
        return {name: out[name] for name in layers}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(self.drop1(x.flatten(1))))
        return self.fc2(self.drop2(x))


def build_cnn(num_classes: int, seed: int) -> ThesisCNN:
    """A fresh CNN whose weights depend only on ``seed`` (and ``num_classes`` for fc2)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return ThesisCNN(num_classes)
    finally:
        torch.random.set_rng_state(generator_state)


def check_layers(layers: list[str] | tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming unknown layer names and listing the known ones."""
    unknown = [name for name in layers if name not in CNN_LAYERS]
    if unknown:
        raise ValueError(f"unknown CNN layer(s) {unknown}; known layers: {list(CNN_LAYERS)}")


class ThesisCNNFamily(Family):
    architectures = ("thesis_cnn",)

    def _construct(self, spec: ModelSpec, generator: torch.Generator) -> nn.Module:
        if spec.num_classes is None or spec.cifar:
            raise ModelError("the thesis CNN always has a classifier and no CIFAR variant")
        # ThesisCNN draws from the global RNG, which build() has seeded: the same weights as
        # models.build_cnn(num_classes, seed).
        return ThesisCNN(spec.num_classes)

    def layer_names(self, model: nn.Module) -> tuple[str, ...]:
        return CNN_LAYERS

    def default_layers(self, model: nn.Module) -> tuple[str, ...]:
        return CNN_LAYERS

    def head_layer(self, model: nn.Module) -> str | None:
        return "fc2"

    def _forward_layers(
        self, model: nn.Module, x: torch.Tensor, layers: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        return model.forward_layers(x, layers)

    def input_spec(self, spec: ModelSpec, weights: str | None = None) -> InputSpec:
        from transferability.data.transforms import PIXEL_MEAN, PIXEL_STD

        return InputSpec(crop=28, resize=28, mean=(PIXEL_MEAN,), std=(PIXEL_STD,), channels=1)

    def head_prefixes(self, spec: ModelSpec) -> tuple[str, ...]:
        return ("fc2.",)

    def head_module(self, spec: ModelSpec) -> str:
        return "fc2"
