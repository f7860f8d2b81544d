"""timm (PyTorch Image Models) as a family: ``arch: timm/<model name>``, e.g.
``timm/resnet50.a1_in1k`` or ``timm/convnext_small.fb_in22k_ft_in1k`` (a model name, optionally
with its pretrained tag, as ``timm.list_models(pretrained=True)`` spells it).

* Building: ``timm.create_model(name, pretrained=False, num_classes=...)`` — nothing is fetched;
  ``image_size`` is passed as ``img_size`` to the models that take one (ViT, Swin, ...).
* Weights: a file (``.safetensors`` or a state dict) or ``pretrained``: the tag's own weights from
  the local Hugging Face cache (``model.safetensors`` of the tag's ``hf_hub_id``), never from the
  network unless ``allow_download``.
* Input: size, interpolation, crop fraction, mean and std from the model's pretrained config
  (``timm.data.resolve_data_config``), never a fixed 224/ImageNet default.
* Layers: the model's own feature API, named by ``feature_info`` (``layer1`` … ``layer4`` of a
  ResNet, ``stages.0`` … of a ConvNeXt, ``blocks.0`` … of a ViT), computed by
  ``forward_intermediates`` (NCHW maps; a ViT's patch tokens without the class token) in one
  pass that stops after the last requested stage; plus ``penultimate`` (``forward_head(...,
  pre_logits=True)``: what the classifier receives) and ``logits``. Models without
  ``forward_intermediates`` are read with forward hooks on the same modules.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import torch
from torch import nn

from transferability.models.base import Family, read_file_state
from transferability.models.spec import InputSpec, ModelError, ModelSpec

__all__ = ["PREFIX", "TIMM_TESTED", "TimmFamily", "timm_name"]

#: How a configuration names a timm architecture.
PREFIX = "timm/"
#: The timm architectures the test suite builds, loads and fine-tunes one by one (random
#: weights): a ResNet, ConvNeXt, EfficientNet, DeiT, Swin, RegNet, MobileNetV3 and two hybrids.
TIMM_TESTED: tuple[str, ...] = (
    "timm/resnet18.a1_in1k", "timm/convnext_atto.d2_in1k", "timm/efficientnet_b0.ra_in1k",
    "timm/deit_tiny_patch16_224.fb_in1k", "timm/swin_tiny_patch4_window7_224.ms_in1k",
    "timm/regnety_002.pycls_in1k", "timm/mobilenetv3_small_100.lamb_in1k",
    "timm/mobilevit_xxs.cvnets_in1k", "timm/coatnet_0_rw_224.sw_in1k",
)  # fmt: skip
#: ``weights:`` value meaning the tag's own pretrained weights (Hugging Face cache).
PRETRAINED = "pretrained"
_FEATURE_LAYERS = "_timm_feature_layers"


def timm_name(arch: str) -> str:
    """``timm/resnet50.a1_in1k`` → ``resnet50.a1_in1k``."""
    return arch[len(PREFIX) :]


@cache
def _known(name: str) -> bool:
    import timm

    return bool(timm.is_model(name))


@cache
def _all_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models()) + tuple(timm.list_models(pretrained=True))


def _check_known(arch: str) -> str:
    name = timm_name(arch)
    if not name or not _known(name):
        close = difflib.get_close_matches(name, _all_names(), n=8, cutoff=0.6)
        raise ModelError(
            f"unknown timm model {arch!r}"
            + (f"; close names: {', '.join(PREFIX + c for c in close)}" if close else "")
            + " (timm.list_models() lists them all)"
        )
    return name


@cache
def _pretrained_cfg(name: str) -> dict:
    """The model's (tag's) pretrained config as a dict; {} when timm has none."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return {} if cfg is None else cfg.to_dict()


