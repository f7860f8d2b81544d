"""The thesis's small CNN (:class:`transferability.models.ThesisCNN`) as a family: 28 × 28 grey
inputs, layers ``input conv1 pool1 conv2 pool2 fc1 fc2`` (``fc2`` = logits)."""

from __future__ import annotations

import torch
from torch import nn

from transferability.families.base import Family
from transferability.families.spec import InputSpec, ModelError, ModelSpec
from transferability.layers import CNN_LAYERS
from transferability.models import ThesisCNN

__all__ = ["ThesisCNNFamily"]


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
        from transferability.training import PIXEL_MEAN, PIXEL_STD

        return InputSpec(crop=28, resize=28, mean=(PIXEL_MEAN,), std=(PIXEL_STD,), channels=1)

    def head_prefixes(self, spec: ModelSpec) -> tuple[str, ...]:
        return ("fc2.",)

    def head_module(self, spec: ModelSpec) -> str:
        return "fc2"
