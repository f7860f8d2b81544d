"""Weight files: a ``.safetensors`` file (no code at all) or a state-dict file read with
``weights_only=True`` (no pickled code runs), a torchvision weight name read from the local
torch hub cache (downloaded only when allowed), key remapping for converted files, and the
listing of every key and shape that does not fit."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["MAX_LISTED", "mismatches", "read_weights", "remap_keys", "safe_load"]

MAX_LISTED = 20  # problems listed per kind in an error message

_WEIGHT_NAME = re.compile(r"[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+")


def read_weights(
    weights: str | os.PathLike, allow_download: bool
) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, description of where it came from)``."""
    if isinstance(weights, str) and _WEIGHT_NAME.fullmatch(weights) and not Path(weights).exists():
        return read_torchvision_weights(weights, allow_download)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    return _state_dict_of(safe_load(path), str(path)), f"file {path}"


def safe_load(path: Path) -> object:
    """A weight file's content: ``.safetensors`` by its own reader (a flat name → tensor
    mapping), anything else by ``torch.load(weights_only=True)``."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(
                f"cannot read safetensors file {path}: {type(err).__name__}: {err}"
            ) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for pickled code, RuntimeError/EOFError for junk
        raise ValueError(
            f"cannot read weights file {path} safely (weights_only=True): "
            f"{type(err).__name__}: {err}"
        ) from err


def read_torchvision_weights(name: str, allow_download: bool) -> tuple[dict, str]:
    import torchvision

    try:
        weight = torchvision.models.get_weight(name)
    except Exception as err:  # get_weight raises ValueError or KeyError depending on the part
        raise ValueError(f"unknown torchvision weight {name!r}: {err}") from err
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weight.url).name
    if cached.is_file():
        return _state_dict_of(safe_load(cached), str(cached)), f"{name} ({cached})"
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
            f"weights file {origin} is not a state dict: entries {listed(bad)} are not tensors"
        )
    return dict(blob)


def remap_keys(
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
        [f"keys renamed onto the same key: {listed(sorted(collisions))}"] if collisions else []
    )
    return renamed, problems


def mismatches(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> list:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} in file, {tuple(expected[k].shape)} in model"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys (in model, not in file): {listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys (in file, not in model): {listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {listed(shapes)}")
    return problems


def listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return f"{shown}, ... and {more} more ({len(items)} in all)" if more > 0 else shown


def weight_accuracy(name: str) -> float | None:
    """A torchvision weight's top-1 accuracy on the dataset it was trained on (its metadata's
    first ``_metrics`` entry, e.g. ImageNet-1K acc@1) as a fraction; None when not recorded."""
    import torchvision

    metrics = torchvision.models.get_weight(name).meta.get("_metrics", {})
    for values in metrics.values():
        if "acc@1" in values:
            return float(values["acc@1"]) / 100.0
    return None


def is_weight_name(weights: str) -> bool:
    """Whether ``weights`` names a torchvision weight (``ResNet18_Weights.IMAGENET1K_V1``) rather
    than a file (an existing file of that name wins)."""
    return bool(_WEIGHT_NAME.fullmatch(str(weights))) and not Path(weights).exists()