class TimmFamily(Family):
    architectures: tuple[str, ...] = ()  # over a thousand: :meth:`builds` asks timm

    def builds(self, arch: str) -> bool:
        if not arch.startswith(PREFIX):
            return False
        _check_known(arch)  # a timm/ name is this family's: an unknown one is named here
        return True

    # --- building ------------------------------------------------------------------------------

    def _construct(self, spec: ModelSpec, generator: torch.Generator) -> nn.Module:
        import timm

        if spec.cifar:
            raise ModelError(f"cifar is a VGG variant; {spec.arch} takes image_size instead")
        name = _check_known(spec.arch)
        self.head_module(spec)  # refuses models with two heads before building
        kwargs: dict = {"num_classes": spec.num_classes or 0}  # 0: timm's headless model
        if spec.image_size is not None:
            kwargs["img_size"] = spec.image_size
        try:
            model = timm.create_model(name, pretrained=False, **kwargs)
        except TypeError as err:
            if "img_size" in kwargs and "img_size" in str(err):  # a CNN: any input size works
                kwargs.pop("img_size")
                model = timm.create_model(name, pretrained=False, **kwargs)
            else:
                raise ModelError(f"cannot build {spec.arch} with {kwargs}: {err}") from err
        except (ValueError, RuntimeError, AssertionError) as err:
            raise ModelError(f"cannot build {spec.arch} with {kwargs}: {err}") from err
        if not getattr(model, "feature_info", None):
            raise ModelError(f"timm model {spec.arch} has no feature_info: its layers are unnamed")
        return model

    def read_state(
        self,
        spec: ModelSpec,
        weights: str,
        remap: Mapping[str, str] | None,
        allow_download: bool,
    ) -> tuple[dict[str, torch.Tensor], str]:
        if weights != PRETRAINED:
            return super().read_state(spec, weights, remap, allow_download)
        path = _pretrained_file(spec.arch, allow_download)
        return read_file_state(str(path), remap, False)[0], f"{spec.arch} pretrained ({path})"

    def input_spec(self, spec: ModelSpec, weights: str | None = None) -> InputSpec:
        """The model's pretrained config (``timm.data.resolve_data_config``): mean, std,
        interpolation, input size and crop fraction (resize = floor(size / crop_pct), timm's
        own rule). ``image_size`` replaces the size (resize = crop), keeping the statistics."""
        from timm.data import resolve_data_config

        name = _check_known(spec.arch)
        data = resolve_data_config(pretrained_cfg=_pretrained_cfg(name) or {})
        channels, height, width = data["input_size"]
        if height != width:
            raise ModelError(f"{spec.arch} takes {height}x{width} inputs; only square ones work")
        crop = spec.image_size or int(height)
        resize = crop if spec.image_size else int(math.floor(crop / float(data["crop_pct"])))
        if data.get("crop_mode", "center") != "center":
            raise ModelError(
                f"{spec.arch}'s pretrained config crops with mode {data['crop_mode']!r}; "
                "only 'center' is supported (set image_size to resize = crop)"
            )
        return InputSpec(
            crop=crop,
            resize=resize,
            mean=tuple(float(m) for m in data["mean"]),
            std=tuple(float(s) for s in data["std"]),
            channels=int(channels),
            interpolation=str(data["interpolation"]),
            fixed_size=bool(_pretrained_cfg(name).get("fixed_input_size", False)),
        )

    # --- heads --------------------------------------------------------------------------------

    def head_module(self, spec: ModelSpec) -> str:
        head = _classifier_of(_check_known(spec.arch))
        if not isinstance(head, str):
            raise ModelError(
                f"{spec.arch} has several classifier heads {tuple(head)} (a distilled model); "
                "use a variant with one head"
            )
        return head

    def head_prefixes(self, spec: ModelSpec) -> tuple[str, ...]:
        return (self.head_module(spec) + ".",)

    def head_layer(self, model: nn.Module) -> str | None:
        return None if model.spec.num_classes is None else "logits"

    # --- layers -------------------------------------------------------------------------------

    def layer_names(self, model: nn.Module) -> tuple[str, ...]:
        head = ("logits",) if model.spec.num_classes is not None else ()
        return (*_stage_names(model), "penultimate", *head)

    def default_layers(self, model: nn.Module) -> tuple[str, ...]:
        """The last stage at each resolution (feature_info's reductions); a transformer whose
        blocks all share one resolution: the blocks at each quarter of its depth."""
        info = list(model.feature_info)
        reductions = [int(f["reduction"]) for f in info]
        names = _stage_names(model)
        if len(set(reductions)) == 1:
            quarter = max(1, len(names) // 4)
            stages = list(names[quarter - 1 :: quarter])
        else:
            stages = [
                n
                for n, r, nxt in zip(names, reductions, [*reductions[1:], None], strict=True)
                if nxt != r
            ]
        return (*stages, "penultimate")

    def _forward_layers(
        self, model: nn.Module, x: torch.Tensor, layers: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        stages = _stage_names(model)
        wanted = sorted({stages.index(n) for n in layers if n in stages})
        head = any(n in ("penultimate", "logits") for n in layers)
        out: dict[str, torch.Tensor] = {}
        final = None
        if not wanted:
            final = model.forward_features(x)
        elif hasattr(model, "forward_intermediates"):
            if head:
                final, maps = model.forward_intermediates(x, indices=wanted)
            else:  # stops after the last requested stage
                maps = model.forward_intermediates(
                    x, indices=wanted, intermediates_only=True, stop_early=True
                )
            out.update({stages[i]: t for i, t in zip(wanted, maps, strict=True)})
        else:
            final, hooked = _hooked_forward(model, x, [stages[i] for i in wanted], stop=not head)
            out.update(hooked)
        if head:
            out["penultimate"] = model.forward_head(final, pre_logits=True)
            if "logits" in layers:
                out["logits"] = model.forward_head(final)
        return {name: out[name] for name in layers}


# --- helpers ------------------------------------------------------------------------------------


@cache
def _classifier_of(name: str) -> str | tuple[str, ...]:
    head = _pretrained_cfg(name).get("classifier")
    if head is None:  # no pretrained config: ask a model built on the meta device
        import timm

        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            head = timm.create_model(name, pretrained=False).default_cfg.get("classifier")
    if head is None:
        raise ModelError(f"timm model {PREFIX}{name} does not name its classifier head")
    return head if isinstance(head, str) else tuple(head)


def _stage_names(model: nn.Module) -> tuple[str, ...]:
    names = model.__dict__.get(_FEATURE_LAYERS)
    if names is None:
        names = tuple(str(f["module"]) for f in model.feature_info)
        model.__dict__[_FEATURE_LAYERS] = names
    return names


class _StopForward(Exception):
    pass


def _hooked_forward(
    model: nn.Module, x: torch.Tensor, stages: list[str], *, stop: bool
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """``(forward_features output or None, stage outputs)`` by forward hooks, for models without
    ``forward_intermediates``; ``stop``: end the pass after the last requested stage."""
    out: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_module, _inputs, output):
            out[name] = output
            if stop and len(out) == len(stages):
                raise _StopForward

        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in stages]
    try:
        final = model.forward_features(x)
    except _StopForward:
        final = None
    finally:
        for handle in handles:
            handle.remove()
    return final, out


def _pretrained_file(arch: str, allow_download: bool) -> Path:
    """The tag's weight file: ``model.safetensors`` of its Hugging Face repository from the
    local cache (fetched only when ``allow_download``), else its URL's file in the torch hub
    cache."""
    name = _check_known(arch)
    cfg = _pretrained_cfg(name)
    repo = cfg.get("hf_hub_id")
    if repo:
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return Path(found)
        cache_dir = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
        if not allow_download:
            raise FileNotFoundError(
                f"the pretrained weights of {arch} are not in the Hugging Face cache: expected "
                f"{cache_dir} (model.safetensors of {repo}). Fill it with `hf download {repo} "
                "model.safetensors` (HF_HOME/HF_HUB_CACHE choose the cache), give a weights "
                "file instead, or set allow_download: true"
            )
        return Path(hf_hub_download(repo, "model.safetensors"))
    url = cfg.get("url")
    if not url:
        raise FileNotFoundError(f"timm names no pretrained weights for {arch}")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.is_file():
        return cached
    if not allow_download:
        raise FileNotFoundError(
            f"the pretrained weights of {arch} are not in the torch hub cache: expected "
            f"{cached}. Download {url} to that path, give a weights file instead, or set "
            "allow_download: true"
        )
    torch.hub.download_url_to_file(url, str(cached), progress=False)
    return cached
