"""torchvision's classification architectures as a family: built by name with
``torchvision.models.get_model`` (no weights are fetched), layers addressed by the node names of
``torchvision.models.feature_extraction`` (or the name of a module, meaning its output), plus
friendly names:

* every architecture: ``penultimate`` (what the classifier head receives — the pooled features
  the peers rank with) and ``logits`` (the head's output; absent for an encoder);
* VGGs: the thesis's ``pool1``..``pool5`` (after each max-pooling) and ``fc6``, ``fc7`` (after the
  ReLUs of the classifier), ``fc8`` (= logits).

Default layers: the stage outputs (ResNet ``layer1..4``, RegNet's ``trunk_output`` blocks,
DenseNet's dense blocks, ViT's encoder layers at each quarter, and for ``features`` trunks
(MobileNet, EfficientNet, ConvNeXt) the last block at each spatial resolution) plus
``penultimate``; VGGs ``pool1``..``pool5``, ``fc6``, ``fc7``.

VGG variants kept from the thesis: ``cifar`` (32 × 32 inputs, pool5 of 1 × 1 feeds a 512-wide
classifier directly: CIFAR-10 VGG-19), encoder-only (``num_classes=None``: SegNet's encoder),
and ``vgg_tiny`` (a small CIFAR-style VGG for tests). VGGs are initialised with torchvision's
scheme drawing from a private generator, so a seed gives the same weights as before this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch
from torch import nn

from transferability.models.base import Family
from transferability.models.layers import TESTED_ARCHITECTURES
from transferability.models.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputSpec,
    ModelError,
    ModelSpec,
)

__all__ = ["TORCHVISION_TESTED", "TorchvisionFamily", "VGG_ARCHS"]

#: VGG configurations (conv widths, "M" = 2 × 2 max-pooling) and whether they use BatchNorm.
_TINY = [8, "M", 16, "M", 16, 16, "M", 32, 32, "M", 32, 32, "M"]
VGG_ARCHS: dict[str, tuple[str | list, bool]] = {
    "vgg11": ("A", False), "vgg11_bn": ("A", True), "vgg13": ("B", False),
    "vgg13_bn": ("B", True), "vgg16": ("D", False), "vgg16_bn": ("D", True),
    "vgg19": ("E", False), "vgg19_bn": ("E", True), "vgg_tiny": (_TINY, False),
}  # fmt: skip
#: The torchvision architectures the test suite builds, saves, loads and fine-tunes one by one.
TORCHVISION_TESTED: tuple[str, ...] = tuple(
    a for a in TESTED_ARCHITECTURES if a not in ("thesis_cnn", "vgg_tiny", "vgg16_features")
)
_VGG_NAMED = {"fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}
# Families whose image size is part of the architecture (positional embeddings).
_NEEDS_IMAGE_SIZE = ("vit_",)


@cache
def _classification_models() -> tuple[str, ...]:
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


class TorchvisionFamily(Family):
    @property
    def architectures(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(sorted({*_classification_models(), *VGG_ARCHS}))

    # --- building ------------------------------------------------------------------------------

    def _construct(self, spec: ModelSpec, generator: torch.Generator) -> nn.Module:
        if spec.arch in VGG_ARCHS:
            return _vgg(spec, generator)
        if spec.cifar:
            raise ModelError(f"cifar is a VGG variant; {spec.arch} takes image_size instead")
        import torchvision

        kwargs = {"num_classes": spec.num_classes or 1000}
        if spec.arch.startswith(_NEEDS_IMAGE_SIZE):
            kwargs["image_size"] = spec.image_size or 224
        try:
            model = torchvision.models.get_model(spec.arch, weights=None, **kwargs)
        except (ValueError, TypeError, AssertionError) as err:
            raise ModelError(f"cannot build {spec.arch} with {kwargs}: {err}") from err
        if spec.num_classes is None:  # an encoder: the head's input is the output
            _set_module(model, _head_name(model), nn.Identity())
        return model

    def input_spec(self, spec: ModelSpec, weights: str | None = None) -> InputSpec:
        """The weight enum's own transform for torchvision weight names (read from its metadata,
        nothing is downloaded); else ``image_size`` (resize = crop), 32 × 32 for CIFAR VGGs,
        else ImageNet's 256 → 224."""
        if weights is not None and _is_weight_name(weights):
            import torchvision

            preset = torchvision.models.get_weight(weights).transforms()
            return InputSpec(
                crop=int(preset.crop_size[0]),
                resize=int(preset.resize_size[0]),
                mean=tuple(preset.mean),
                std=tuple(preset.std),
                fixed_size=spec.arch.startswith(_NEEDS_IMAGE_SIZE),
            )
        cifar = spec.cifar or spec.arch == "vgg_tiny"
        fixed = cifar or spec.arch.startswith(_NEEDS_IMAGE_SIZE)
        side = spec.image_size or (32 if cifar else None)
        if side is not None:
            return InputSpec(
                crop=side, resize=side, mean=IMAGENET_MEAN, std=IMAGENET_STD, fixed_size=fixed
            )
        return InputSpec(
            crop=224, resize=256, mean=IMAGENET_MEAN, std=IMAGENET_STD, fixed_size=fixed
        )

    # --- heads --------------------------------------------------------------------------------

    def head_prefixes(self, spec: ModelSpec) -> tuple[str, ...]:
        if spec.arch in VGG_ARCHS:
            return ("classifier.",)
        return (self.head_module(spec) + ".",)

    def head_module(self, spec: ModelSpec) -> str:
        if spec.arch in VGG_ARCHS:
            return "classifier.6"
        return _head_name_of(spec.arch, spec.image_size)

    def head_layer(self, model: nn.Module) -> str | None:
        return None if model.spec.num_classes is None else "logits"

    # --- layers -------------------------------------------------------------------------------

    def layer_names(self, model: nn.Module) -> tuple[str, ...]:
        return tuple(_graph(model).names)

    def default_layers(self, model: nn.Module) -> tuple[str, ...]:
        spec: ModelSpec = model.spec
        if spec.arch in VGG_ARCHS:
            pools = tuple(f"pool{i}" for i in range(1, 6))
            return pools if spec.num_classes is None else (*pools, "fc6", "fc7")
        return (*_stages(model), "penultimate")

    def _forward_layers(
        self, model: nn.Module, x: torch.Tensor, layers: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        graph = _graph(model)
        nodes = {name: graph.node_of(name) for name in layers}
        with _modes_kept(model):  # train() recurses into the model's (shared) sub-modules
            extractor = graph.extractor(tuple(sorted(set(nodes.values()))))
            extractor.train(model.training)  # picks the train or eval graph
        out = extractor(x)
        return {name: out[nodes[name]] for name in layers}


# --- VGG ---------------------------------------------------------------------------------------


def _vgg(spec: ModelSpec, generator: torch.Generator) -> nn.Module:
    from torchvision.models.vgg import VGG, cfgs, make_layers

    config, batch_norm = VGG_ARCHS[spec.arch]
    cfg = cfgs[config] if isinstance(config, str) else config
    cifar = spec.cifar or spec.arch == "vgg_tiny"
    model = VGG(
        make_layers(cfg, batch_norm=batch_norm),
        num_classes=spec.num_classes or 1000,
        init_weights=False,
    )
    width = [v for v in cfg if v != "M"][-1]
    if cifar:  # pool5 is 1 × 1 at 32 × 32: no 7 × 7 pooling, a classifier as wide as pool5
        model.avgpool = nn.Identity()
        hidden = 64 if spec.arch == "vgg_tiny" else width
        model.classifier = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(hidden, spec.num_classes or 1000),
        )  # fmt: skip
    if spec.num_classes is None:
        model.avgpool, model.classifier = nn.Identity(), nn.Identity()
    _init_vgg(model, generator)
    return model


