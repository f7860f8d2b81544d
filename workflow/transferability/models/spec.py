"""What a model is, in plain data: the architecture and its variant (:class:`ModelSpec`) and
the images it takes (:class:`InputSpec`, defined with the transforms in
:mod:`transferability.data.transforms`). Checkpoints store the spec in their metadata, so a
model is rebuilt from any checkpoint without knowing which track wrote it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from transferability.data.transforms import IMAGENET_MEAN, IMAGENET_STD, InputSpec

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "InputSpec", "ModelError", "ModelSpec"]

#: Old architecture names that are a variant of another one: the VGG16 encoder without head.
ARCH_ALIASES: dict[str, tuple[str, bool]] = {"vgg16_features": ("vgg16", False)}


class ModelError(ValueError):
    """A model cannot be built, loaded or used as asked; the message names what and why."""


@dataclass(frozen=True)
class ModelSpec:
    """An architecture and its variant.

    ``arch``: a name of :func:`transferability.models.architectures`. ``num_classes``: size
    of the classifier head, ``None`` for an encoder without head (e.g. SegNet's VGG16-BN
    encoder). ``cifar``: VGG variant for 32 × 32 inputs with a 512-wide classifier (the thesis's
    CIFAR-10 VGG-19). ``image_size``: input side the model is built for (ViT's positional
    embedding; other families use it as their default input size).
    """

    arch: str
    num_classes: int | None = 1000
    cifar: bool = False
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.num_classes is not None and (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 1
        ):
            raise ModelError(
                f"num_classes must be an integer >= 1 or None, got {self.num_classes!r}"
            )
        if self.image_size is not None and (
            not isinstance(self.image_size, int) or self.image_size < 8
        ):
            raise ModelError(f"image_size must be an integer >= 8, got {self.image_size!r}")

    @classmethod
    def create(
        cls,
        arch: str,
        num_classes: int | None = 1000,
        *,
        cifar: bool = False,
        image_size: int | None = None,
    ) -> ModelSpec:
        """A spec, resolving the old alias ``vgg16_features`` (= ``vgg16`` without head)."""
        if arch in ARCH_ALIASES:
            arch, has_head = ARCH_ALIASES[arch]
            num_classes = num_classes if has_head else None
        return cls(arch, num_classes, bool(cifar), image_size)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ModelSpec:
        """The spec a checkpoint's metadata describes (thesis CNN checkpoints have no ``arch``)."""
        classes = meta.get("num_classes")
        return cls.create(
            str(meta.get("arch") or "thesis_cnn"),
            None if classes is None else int(classes),
            cifar=bool(meta.get("cifar", False)),
            image_size=None if meta.get("image_size") is None else int(meta["image_size"]),
        )

    def meta(self) -> dict[str, Any]:
        """The checkpoint metadata entries that rebuild this spec."""
        return asdict(self)

    def with_classes(self, num_classes: int | None) -> ModelSpec:
        return replace(self, num_classes=num_classes)
