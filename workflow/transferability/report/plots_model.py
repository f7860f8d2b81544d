"""What one thesis-CNN checkpoint computes for one test image (the Uppsala report's first
analysis, §3: filters and feature maps from the general first layer to the task-specific last).

:func:`model_figure` draws, for test image ``sample`` of a dataset: the input image; the 32
conv1 filters (3 × 3); the feature maps of conv1, pool1, conv2 and pool2 (the first 32 of
conv2's and pool2's 64 channels); fc1's 128 units as an 8 × 16 heatmap; and the softmax of
fc2 over the model's classes. Torch is imported only when a figure is drawn, so that this
module stays importable by the torch-free plotting code.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from transferability.artifacts import atomic_path  # noqa: E402

#: Channels shown per feature-map layer (conv2 and pool2 have 64; the first 32 are shown).
SHOWN_CHANNELS = 32
_GRID = (4, 8)  # rows × columns of the small-image grids
_MAP_CMAP = "magma"
_FILTER_CMAP = "gray"


def _mosaic(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``images`` (k, h, w) tiled row-major into one array, tiles separated by NaN lines one
    pixel wide (drawn white)."""
    k, height, width = images.shape
    mosaic = np.full((rows * (height + 1) - 1, cols * (width + 1) - 1), np.nan)
    for i in range(min(k, rows * cols)):
        r, c = divmod(i, cols)
        mosaic[r * (height + 1) : r * (height + 1) + height,
               c * (width + 1) : c * (width + 1) + width] = images[i]  # fmt: skip
    return mosaic


def _image_grid(subfig, images: np.ndarray, *, cmap: str, vmin: float, vmax: float,
                title: str, label: str) -> None:  # fmt: skip
    """``images`` (k, h, w) as a 4 × 8 grid of small images on one shared colour scale (one
    axes: fast to lay out), the channel index in each tile's corner, and one colour bar."""
    rows, cols = _GRID
    ax = subfig.subplots()
    colormap = plt.get_cmap(cmap).with_extremes(bad="white")
    image = ax.imshow(_mosaic(images, rows, cols), cmap=colormap, vmin=vmin, vmax=vmax,
                      interpolation="nearest")  # fmt: skip
    ax.set_axis_off()
    height, width = images.shape[1:]
    for i in range(min(len(images), rows * cols)):
        r, c = divmod(i, cols)
        ax.text(c * (width + 1) - 0.5, r * (height + 1) - 0.5, str(i), ha="left", va="top",
                fontsize=6.5, color="white", bbox={"boxstyle": "square,pad=0.1", "fc": "0.15",
                                                   "lw": 0, "alpha": 0.7})  # fmt: skip
    bar = subfig.colorbar(image, ax=ax, shrink=0.8, aspect=25, pad=0.02)
    bar.set_label(label, fontsize="small")
    bar.ax.tick_params(labelsize="small")
    subfig.suptitle(title, fontsize="medium", fontweight="bold")