def _init_vgg(model: nn.Module, generator: torch.Generator) -> None:
    """torchvision's VGG initialisation, drawing from ``generator`` in module order."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(
                m.weight, mode="fan_out", nonlinearity="relu", generator=generator
            )
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01, generator=generator)
            nn.init.zeros_(m.bias)


# --- heads and graph --------------------------------------------------------------------------


def _head_name(model: nn.Module) -> str:
    """The classifier head: the last ``nn.Linear`` in module order (every torchvision
    classification architecture ends with one)."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ModelError(f"{type(model).__name__} has no nn.Linear head")
    return names[-1]


@cache
def _head_name_of(arch: str, image_size: int | None) -> str:
    import torchvision

    kwargs = {"image_size": image_size or 224} if arch.startswith(_NEEDS_IMAGE_SIZE) else {}
    with torch.random.fork_rng(devices=[]):  # a real build draws from the global RNG
        try:
            with torch.device("meta"):
                model = torchvision.models.get_model(arch, weights=None, **kwargs)
        except (NotImplementedError, RuntimeError):  # RegNet computes its widths with .tolist()
            model = torchvision.models.get_model(arch, weights=None, **kwargs)
    return _head_name(model)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _is_weight_name(weights: str) -> bool:
    from transferability.models.weights import is_weight_name

    return is_weight_name(weights)


