"""The interface every model family implements, and what all families share: building under a
private random state, loading weight files with every mismatch listed, and running the named
layers of one forward pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from transferability.models.spec import InputSpec, ModelError, ModelSpec
from transferability.models.weights import listed, mismatches, read_weights, remap_keys

__all__ = ["Family"]


class Family:
    """One family of architectures. Subclasses implement the methods that raise
    ``NotImplementedError``; models they build carry their :class:`ModelSpec` as ``model.spec``.
    """

    #: Architectures this family builds.
    architectures: tuple[str, ...] = ()

    # --- to implement ------------------------------------------------------------------------

    def _construct(self, spec: ModelSpec, generator: torch.Generator) -> nn.Module:
        """A freshly initialised model (drawing only from ``generator`` or the global RNG, which
        :meth:`build` has seeded and restores)."""
        raise NotImplementedError

    def layer_names(self, model: nn.Module) -> tuple[str, ...]:
        """Every layer name :meth:`forward_layers` accepts, in forward order."""
        raise NotImplementedError

    def default_layers(self, model: nn.Module) -> tuple[str, ...]:
        """The layers recorded when a configuration names none."""
        raise NotImplementedError

    def head_layer(self, model: nn.Module) -> str | None:
        """The layer whose outputs are the classifier's logits (None: no head)."""
        raise NotImplementedError

    def _forward_layers(
        self, model: nn.Module, x: torch.Tensor, layers: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` (checked, at least one) in one forward pass that stops after
        the last."""
        raise NotImplementedError

    def input_spec(self, spec: ModelSpec, weights: str | None = None) -> InputSpec:
        raise NotImplementedError

    def head_prefixes(self, spec: ModelSpec) -> tuple[str, ...]:
        """State-dict prefixes of the classifier, dropped from files loaded into an encoder."""
        raise NotImplementedError

    def head_module(self, spec: ModelSpec) -> str:
        """The name of the classifier head module (the last fully-connected layer)."""
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------

    def builds(self, arch: str) -> bool:
        """Whether this family builds ``arch``."""
        return arch in self.architectures

    def read_state(
        self,
        spec: ModelSpec,
        weights: str,
        remap: Mapping[str, str] | None,
        allow_download: bool,
    ) -> tuple[dict[str, torch.Tensor], str]:
        """``(state dict, where it came from)`` of a weight file or weight name for ``spec``
        (:func:`read_file_state`; families add their own weight names)."""
        return read_file_state(str(weights), remap, allow_download)

    def build(self, spec: ModelSpec, seed: int | None = None) -> nn.Module:
        """A freshly initialised model whose weights depend only on ``seed`` (random when None);
        the global random state is left as it was."""
        if not self.builds(spec.arch):
            raise ModelError(f"{type(self).__name__} does not build {spec.arch!r}")
        with torch.random.fork_rng(devices=[]):
            if seed is None:
                seed = int(torch.seed())
            torch.manual_seed(seed)
            model = self._construct(spec, torch.Generator().manual_seed(seed))
        for module in model.modules():  # recorded outputs must never be overwritten later
            if getattr(module, "inplace", False) is True:
                module.inplace = False
        model.spec = spec
        return model

    def forward_layers(
        self, model: nn.Module, x: torch.Tensor, layers: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` in one forward pass that stops after the last requested one;
        unknown names raise, listing the valid ones."""
        layers = self.check_layers(model, layers)
        return self._forward_layers(model, x, layers) if layers else {}

    def check_layers(self, model: nn.Module, layers: Sequence[str]) -> tuple[str, ...]:
        if isinstance(layers, str):
            raise TypeError(f"layers must be a sequence of layer names, got the string {layers!r}")
        valid = self.layer_names(model)
        unknown = [name for name in layers if name not in valid]
        if unknown:
            raise ModelError(
                f"unknown layer(s) {unknown} for {model.spec.arch}; valid layers: {list(valid)}"
            )
        return tuple(layers)

    def head_classes(self, state: Mapping[str, torch.Tensor], spec: ModelSpec) -> int | None:
        """Classes of the head in a state dict (None: the file has no head)."""
        head = state.get(self.head_module(spec) + ".weight")
        return None if head is None else int(head.shape[0])

    def load_state(
        self,
        model: nn.Module,
        state: Mapping[str, torch.Tensor],
        origin: str,
        *,
        remapped: bool = False,
    ) -> None:
        """Load ``state`` into ``model`` after checking every key and shape: one error names
        ``origin`` and lists the missing keys, unexpected keys and shape mismatches.

        Entries of the head are ignored by an encoder-only model (so full weights serve as an
        encoder); missing ``*.num_batches_tracked`` (old files) keep the model's counter."""
        spec: ModelSpec = model.spec
        state = dict(state)
        if spec.num_classes is None:
            heads = self.head_prefixes(spec)
            state = {k: v for k, v in state.items() if not k.startswith(heads)}
        expected = model.state_dict()
        for key, value in expected.items():
            if key not in state and key.endswith(".num_batches_tracked"):
                state[key] = value.clone()
        problems = mismatches(state, expected)
        if problems:
            raise ModelError(
                f"weights {origin} do not fit a {describe(spec)} model"
                + (" (file keys after remap)" if remapped else "")
                + ":\n  "
                + "\n  ".join(problems)
            )
        model.load_state_dict(state, strict=True)

    def load_weights(
        self,
        model: nn.Module,
        weights: str,
        *,
        remap: Mapping[str, str] | None = None,
        allow_download: bool = False,
    ) -> None:
        """Load a weight file or weight name (see :meth:`read_state`)."""
        state, origin = self.read_state(model.spec, weights, remap, allow_download)
        self.load_state(model, state, origin, remapped=bool(remap))


def read_file_state(
    weights: str, remap: Mapping[str, str] | None, allow_download: bool
) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict after remap, where it came from)``; remap collisions raise."""
    try:
        state, origin = read_weights(weights, allow_download)
    except ValueError as err:
        raise ModelError(str(err)) from err
    if remap:
        state, problems = remap_keys(state, remap)
        if problems:
            raise ModelError(f"weights {origin}: " + "; ".join(problems))
    return state, origin


def describe(spec: ModelSpec) -> str:
    """``vgg19 (cifar) with 10 classes`` — how error messages name a model."""
    text = spec.arch + (" (cifar)" if spec.cifar and spec.arch != "vgg_tiny" else "")
    if spec.image_size is not None:
        text += f" at {spec.image_size}x{spec.image_size}"
    return text + (f" with {spec.num_classes} classes" if spec.num_classes else " (no head)")


__all__ += ["describe", "listed", "read_file_state"]
