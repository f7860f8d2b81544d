"""VGG source models (thesis VGG track): building, loading weight files, recording layers, and
the fine-tuning transfer rule.

:class:`VGG` keeps torchvision's state-dict layout exactly (``features.<i>.*``,
``classifier.0/3/6.*``), so torchvision's weight files load with ``strict=True`` and ours load
into torchvision. Recorded layers are ``pool1``..``pool5`` (after each max-pooling) and ``fc6``,
``fc7`` (after the ReLU of ``classifier.0``/``classifier.3``) and ``fc8`` (the logits).

Variants: ``cifar=True`` (32×32 inputs: pool5 is 1×1×512 and feeds the classifier directly,
which is 512 → 512 → 512 → classes), ``vgg16_features`` (the vgg16 encoder without classifier,
e.g. SegNet weights) and ``vgg_tiny`` (a small CIFAR-style VGG for tests and the tiny config).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "VGG",
    "VGG_LAYERS",
    "build_vgg",
    "forward_layers",
    "input_size",
    "layer_names",
    "load_weights",
    "trainable_names",
    "transfer_vgg",
]

#: Every layer a VGG with classifier records, in forward order.
VGG_LAYERS: tuple[str, ...] = ("pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7", "fc8")

#: Architectures :func:`build_vgg` knows.
ARCHITECTURES: tuple[str, ...] = ("vgg16", "vgg16_bn", "vgg19", "vgg16_features", "vgg_tiny")

# Conv widths per layer, "M" = 2×2 max-pooling (torchvision's configurations "D" and "E").
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"] + [512, 512, 512, 512, "M"] * 2
_TINY = [8, "M", 16, "M", 16, 16, "M", 32, 32, "M", 32, 32, "M"]

# arch -> (conv configuration, batch norm, has classifier)
_SPECS: dict[str, tuple[list, bool, bool]] = {
    "vgg16": (_VGG16, False, True),
    "vgg16_bn": (_VGG16, True, True),
    "vgg19": (_VGG19, False, True),
    "vgg16_features": (_VGG16, False, False),
    "vgg_tiny": (_TINY, False, True),
}

# Index in ``classifier`` after which fc6/fc7/fc8 are recorded (the ReLUs, then the last Linear).
_FC_AT = {1: "fc6", 4: "fc7", 6: "fc8"}
_POOL_LAYERS = VGG_LAYERS[:5]
_MAX_LISTED = 20  # problems listed per kind in load_weights' error message


class VGG(nn.Module):
    """A VGG network with torchvision's parameter names; see the module docstring.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`.
    num_classes : int or None
        Size of ``fc8``; ignored (stored as ``None``) for ``vgg16_features``.
    cifar : bool
        32×32 inputs without the 7×7 average pooling and with a 512-wide classifier. Always true
        for ``vgg_tiny``. For ``vgg16_features`` it only sets :func:`input_size` and the
        classifier :func:`transfer_vgg` attaches.
    generator : torch.Generator or None
        Source of the initial weights (torchvision's scheme); ``None``: the global RNG.

    Attributes ``arch``, ``num_classes``, ``cifar`` and ``batch_norm`` describe the model, so
    that ``build_vgg(m.arch, m.num_classes, cifar=m.cifar)`` rebuilds its architecture.

    All ReLUs are out-of-place, so recorded layer outputs are never overwritten later in the pass.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int | None = 1000,
        *,
        cifar: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if arch not in _SPECS:
            raise ValueError(f"unknown VGG architecture {arch!r}; known: {list(ARCHITECTURES)}")
        cfg, batch_norm, has_classifier = _SPECS[arch]
        if has_classifier and (
            not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1
        ):
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.arch = arch
        self.batch_norm = batch_norm
        self.cifar = bool(cifar) or arch == "vgg_tiny"
        self.num_classes = num_classes if has_classifier else None
        self.features = _make_features(cfg, batch_norm)
        width = [v for v in cfg if v != "M"][-1]
        # torchvision pools any input to 7×7; CIFAR-style inputs reach pool5 at 1×1 already.
        self.avgpool = None if self.cifar else nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = None
        if has_classifier:
            flat = width if self.cifar else width * 7 * 7
            hidden = {"vgg_tiny": 64}.get(arch, width if self.cifar else 4096)
            self.classifier = nn.Sequential(
                _linear(flat, hidden),
                nn.ReLU(),
                nn.Dropout(0.5),
                _linear(hidden, hidden),
                nn.ReLU(),
                nn.Dropout(0.5),
                _linear(hidden, num_classes),
            )
        _init_weights(self, generator)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """``pool1``..``pool5``, plus ``fc6``..``fc8`` when the model has a classifier."""
        return VGG_LAYERS if self.classifier is not None else _POOL_LAYERS

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if self.avgpool is not None:
            return torch.flatten(self.avgpool(x), 1)
        if x.shape[-2:] != (1, 1):
            raise ValueError(
                f"{self.arch} (cifar-style) expects {input_size(self)}x{input_size(self)} inputs "
                f"(pool5 of 1x1), got pool5 of spatial size {tuple(x.shape[-2:])}"
            )
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, classes); for a features-only model the pool5 map (n, 512, h, w)."""
        x = self.features(x)
        if self.classifier is None:
            return x
        return self.classifier(self._flatten(x))

    def forward_layers(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Outputs of the named layers in one forward pass, in the order asked for.

        Pools have shape (n, c, h, w), fc layers (n, d). The pass stops after the last requested
        layer. The model's train/eval mode is left as it is (dropout acts only in train mode).
        ``layers=None``: all of :attr:`layer_names`.
        """
        valid = self.layer_names
        if isinstance(layers, str):
            raise TypeError(f"layers must be a sequence of layer names, got the string {layers!r}")
        layers = valid if layers is None else tuple(layers)
        unknown = [name for name in layers if name not in valid]
        if unknown:
            raise ValueError(
                f"unknown layer(s) {unknown} for {self.arch}; valid layers: {list(valid)}"
            )
        if not layers:
            return {}
        last = max(valid.index(name) for name in layers)
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        pools = 0
        for module in self.features:
            x = module(x)
            if isinstance(module, nn.MaxPool2d):
                name = _POOL_LAYERS[pools]
                pools += 1
                if name in wanted:
                    out[name] = x
                if valid.index(name) == last:
                    return {name: out[name] for name in layers}
        x = self._flatten(x)
        for index, module in enumerate(self.classifier):
            x = module(x)
            name = _FC_AT.get(index)
            if name in wanted:
                out[name] = x
            if name is not None and valid.index(name) == last:
                break
        return {name: out[name] for name in layers}

    def train(self, mode: bool = True) -> VGG:
        """Set train/eval mode, but keep frozen BatchNorm layers in eval mode.

        A BatchNorm layer whose affine parameters all have ``requires_grad=False`` counts as
        frozen: in train mode it would still update its running statistics, so its "frozen"
        normalisation would drift during fine-tuning.
        """
        super().train(mode)
        if mode:
            for module in self.features:
                if isinstance(module, nn.BatchNorm2d) and not any(
                    p.requires_grad for p in module.parameters()
                ):
                    module.eval()
        return self


