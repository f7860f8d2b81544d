import os
import pickle

import numpy as np
import pytest
import torch

from transferability.artifacts import (
    atomic_path,
    load_checkpoint,
    read_activations,
    save_checkpoint,
    write_activations,
)
from transferability.models import ModelSpec, build_model, finetune_model
from transferability.models.thesis_cnn import CNN_LAYERS, ThesisCNN, build_cnn
from transferability.training.loop import Split, derive_seed, evaluate, train_run
from transferability.training.schedule import resolve_checkpoints


def test_forward_layers_shapes_and_logits():
    model = build_cnn(10, seed=0).eval()
    x = torch.randn(4, 1, 28, 28)
    out = model.forward_layers(x)
    assert tuple(out) == CNN_LAYERS
    shapes = {k: tuple(v.shape[1:]) for k, v in out.items()}
    assert shapes == {
        "input": (1, 28, 28),
        "conv1": (32, 26, 26),
        "pool1": (32, 13, 13),
        "conv2": (64, 11, 11),
        "pool2": (64, 5, 5),
        "fc1": (128,),
        "fc2": (10,),
    }
    assert torch.equal(out["fc2"], model(x))
    assert (out["conv1"] >= 0).all() and (out["fc1"] >= 0).all()


def test_build_cnn_depends_on_seed_only_and_keeps_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_cnn(10, 1), build_cnn(10, 1), build_cnn(10, 2)
    assert torch.equal(torch.rand(1), before)  # global RNG untouched
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_transfer_keeps_conv_and_reinitialises_fc():
    source = build_model(ModelSpec("thesis_cnn", 5), seed=3)
    target = finetune_model(source, 10, "thesis_cnn", head_seed=7)
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert torch.equal(target.conv2.bias, source.conv2.bias)
    assert target.fc2.out_features == 10
    assert not torch.equal(target.fc1.weight, source.fc1.weight)
    fresh = build_cnn(10, 7)  # the new layers: those of a CNN built with the head seed
    assert torch.equal(target.fc1.weight, fresh.fc1.weight)
    assert all(p.requires_grad for p in target.parameters())


def _toy_split(n=96, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
    images[:, 5:10, 5:10] += (labels * 60).astype(np.uint8)[:, None, None]  # learnable signal
    return Split.from_numpy(images, labels)


def _train(seed):
    torch.use_deterministic_algorithms(True)
    train = _toy_split()
    model = build_cnn(3, seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    saved = {}
    records = train_run(
        model,
        train,
        resolve_checkpoints(["0", "2b", "7b"], len(train), 16),
        batch_size=16,
        optimizer=opt,
        data_seed=derive_seed(seed, "d"),
        evaluate_fn=lambda m: dict(zip(("loss", "acc"), evaluate(m, train), strict=True)),
        on_checkpoint=lambda r, m: saved.update(
            {r.checkpoint.label: {k: v.clone() for k, v in m.state_dict().items()}}
        ),
    )
    return records, saved


def test_training_is_deterministic_and_checkpoints_in_order():
    rec_a, saved_a = _train(0)
    rec_b, saved_b = _train(0)
    assert [r.checkpoint.label for r in rec_a] == ["0", "2b", "7b"]
    assert np.isnan(rec_a[0].train_loss) and np.isfinite(rec_a[1].train_loss)
    for label in saved_a:
        for key in saved_a[label]:
            assert torch.equal(saved_a[label][key], saved_b[label][key])
    assert not torch.equal(saved_a["0"]["fc2.weight"], saved_a["7b"]["fc2.weight"])
    assert [r.metrics for r in rec_a] == [r.metrics for r in rec_b]


def test_derive_seed_stable_and_distinct():
    assert derive_seed(0, "mnist") == derive_seed(0, "mnist")
    assert len({derive_seed(0, "mnist"), derive_seed(1, "mnist"), derive_seed(0, "fashion")}) == 3


def test_checkpoint_round_trip_and_corruption(tmp_path):
    model = ThesisCNN(10)
    path = tmp_path / "step0.pt"
    save_checkpoint(path, model.state_dict(), {"source": "mnist", "seed": 0, "num_classes": 10})
    state, meta = load_checkpoint(path)
    assert meta["source"] == "mnist" and torch.equal(state["fc2.bias"], model.fc2.bias)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > " + str(_Evil.marker),))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    _Evil.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": {}, "payload": _Evil()}, path, pickle_protocol=2)
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(path)
    assert not _Evil.marker.exists()
    assert pickle  # the module under test never unpickles with the default unpickler


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_activation_file_layout_and_nan_detection(tmp_path):
    acts = np.random.default_rng(0).random((20, 3, 4, 4)).astype(np.float32)
    path = tmp_path / "pool1.h5"
    write_activations(
        path, acts, np.arange(20) % 2, np.arange(100, 120), {"layer": "pool1", "target": "mnist"}
    )
    features, labels, attrs = read_activations(path)
    assert features.shape == (20, 48) and np.array_equal(features, acts.reshape(20, -1))
    assert attrs["layer_shape"] == [3, 4, 4] and attrs["layer"] == "pool1"
    acts[0, 0, 0, 0] = np.nan
    write_activations(path, acts, np.arange(20) % 2, np.arange(20), {"layer": "pool1"})
    with pytest.raises(ValueError, match="pool1.*NaN"):
        read_activations(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="cannot read activations file"):
        read_activations(path)


def test_progress_logs_batches_rate_and_time_left(caplog):
    """Long jobs log where they are between checkpoints (issue: progress), no bar off a TTY."""
    import logging

    from transferability.training.loop import Progress

    progress = Progress(10, samples_per_step=64, what="training", interval=0.0)
    assert progress.bar is None  # stderr is not a terminal under pytest
    with caplog.at_level(logging.INFO, logger="transferability.training.loop"):
        for _ in range(4):
            progress.step()
    progress.close()
    lines = [r.getMessage() for r in caplog.records if "batches (" in r.getMessage()]
    assert len(lines) == 4 and lines[-1].startswith("training: 4/10 batches (40 %)")
    assert "samples/s" in lines[-1] and "s left" in lines[-1]
