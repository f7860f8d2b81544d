"""One model interface for every track (thesis CNN, VGGs, any torchvision classification
architecture, any timm model as ``timm/<name>``): build or load a model, list and record its
layers, give its input transform, and build the fine-tuning model under a named policy.

A model built here carries its :class:`ModelSpec` as ``model.spec``; checkpoints store the spec
in their metadata (``model.spec.meta()``), so :func:`model_from_checkpoint` rebuilds any of
them. Families: :mod:`~transferability.models.thesis_cnn`,
:mod:`~transferability.models.torchvision_family`,
:mod:`~transferability.models.timm_family`; policies:
:mod:`~transferability.models.policies`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from transferability.models.base import Family, describe
from transferability.models.policies import (
    POLICIES,
    apply_policy,
    train_mode,
    trainable_names,
    transferred_keys,
)
from transferability.models.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputSpec,
    ModelError,
    ModelSpec,
)
from transferability.models.thesis_cnn import ThesisCNNFamily
from transferability.models.timm_family import TIMM_TESTED, TimmFamily
from transferability.models.torchvision_family import TORCHVISION_TESTED, TorchvisionFamily

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "POLICIES", "TIMM_TESTED", "TORCHVISION_TESTED", "InputSpec",
    "ModelError", "ModelSpec", "architectures", "build_model", "default_layers", "family_of",
    "finetune_model", "forward_layers", "head_classes", "head_layer", "input_spec", "layer_names",
    "load_model", "model_from_checkpoint", "model_inputs", "train_mode", "trainable_names",
]  # fmt: skip

_FAMILIES: tuple[Family, ...] = (ThesisCNNFamily(), TorchvisionFamily(), TimmFamily())


def architectures() -> tuple[str, ...]:
    """Every architecture name a spec may use, besides ``timm/<name>`` for any timm model
    (``timm.list_models()``)."""
    return tuple(a for family in _FAMILIES for a in family.architectures) + ("vgg16_features",)


def family_of(spec_or_model: ModelSpec | nn.Module | str) -> Family:
    """The family that builds an architecture (a spec, a model built here, or a name)."""
    if isinstance(spec_or_model, nn.Module):
        spec_or_model = spec_or_model.spec
    arch = spec_or_model.arch if isinstance(spec_or_model, ModelSpec) else str(spec_or_model)
    arch = ModelSpec.create(arch).arch
    for family in _FAMILIES:
        if family.builds(arch):
            return family
    raise ModelError(
        f"unknown architecture {arch!r}; known: {sorted(architectures())}, "
        "or timm/<name> for a timm model"
    )


def build_model(spec: ModelSpec, seed: int | None = None) -> nn.Module:
    """A freshly initialised model of ``spec`` whose weights depend only on ``seed``."""
    return family_of(spec).build(spec, seed)


def head_classes(
    spec: ModelSpec,
    weights: str | os.PathLike,
    *,
    remap: Mapping[str, str] | None = None,
    allow_download: bool = False,
) -> int | None:
    """Classes of the head in a weight file (after ``remap``); None for an encoder-only file."""
    family = family_of(spec)
    state, _ = family.read_state(spec, str(weights), remap, allow_download)
    return family.head_classes(state, spec)


def load_model(
    spec: ModelSpec,
    weights: str | os.PathLike,
    *,
    remap: Mapping[str, str] | None = None,
    allow_download: bool = False,
    seed: int = 0,
    encoder: bool = False,
) -> nn.Module:
    """``spec``'s model with the weights of a file (a state dict or ``.safetensors``), a
    torchvision weight name (from the local torch hub cache; downloaded only when
    ``allow_download``), ``"pretrained"`` for a timm model (its tag's weights from the local
    Hugging Face cache, likewise) or ``"random"`` (seeded
    initialisation). The head's size comes from the file (``spec.num_classes`` only says
    whether there is one: a file without head, ``encoder=True`` or a spec without classes give
    an encoder, whose file's head entries are ignored); every
    key and shape is checked before loading."""
    family = family_of(spec)
    encoder = encoder or spec.num_classes is None  # an encoder spec (vgg16_features) stays one
    if str(weights) == "random":
        return family.build(spec.with_classes(None) if encoder else spec, seed)
    state, origin = family.read_state(spec, str(weights), remap, allow_download)
    classes = None if encoder else family.head_classes(state, spec)
    model = family.build(spec.with_classes(classes), 0)
    family.load_state(model, state, origin, remapped=bool(remap))
    return model


def layer_names(model: nn.Module) -> tuple[str, ...]:
    """Every layer name :func:`forward_layers` accepts for ``model``."""
    return family_of(model).layer_names(model)


def default_layers(model: nn.Module) -> tuple[str, ...]:
    """The layers recorded when a configuration names none."""
    return family_of(model).default_layers(model)


def head_layer(model: nn.Module) -> str | None:
    """The layer whose outputs are the logits of ``model``'s head (None: an encoder)."""
    return family_of(model).head_layer(model)