def _linear(n_in: int, n_out: int) -> nn.Linear:
    # skip_init: no default initialisation (it would draw from the global RNG and is redone).
    return nn.utils.skip_init(nn.Linear, n_in, n_out)


def _make_features(cfg: list, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.utils.skip_init(nn.Conv2d, channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU())
        channels = v
    return nn.Sequential(*layers)


def _init_weights(module: nn.Module, generator: torch.Generator | None) -> None:
    """torchvision's VGG initialisation, drawing from ``generator`` (global RNG when None)."""
    for m in module.modules():
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


def build_vgg(
    arch: str, num_classes: int | None = 1000, *, cifar: bool = False, seed: int | None = None
) -> VGG:
    """A freshly initialised VGG (torchvision's initialisation scheme).

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`.
    num_classes : int
        Size of ``fc8``; ignored for ``vgg16_features``.
    cifar : bool
        32×32-input variant (see :class:`VGG`); ``vgg_tiny`` is always CIFAR-style.
    seed : int or None
        Weights drawn from a private generator seeded with ``seed`` (same seed, same weights;
        the global RNG is untouched); ``None`` draws from the global RNG.
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return VGG(arch, num_classes, cifar=cifar, generator=generator)


def layer_names(model: VGG) -> tuple[str, ...]:
    """``pool1``..``pool5``, plus ``fc6``..``fc8`` when ``model`` has a classifier."""
    return model.layer_names


def forward_layers(model: VGG, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` in one forward pass (see :meth:`VGG.forward_layers`).

    Raises ``ValueError`` listing the model's valid layers when a name is unknown.
    """
    return model.forward_layers(x, layers)


def input_size(model: VGG) -> int:
    """Side of the square input images: 224, or 32 for CIFAR-style models and ``vgg_tiny``."""
    return 32 if model.cifar else 224


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad``, in registration order."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


# --- weight files ------------------------------------------------------------------------------

_WEIGHT_NAME = re.compile(r"[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+")


def load_weights(
    model: VGG,
    weights: str | os.PathLike,
    *,
    remap: Mapping[str, str] | None = None,
    allow_download: bool = False,
) -> None:
    """Load pre-trained weights into ``model`` in place, checking every key and shape first.

    Parameters
    ----------
    model : VGG
        Target model. For a features-only model, ``classifier.*`` entries of the file are
        ignored, so full VGG16 weights can serve as an encoder.
    weights : str or os.PathLike
        A state-dict file (``.pt``/``.pth``; a plain state dict or a dict with a ``"state_dict"``
        entry), read with ``weights_only=True`` so that no pickled code runs; or a torchvision
        weight name such as ``"VGG16_Weights.IMAGENET1K_V1"`` (an existing file of that name
        wins). A weight name is read from the torch hub cache
        (``torch.hub.get_dir()/checkpoints/<file name of its URL>``) and downloaded there only
        when ``allow_download`` is true.
    remap : mapping of str to str, optional
        Renames the file's keys before loading: each entry maps an old key prefix to a new
        prefix (a full key is the special case of an exact rename); the longest matching prefix
        wins; entries mapping to ``""`` drop the keys they match (extra tensors in converted
        files). Prefixes should end with ``"."`` (``"features.1"`` also matches
        ``"features.10.weight"``). To strip a wrapper prefix, map each of its sub-prefixes,
        e.g. ``{"module.features.": "features.", "module.classifier.": "classifier."}``.
    allow_download : bool
        Whether a torchvision weight name missing from the cache may be downloaded.

    Raises
    ------
    FileNotFoundError
        The file does not exist, or a torchvision weight is neither cached nor downloadable
        (the message names the cache path to place the file at).
    ValueError
        The file cannot be read safely, or it does not fit the model: one message names the
        file and lists all missing keys, unexpected keys and shape mismatches.

    Missing ``*.num_batches_tracked`` entries (BatchNorm counters, absent from old files) keep
    the model's value rather than counting as missing.
    """
    state, origin = _read_weights(weights, allow_download)
    problems: list[str] = []
    if remap:
        state, problems = _remap(state, remap)
    if model.classifier is None:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state and key.endswith(".num_batches_tracked"):
            state[key] = value.clone()
    problems += _mismatches(state, expected)
    if problems:
        kind = f"{model.arch}{' (cifar)' if model.cifar and model.arch != 'vgg_tiny' else ''}"
        raise ValueError(
            f"weights {origin} do not fit a {kind} model"
            + (f" with {model.num_classes} classes" if model.num_classes else "")
            + (" (file keys after remap)" if remap else "")
            + ":\n  "
            + "\n  ".join(problems)
        )
    model.load_state_dict(state, strict=True)


def _read_weights(
    weights: str | os.PathLike, allow_download: bool
) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, description of where it came from)``."""
    if isinstance(weights, str) and _WEIGHT_NAME.fullmatch(weights) and not Path(weights).exists():
        return _read_torchvision_weights(weights, allow_download)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    return _state_dict_of(_safe_load(path), str(path)), f"file {path}"


def _safe_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for pickled code, RuntimeError/EOFError for junk
        raise ValueError(
            f"cannot read weights file {path} safely (weights_only=True): "
            f"{type(err).__name__}: {err}"
        ) from err


def _read_torchvision_weights(name: str, allow_download: bool) -> tuple[dict, str]:
    import torchvision

    try:
        weight = torchvision.models.get_weight(name)
    except Exception as err:  # get_weight raises ValueError or KeyError depending on the part
        raise ValueError(f"unknown torchvision weight {name!r}: {err}") from err
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weight.url).name
    if cached.is_file():
        return _state_dict_of(_safe_load(cached), str(cached)), f"{name} ({cached})"
    if not allow_download:
        raise FileNotFoundError(
            f"torchvision weight {name} is not in the torch hub cache: expected {cached}. "
            f"Download {weight.url} to that path (or set TORCH_HOME to a directory holding "
            "checkpoints/ with it), give the path of a weights file instead, or allow downloads"
        )
    state = weight.get_state_dict(
        progress=False, check_hash=True, map_location="cpu", weights_only=True
    )
    return _state_dict_of(state, weight.url), f"{name} (downloaded to {cached})"


def _state_dict_of(blob: object, origin: str) -> dict[str, torch.Tensor]:
    if isinstance(blob, Mapping) and isinstance(blob.get("state_dict"), Mapping):
        blob = blob["state_dict"]
    if not isinstance(blob, Mapping):
        raise ValueError(
            f"weights file {origin} holds a {type(blob).__name__}, expected a state dict "
            "(or a dict with a 'state_dict' entry)"
        )
    bad = sorted(str(k) for k, v in blob.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ValueError(
            f"weights file {origin} is not a state dict: entries {_listed(bad)} are not tensors"
        )
    return dict(blob)


def _remap(
    state: dict[str, torch.Tensor], remap: Mapping[str, str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keys renamed by the longest matching prefix; ``""`` drops. Also lists key collisions."""
    prefixes = sorted(remap, key=len, reverse=True)
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    collisions = []
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is not None:
            if remap[prefix] == "":
                continue
            new = remap[prefix] + key[len(prefix) :]
        else:
            new = key
        if new in renamed:
            collisions.append(f"{origin[new]} and {key} -> {new}")
            continue
        renamed[new] = value
        origin[new] = key
    problems = (
        [f"keys renamed onto the same key: {_listed(sorted(collisions))}"] if collisions else []
    )
    return renamed, problems


