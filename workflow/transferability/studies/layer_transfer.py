"""Layer transfer after Yosinski et al. 2014 (Shanmugam et al. §5): target models whose first n
layers come from a base model — A (trained on another task) or B (trained on the target
itself) — and whose remaining layers are re-initialised; the copied layers are frozen or
fine-tuned.

The four variants of the paper: ``AnB_frozen``, ``AnB_ft``, ``BnB_frozen``, ``BnB_ft``. For the
thesis CNN the layers with weights, in forward order, are ``conv1 conv2 fc1 fc2``; n = 4 copies
the whole network and needs a base with the target's number of classes (B always has it), so
``BnB`` with n = 4 is B itself (the paper's control that copying alone changes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from transferability.models.thesis_cnn import ThesisCNN, build_cnn

#: Layers with weights, in forward order: n = 1 … 4 copies the first n of them.
TRANSFER_LAYERS: tuple[str, ...] = ("conv1", "conv2", "fc1", "fc2")
VARIANTS: tuple[str, ...] = ("AnB_frozen", "AnB_ft", "BnB_frozen", "BnB_ft")


def parse_variant(variant: str) -> tuple[str, bool]:
    """``"AnB_frozen"`` → ``("A", True)``: which base model, and whether copied layers freeze."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown layer-transfer variant {variant!r}; known: {list(VARIANTS)}")
    return variant[0], variant.endswith("_frozen")


def build_layer_transfer(
    base: Mapping[str, torch.Tensor] | ThesisCNN,
    num_classes: int,
    n: int,
    *,
    frozen: bool,
    seed: int,
) -> ThesisCNN:
    """A target CNN: layers ``TRANSFER_LAYERS[:n]`` copied from ``base`` (frozen when
    ``frozen``), the others freshly initialised from ``seed`` (:func:`models.build_cnn`).

    Raises ``ValueError`` for n outside 1 … 4, or n = 4 with a base of another class count.
    """
    if not 1 <= n <= len(TRANSFER_LAYERS):
        raise ValueError(f"n must be in 1 … {len(TRANSFER_LAYERS)}, got {n}")
    state = base.state_dict() if isinstance(base, ThesisCNN) else base
    base_classes = state["fc2.weight"].shape[0]
    if n == len(TRANSFER_LAYERS) and base_classes != num_classes:
        raise ValueError(
            f"n = {n} copies fc2, but the base has {base_classes} classes and the target "
            f"{num_classes}"
        )
    model = build_cnn(num_classes, seed)
    copied = TRANSFER_LAYERS[:n]
    with torch.no_grad():
        for name in copied:
            layer = getattr(model, name)
            layer.weight.copy_(state[f"{name}.weight"])
            layer.bias.copy_(state[f"{name}.bias"])
            layer.weight.requires_grad_(not frozen)
            layer.bias.requires_grad_(not frozen)
    return model