class _Graph:
    """The traced eval-mode graph of one model: node names, friendly names, extractors."""

    def __init__(self, model: nn.Module) -> None:
        from torchvision.models.feature_extraction import get_graph_node_names

        self.model = model
        _, nodes = get_graph_node_names(model)
        self.nodes = [n for n in nodes if n != "x"]
        spec: ModelSpec = model.spec
        self.alias: dict[str, str] = {}
        if spec.arch in VGG_ARCHS:
            pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
            self.alias.update({f"pool{k + 1}": f"features.{i}" for k, i in enumerate(pools)})
            if spec.num_classes is not None:
                self.alias.update(_VGG_NAMED)
        if spec.num_classes is not None:
            head = _head_name(model)
            traced, qualname = _tracer_graph(model)
            node = next(n for n in traced.nodes if n.op == "call_module" and n.target == head)
            self.alias["penultimate"] = qualname[node.args[0]]
            self.alias["logits"] = qualname[node]
        else:
            self.alias["penultimate"] = self.nodes[-1]
        modules = {name for name, _ in model.named_modules() if name}
        # a module name stands for its last node (feature_extraction's own rule)
        self.modules = [m for m in modules if any(n.startswith(m + ".") for n in self.nodes)]
        ordered_modules = sorted(
            self.modules,
            key=lambda m: max(
                i for i, n in enumerate(self.nodes) if n == m or n.startswith(m + ".")
            ),
        )
        self.names = [
            *self.alias,
            *[m for m in ordered_modules if m not in self.nodes],
            *self.nodes,
        ]
        self._extractors: dict[tuple[str, ...], nn.Module] = {}

    def node_of(self, name: str) -> str:
        return self.alias.get(name, name)

    def extractor(self, nodes: tuple[str, ...]) -> nn.Module:
        if nodes not in self._extractors:
            from torchvision.models.feature_extraction import create_feature_extractor

            self._extractors[nodes] = create_feature_extractor(self.model, {n: n for n in nodes})
        return self._extractors[nodes]


def _tracer_graph(model: nn.Module):
    """The eval-mode FX graph with feature_extraction's node names (its own tracer)."""
    from torchvision.models.feature_extraction import NodePathTracer

    was_training = model.training
    model.eval()
    try:
        tracer = NodePathTracer()
        return tracer.trace(model), tracer.node_to_qualname
    finally:
        model.train(was_training)


@contextmanager
def _modes_kept(model: nn.Module) -> Iterator[None]:
    """Restore every sub-module's train/eval flag on exit: torchvision's feature extraction
    calls ``train()``/``eval()`` on the whole model, which would undo :func:`train_mode`'s
    frozen sub-modules in eval mode."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def _graph(model: nn.Module) -> _Graph:
    graph = model.__dict__.get("_layer_graph")
    if graph is None:
        with _modes_kept(model):  # tracing switches every sub-module to train, then eval
            graph = _Graph(model)
        model.__dict__["_layer_graph"] = graph  # not a submodule: not in state_dict or modules()
    return graph


def _stages(model: nn.Module) -> list[str]:
    """Stage outputs of the common torchvision trunks (see the module docstring)."""
    children = dict(model.named_children())
    if "layer1" in children:  # ResNet, ResNeXt, Wide ResNet
        return [f"layer{i}" for i in range(1, 5) if f"layer{i}" in children]
    if "trunk_output" in children:  # RegNet
        return [f"trunk_output.{n}" for n, _ in model.trunk_output.named_children()]
    if "encoder" in children and hasattr(model.encoder, "layers"):  # ViT
        names = [f"encoder.layers.{n}" for n, _ in model.encoder.layers.named_children()]
        quarter = max(1, len(names) // 4)
        return names[quarter - 1 :: quarter]
    features = children.get("features")
    if isinstance(features, nn.Sequential):
        blocks = [n for n, _ in features.named_children()]
        if any(n.startswith("denseblock") for n in blocks):  # DenseNet
            return [f"features.{n}" for n in blocks if n.startswith("denseblock")]
        return _last_block_per_resolution(model, [f"features.{n}" for n in blocks])
    return []


def _last_block_per_resolution(model: nn.Module, blocks: list[str]) -> list[str]:
    from torchvision.models.feature_extraction import create_feature_extractor

    size = model.spec.image_size or 64
    with _modes_kept(model), torch.no_grad():
        extractor = create_feature_extractor(model, {b: b for b in blocks}).eval()
        shapes = {
            k: tuple(v.shape[-2:]) for k, v in extractor(torch.zeros(1, 3, size, size)).items()
        }
    return [
        b
        for b, nxt in zip(blocks, [*blocks[1:], None], strict=True)
        if nxt is None or shapes[nxt] != shapes[b]
    ]