def _mismatches(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> list:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} in file, {tuple(expected[k].shape)} in model"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys (in model, not in file): {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys (in file, not in model): {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listed(shapes)}")
    return problems


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown}, ... and {more} more ({len(items)} in all)" if more > 0 else shown


# --- fine-tuning -------------------------------------------------------------------------------


def transfer_vgg(source: VGG, num_classes: int, *, head_seed: int) -> VGG:
    """A fine-tuning model: ``source``'s conv layers, a new classifier, all but the last conv
    layer frozen (thesis VGG track).

    Parameters
    ----------
    source : VGG
        Pre-trained model; left unchanged (its features are copied). A features-only source
        (``vgg16_features``) gets the classifier of the full architecture (``vgg16``).
    num_classes : int
        Classes of the target dataset (size of the new ``fc8``).
    head_seed : int
        Seed of the new classifier's initialisation (the global RNG is untouched).

    Returns
    -------
    VGG
        On the CPU, in train mode. Only the last ``Conv2d`` of ``features`` (and, for
        ``vgg16_bn``, the BatchNorm right after it, as part of that layer) and the classifier
        have ``requires_grad``. The other BatchNorm layers stay in eval mode whenever the model
        is put in train mode (:meth:`VGG.train`), so their running statistics stay frozen too.
    """
    arch = "vgg16" if source.arch == "vgg16_features" else source.arch
    model = build_vgg(arch, num_classes, cifar=source.cifar, seed=head_seed)
    model.features.load_state_dict(source.features.state_dict(), strict=True)
    last = max(i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d))
    trainable = {last}
    if isinstance(model.features[last + 1], nn.BatchNorm2d):
        trainable.add(last + 1)
    for index, module in enumerate(model.features):
        for p in module.parameters():
            p.requires_grad_(index in trainable)
    return model.train()


def head_classes(
    weights: str | os.PathLike,
    *,
    remap: Mapping[str, str] | None = None,
    allow_download: bool = False,
) -> int | None:
    """Number of classes of the source head in a weights file (rows of ``classifier.6.weight``
    after ``remap``), or None for encoder-only files: the head a model must be built with to
    load the file. Reads the file once more than :func:`load_weights`; sources are loaded once
    per run, so the simplicity is worth it."""
    state, _ = _read_weights(weights, allow_download)
    if remap:
        state, _ = _remap(state, remap)
    head = state.get("classifier.6.weight")
    return None if head is None else int(head.shape[0])