def _maps(activation: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    """First ``SHOWN_CHANNELS`` channels of a (1, c, h, w) activation and a section title."""
    channels, height, width = activation.shape[1:]
    shown = min(SHOWN_CHANNELS, channels)
    which = f"all {channels}" if shown == channels else f"first {shown} of {channels}"
    return activation[0, :shown], f"{name} feature maps ({which} channels, {height} × {width})"


def model_figure(
    checkpoint_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    *,
    sample: int = 0,
    title: str | None = None,
) -> plt.Figure:
    """Filters and layer outputs of a thesis-CNN checkpoint for test image ``sample``.

    The checkpoint (``artifacts.save_checkpoint`` format; ``meta`` with ``num_classes``,
    ``source``, ``seed``, ``step``) is run in eval mode on the dataset's (``data.save_dataset``)
    test image ``sample``, normalised as in training. Feature maps are after the ReLU (pool:
    after max-pooling); each layer's maps share one colour scale from 0 to their maximum; the
    conv1 filters share a symmetric grey scale (white = positive weight). Raises
    ``ValueError`` when ``sample`` is outside the test set, the images are not 28 × 28 or the
    checkpoint does not fit the thesis CNN.
    """
    import torch

    from transferability.artifacts import load_checkpoint
    from transferability.data.arrays import load_dataset
    from transferability.models.thesis_cnn import ThesisCNN
    from transferability.training.loop import to_input

    dataset = load_dataset(dataset_path)
    count = len(dataset.test_x)
    if not 0 <= sample < count:
        raise ValueError(
            f"sample index {sample} is out of range: the test set of {dataset_path} "
            f"({dataset.name}) has {count} images (indices 0..{count - 1})"
        )
    if dataset.test_x.shape[1:] != (28, 28):
        raise ValueError(
            f"the thesis CNN takes 28 × 28 images; {dataset_path} has "
            f"{dataset.test_x.shape[1]} × {dataset.test_x.shape[2]}"
        )
    state, meta = load_checkpoint(checkpoint_path)
    num_classes = int(meta.get("num_classes") or state["fc2.weight"].shape[0])
    model = ThesisCNN(num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {checkpoint_path} is not a thesis CNN: {err}") from err
    model.eval()
    with torch.no_grad():
        out = model.forward_layers(to_input(dataset.test_x[sample : sample + 1]))
        probs = torch.softmax(out["fc2"], dim=1)[0].numpy()
        out = {name: value.float().contiguous().numpy() for name, value in out.items()}
        filters = model.conv1.weight.detach()[:, 0].numpy()

    fig = plt.figure(figsize=(17, 13.5), layout="constrained")
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[1.0, 1.0, 1.0])
    first = top.subfigures(1, 4, width_ratios=[0.9, 1.7, 1.5, 1.3])

    label = int(dataset.test_y[sample])
    ax = first[0].subplots()
    ax.imshow(dataset.test_x[sample], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{dataset.name} test image #{sample}\n(label {label})", fontsize="medium")
    first[0].suptitle("input (28 × 28)", fontsize="medium", fontweight="bold")

    limit = float(np.abs(filters).max()) or 1.0
    _image_grid(first[1], filters, cmap=_FILTER_CMAP, vmin=-limit, vmax=limit,
                title="conv1 filters (32, 3 × 3)", label="weight")  # fmt: skip

    ax = first[2].subplots()
    units = out["fc1"][0]
    heat = ax.imshow(units.reshape(8, 16), cmap=_MAP_CMAP, vmin=0,
                     vmax=max(float(units.max()), 1e-12), interpolation="nearest")  # fmt: skip
    ax.set_xticks(range(0, 16, 4))
    ax.set_yticks(range(8), [f"{16 * row}" for row in range(8)])
    ax.tick_params(labelsize="small")
    ax.grid(False)
    ax.set_xlabel("unit (row start + column)", fontsize="small")
    bar = first[2].colorbar(heat, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("activation", fontsize="small")
    bar.ax.tick_params(labelsize="small")
    active = int((units > 0).sum())
    ax.set_title(f"{active} of 128 units active", fontsize="small")
    first[2].suptitle("fc1 (128 units after ReLU, as 8 × 16)", fontsize="medium",
                      fontweight="bold")  # fmt: skip

    ax = first[3].subplots()
    predicted = int(np.argmax(probs))
    colors = ["C3" if k == predicted else "C0" for k in range(num_classes)]
    ax.bar(np.arange(num_classes), probs, color=colors)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(np.arange(num_classes))
    ax.tick_params(labelsize="small")
    ax.set(xlabel="class of the model", ylabel="probability")
    ax.grid(axis="x", visible=False)
    ax.set_title(f"predicted class {predicted} (p = {probs[predicted]:.2f})", fontsize="small")
    first[3].suptitle(f"fc2: softmax over {num_classes} classes", fontsize="medium",
                      fontweight="bold")  # fmt: skip

    for subfig, layer in zip([*middle.subfigures(1, 2), *bottom.subfigures(1, 2)],
                             ("conv1", "pool1", "conv2", "pool2"), strict=True):  # fmt: skip
        maps, section = _maps(out[layer], layer)
        high = float(maps.max()) or 1.0
        _image_grid(subfig, maps, cmap=_MAP_CMAP, vmin=0.0, vmax=high, title=section,
                    label="activation (after ReLU)")  # fmt: skip

    if title is None:
        title = (
            f"Thesis CNN pre-trained on {meta.get('source', '?')} (seed {meta.get('seed', '?')}, "
            f"checkpoint {meta.get('step', '?')}): filters and layer outputs for one "
            f"{dataset.name} test image"
        )
    fig.suptitle(title, fontsize="large")
    return fig


def draw_model_figure(
    checkpoint_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    *outputs: str | Path,
    sample: int = 0,
) -> None:
    """Draw :func:`model_figure` and save it to each output (format from the suffix, e.g.
    ``.png``/``.pdf``), atomically."""
    fig = model_figure(checkpoint_path, dataset_path, sample=sample)
    try:
        for out in outputs:
            with atomic_path(out) as tmp:
                fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(out).suffix[1:])
    finally:
        plt.close(fig)