def forward_layers(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` in one forward pass that stops after the last requested one; the
    model's train/eval mode is left as it is. Unknown names raise, listing the valid ones."""
    return family_of(model).forward_layers(model, x, layers)


def input_spec(spec: ModelSpec, weights: str | None = None) -> InputSpec:
    """Resize, crop, interpolation and normalisation of ``spec``'s inputs (a torchvision weight
    name: its own transform's metadata; a timm model: its pretrained config; nothing
    downloaded)."""
    return family_of(spec).input_spec(spec, weights)


def finetune_model(
    source: nn.Module, num_classes: int, policy: str, *, head_seed: int
) -> nn.Module:
    """The model fine-tuned on a target with ``num_classes`` classes: built with ``head_seed``,
    the source's weights copied as ``policy`` says, frozen as it says, in :func:`train_mode`.
    ``source`` is left unchanged. An encoder-only source gets its architecture's head."""
    family = family_of(source)
    spec = source.spec.with_classes(num_classes)
    model = family.build(spec, head_seed)
    head = family.head_module(spec)
    keys = transferred_keys(model, policy, head)
    state = source.state_dict()
    target = model.state_dict()
    missing = [k for k in keys if k not in state]
    shapes = [k for k in keys if k in state and state[k].shape != target[k].shape]
    if missing or shapes:
        raise ModelError(
            f"the {describe(source.spec)} source cannot give policy {policy!r} its weights: "
            + (f"missing {missing[:5]} " if missing else "")
            + (f"shapes differ for {shapes[:5]}" if shapes else "")
        )
    model.load_state_dict({k: state[k] for k in keys}, strict=False)
    return apply_policy(model, policy, head)


def model_from_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """``(model in eval mode, metadata)`` of a checkpoint written by the workflow."""
    from transferability.artifacts import load_checkpoint

    state, meta = load_checkpoint(Path(path))
    spec = ModelSpec.from_meta(meta)
    family = family_of(spec)
    model = family.build(spec, 0)
    family.load_state(model, state, f"checkpoint {path}")
    return model.eval(), meta


def model_inputs(
    spec: ModelSpec,
    resize: int | None = None,
    crop: int | None = None,
    *,
    weights: str | None = None,
) -> InputSpec:
    """The images ``spec``'s model takes (:func:`input_spec`: its statistics, interpolation and
    sizes) with the configured ``resize`` and ``crop`` where given (``config.image_transforms``,
    ``transferability rank --resize/--crop``; None leaves a timm model its own). A crop other
    than the model's own is resized to itself unless ``resize`` is given."""
    from dataclasses import replace

    own = input_spec(spec, weights)
    crop = crop or own.crop
    return replace(own, resize=resize or (own.resize if crop == own.crop else crop), crop=crop)
