"""What a model's input images are and how a target's images become them.

:class:`InputSpec` (a model's input size, interpolation and normalisation) is plain data, used
by the readers here and by every model family (:func:`transferability.models.input_spec`);
:func:`build_transform` turns it into a torchvision transform for PIL images. The thesis CNN's
MNIST-like arrays are normalised on the fly with :data:`PIXEL_MEAN`/:data:`PIXEL_STD`
(:func:`transferability.training.loop.to_input`). torchvision is imported only when a transform
is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import torchvision

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PIXEL_MEAN", "PIXEL_STD", "TRANSFORM_EXTRAS", "InputSpec",
    "build_transform", "grey_to_rgb",
]  # fmt: skip

#: ImageNet statistics (torchvision's weights, the thesis's VGG transforms).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: One fixed input normalisation for every MNIST-like dataset (MNIST's pixel mean/std), so that
#: source and target images pass through the same input pipeline.
PIXEL_MEAN = 0.1307
PIXEL_STD = 0.3081

TRANSFORM_EXTRAS = ("malaria",)


@dataclass(frozen=True)
class InputSpec:
    """The images a model takes: ``resize`` the shorter side (with ``interpolation``, a
    torchvision ``InterpolationMode`` value), centre-crop ``crop`` (training crops randomly),
    normalise with ``mean``/``std`` per channel; ``channels`` 1 (grey, the thesis CNN) or 3.
    ``fixed_size``: the model takes ``crop`` × ``crop`` inputs only (positional embeddings, a
    CIFAR classifier)."""

    crop: int
    resize: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    interpolation: str = "bilinear"
    fixed_size: bool = False


class _ToRGB:
    """Convert a PIL image to RGB (grey becomes 3 equal channels); picklable for workers."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def build_transform(
    train: bool,
    *,
    resize: int = 256,
    crop: int = 224,
    extras: str | None = None,
    inputs: InputSpec | None = None,
) -> torchvision.transforms.Compose:
    """The image transform of the VGG targets (thesis §2.1.3), for PIL images.

    RGB conversion; ``Resize(resize)`` of the shorter side and ``CenterCrop(resize)`` (the
    thesis re-scales to 256x256 "by first scaling the shorter side ... to 256 pixels and then
    crop out the central square patch of the other"); then ``RandomCrop(crop)`` and
    ``RandomHorizontalFlip()`` for training, ``CenterCrop(crop)`` otherwise; ``ToTensor`` and
    ``Normalize`` with the ImageNet mean and std — or, given the model's ``inputs``
    (:func:`transferability.models.input_spec`), its mean, std and resize interpolation (a
    timm model's pretrained config); its sizes are ignored, ``resize`` and ``crop`` rule.

    ``extras="malaria"`` adds, for training only, what the thesis's Malaria loader (listing A.2)
    adds: ``ColorJitter(brightness=0.05)``, ``RandomVerticalFlip()`` and
    ``RandomRotation(20)``. The test/extraction transform stays deterministic.

    Parameters
    ----------
    train : bool
        Random training transform, or the deterministic test/extraction one.
    resize, crop : int
        ``resize >= crop >= 1``.
    extras : str, optional
        One of :data:`TRANSFORM_EXTRAS`.

    Returns
    -------
    torchvision.transforms.Compose
        Maps a PIL image to a float tensor (3, crop, crop). The random steps draw from torch's
        global generator.
    """
    if extras is not None and extras not in TRANSFORM_EXTRAS:
        raise ValueError(
            f"unknown transform extras {extras!r}; valid: {', '.join(TRANSFORM_EXTRAS)} or None"
        )
    if not 1 <= crop <= resize:
        raise ValueError(f"need resize >= crop >= 1, got resize={resize}, crop={crop}")
    from torchvision import transforms  # only here: InputSpec is read where torch is not needed

    inputs = inputs or InputSpec(crop=crop, resize=resize)
    interpolation = transforms.InterpolationMode(inputs.interpolation)
    steps: list[Any] = [
        _ToRGB(),
        transforms.Resize(resize, interpolation=interpolation),
        transforms.CenterCrop(resize),
    ]
    if train:
        steps += [transforms.RandomCrop(crop)]
        if extras == "malaria":
            # Thesis listing A.2, lines 24-27 (order kept): ColorJitter(0.05), whose first
            # argument is the brightness only (the text speaks of brightness, contrast and
            # saturation; the code is followed); RandomHorizontalFlip(); RandomVerticalFlip();
            # RandomRotation(20). Not taken from the listing: its RandomResizedCrop(224) and
            # Normalize(0.5, 0.5), which replace rather than add to §2.1.3's steps, and the
            # RandomResizedCrop of its test transform, which would contradict the fixed
            # extraction samples of §2.1.3.
            steps += [
                transforms.ColorJitter(brightness=0.05),
                transforms.RandomHorizontalFlip(),
                transforms.RandomVerticalFlip(),
                transforms.RandomRotation(20),
            ]
        else:
            steps += [transforms.RandomHorizontalFlip()]
    else:
        steps += [transforms.CenterCrop(crop)]
    steps += [transforms.ToTensor(), transforms.Normalize(inputs.mean, inputs.std)]
    return transforms.Compose(steps)


def grey_to_rgb(images, inputs):
    """uint8 grey images (n, h, w) → float (n, 3, crop, crop) normalised as the model's
    ``inputs`` (:class:`InputSpec`) say: ImageNet statistics for
    torchvision models, a timm model's own."""
    import torch
    import torch.nn.functional as F

    size = inputs.crop
    x = images.to(torch.get_default_dtype()).div(255.0).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(inputs.mean).view(1, 3, 1, 1)
    std = torch.tensor(inputs.std).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std
