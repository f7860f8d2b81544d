"""The pipeline's training jobs (pretrain, finetune) through the multi-run trainer, against the
single-run reference :func:`training.train_run` with the seeds the pipeline documents."""

import numpy as np
import pandas as pd
import pytest
import torch

from transferability.artifacts import load_checkpoint
from transferability.data.arrays import ImageDataset, save_dataset
from transferability.jobs.finetune import finetune, share_initial
from transferability.jobs.sources import initial_model, pretrain
from transferability.models.thesis_cnn import build_cnn
from transferability.training.loop import (
    Split,
    configure_torch,
    derive_seed,
    evaluate,
    train_run,
)
from transferability.training.schedule import resolve_checkpoints

PRETRAIN = {"batch_size": 16, "lr": 1e-3, "train_samples": None, "eval_samples": None}
PRETRAIN_STEPS = ["0", "2b", "9b"]
FINETUNE = {**PRETRAIN, "checkpoints": ["0", "3b", "8b"]}


def _reference_transfer(state: dict, num_classes: int, head_seed: int):
    """The thesis's transfer written out independently of transferability.models: conv1/conv2
    copied, fc1/fc2 of a CNN built with the head seed."""
    model = build_cnn(num_classes, head_seed)
    model.load_state_dict({k: v for k, v in state.items() if k.startswith(("conv1.", "conv2."))},
                          strict=False)  # fmt: skip
    return model


def _dataset(seed: int, name: str) -> ImageDataset:
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 3, n)
        images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
        images[:, 5:10, 5:10] += (labels * 60).astype(np.uint8)[:, None, None]
        return images, labels

    (train_x, train_y), (test_x, test_y) = split(120), split(60)
    return ImageDataset(train_x, train_y, test_x, test_y, 3, name)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One pre-training run of the pipeline: its dataset, checkpoints and history."""
    root = tmp_path_factory.mktemp("pretrain")
    dataset = _dataset(0, "toy_source")
    save_dataset(dataset, root / "source.npz")
    paths = {step: root / f"step{step}.pt" for step in PRETRAIN_STEPS}
    history = pretrain(
        root / "source.npz",
        paths,
        root / "history.csv",
        source="toy",
        seed=5,
        protocol=PRETRAIN,
        device="cpu",
    )
    return root, dataset, paths, history


def _reference_states(model, train, labels, batch_size, data_seed):
    saved = {}
    train_run(
        model,
        train,
        resolve_checkpoints(labels, len(train), batch_size),
        batch_size=batch_size,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        data_seed=data_seed,
        evaluate_fn=lambda m: {},
        on_checkpoint=lambda r, m: saved.update(
            {r.checkpoint.label: {k: v.detach().clone() for k, v in m.state_dict().items()}}
        ),
    )
    return saved


def _relative_update_gap(got, ref, init):
    return max(float((got[k] - ref[k]).norm() / (ref[k] - init[k]).norm()) for k in ref)


def test_pretrain_equals_the_single_run_reference(pretrained):
    root, dataset, paths, history = pretrained
    assert list(history["step"]) == PRETRAIN_STEPS
    assert list(history.columns[:4]) == ["source", "dataset", "seed", "step"]
    assert {"train_eval_accuracy", "test_accuracy", "test_loss"} <= set(history.columns)
    configure_torch(1, "cpu")
    reference = _reference_states(
        build_cnn(3, 5),
        Split.from_numpy(dataset.train_x, dataset.train_y),
        PRETRAIN_STEPS,
        16,
        derive_seed(5, "pretrain-data"),
    )
    init = reference["0"]
    for step, path in paths.items():
        state, meta = load_checkpoint(path)
        assert meta["step"] == step and meta["seed"] == 5 and meta["device"] == "cpu"
        if step == "0":
            assert all(torch.equal(state[k], init[k]) for k in init)
        else:  # dropout on: the same masks as the reference run, so updates agree to rounding
            assert _relative_update_gap(state, reference[step], init) <= 1e-2
    model = build_cnn(3, 0)
    model.load_state_dict(load_checkpoint(paths["9b"])[0])
    _, accuracy = evaluate(model, Split.from_numpy(dataset.test_x, dataset.test_y))
    assert history["test_accuracy"].iloc[-1] == pytest.approx(accuracy, abs=1e-12)


def test_pretrain_is_bit_reproducible_on_cpu(pretrained, tmp_path):
    root, _, paths, history = pretrained
    again = {step: tmp_path / f"step{step}.pt" for step in PRETRAIN_STEPS}
    history_again = pretrain(root / "source.npz", again, tmp_path / "history.csv", source="toy",
                             seed=5, protocol=PRETRAIN, device="cpu")  # fmt: skip
    pd.testing.assert_frame_equal(history, history_again)
    for step in PRETRAIN_STEPS:
        first, second = load_checkpoint(paths[step])[0], load_checkpoint(again[step])[0]
        assert all(torch.equal(first[k], second[k]) for k in first)


def test_pretrain_from_the_untrained_model_file_is_the_same_run(pretrained, tmp_path):
    """The workflow's runs start from the shared untrained model (initial_model): the same
    checkpoints and history, bit for bit, as the run that builds it itself."""
    root, _, paths, history = pretrained
    initial_model(tmp_path / "initial.pt", num_classes=3, seed=5)
    state, meta = load_checkpoint(tmp_path / "initial.pt")
    assert meta["source"] == "initial" and meta["step"] == "0" and meta["seed"] == 5
    assert all(torch.equal(state[k], v) for k, v in load_checkpoint(paths["0"])[0].items())
    trained = {step: tmp_path / f"step{step}.pt" for step in PRETRAIN_STEPS[1:]}
    again = pretrain(root / "source.npz", trained, tmp_path / "history.csv", source="toy", seed=5,
                     protocol=PRETRAIN, device="cpu", initial=tmp_path / "initial.pt")  # fmt: skip
    pd.testing.assert_frame_equal(history, again)  # step 0's row included
    assert not (tmp_path / "step0.pt").exists()
    for step, path in trained.items():
        first, second = load_checkpoint(paths[step])[0], load_checkpoint(path)[0]
        assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("classes, seed, expected", [
    (4, 5, "untrained model of seed 5 with 4 classes, but run toy seed 5 needs seed 5 with 3"),
    (3, 6, "untrained model of seed 6 with 3 classes, but run toy seed 5 needs seed 5"),
])  # fmt: skip
def test_pretrain_refuses_another_untrained_model(pretrained, tmp_path, classes, seed, expected):
    root = pretrained[0]
    initial_model(tmp_path / "initial.pt", num_classes=classes, seed=seed)
    with pytest.raises(ValueError, match=f"initial.pt: the {expected}"):
        pretrain(root / "source.npz", {"2b": tmp_path / "step2b.pt"}, tmp_path / "history.csv",
                 source="toy", seed=5, protocol=PRETRAIN, device="cpu",
                 initial=tmp_path / "initial.pt")  # fmt: skip
    assert not (tmp_path / "step2b.pt").exists()


def test_pretrain_refuses_an_untrained_model_drawn_in_another_dtype(pretrained, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    """float64 draws other initial weights than float32 (the golden runs train in float64)."""
    from transferability.training.loop import DTYPE_ENV

    root = pretrained[0]
    initial_model(tmp_path / "initial.pt", num_classes=3, seed=5)  # float32
    assert load_checkpoint(tmp_path / "initial.pt")[1]["dtype"] == "torch.float32"
    monkeypatch.setenv(DTYPE_ENV, "float64")
    try:
        with pytest.raises(ValueError, match=r"initial.pt: the untrained model was drawn in "
                           r"torch.float32, but this run trains in torch.float64"):  # fmt: skip
            pretrain(root / "source.npz", {"2b": tmp_path / "step2b.pt"}, tmp_path / "h.csv",
                     source="toy", seed=5, protocol=PRETRAIN, device="cpu",
                     initial=tmp_path / "initial.pt")  # fmt: skip
    finally:
        torch.set_default_dtype(torch.float32)
    assert not (tmp_path / "step2b.pt").exists()


def test_share_initial_copies_every_cell_and_refuses_another_table(tmp_path):
    text = "target,source,seed,step,value,note\nmnist,initial,0,0,0.30000000000000004,\n" \
           'mnist,initial,0,0,,"undefined: a, b"\n'  # fmt: skip
    (tmp_path / "initial.csv").write_text(text)
    share_initial(tmp_path / "initial.csv", tmp_path / "copy.csv", source="mnist_noise")
    assert (tmp_path / "copy.csv").read_text() == text.replace(",initial,", ",mnist_noise,")
    (tmp_path / "other.csv").write_text(text.replace(",initial,", ",mnist,"))
    with pytest.raises(ValueError, match=r"other.csv: not an untrained model's table.*\['mnist'\]"):
        share_initial(tmp_path / "other.csv", tmp_path / "copy2.csv", source="mnist_noise")
    assert not (tmp_path / "copy2.csv").exists()


def _finetune(root, paths, target_path, runs_together, name):
    outputs = {step: root / name / f"step{step}.csv" for step in paths}
    finetune(
        paths,
        target_path,
        outputs,
        target="toy_target",
        seed=5,
        protocol=FINETUNE,
        device="cpu",
        runs_together={"cpu": runs_together},
    )
    return {step: pd.read_csv(path) for step, path in outputs.items()}


def test_finetune_grouping_changes_nothing_but_rounding(pretrained):
    root, _, paths, _ = pretrained
    target = _dataset(1, "toy_target")
    save_dataset(target, root / "target.npz")
    one = _finetune(root, paths, root / "target.npz", 1, "one_at_a_time")
    together = _finetune(root, paths, root / "target.npz", 3, "together")
    for step in PRETRAIN_STEPS:
        a, b = one[step], together[step]
        assert list(a["finetune_step"]) == FINETUNE["checkpoints"]
        assert (a["pretrain_step"].astype(str) == step).all() and (a["source"] == "toy").all()
        np.testing.assert_allclose(a["test_loss"], b["test_loss"], rtol=1e-4)
        # at most one of the 60 test predictions flipped by rounding
        assert np.abs(a["test_accuracy"] - b["test_accuracy"]).max() <= 1 / 60 + 1e-12
    # different transferred weights give different curves
    assert not np.allclose(one["0"]["test_loss"], one["9b"]["test_loss"])

    # one curve against the single-run reference: head and data order from (seed, target)
    configure_torch(1, "cpu")
    state, _ = load_checkpoint(paths["2b"])
    model = _reference_transfer(state, 3, derive_seed(5, "toy_target", "head"))
    test = Split.from_numpy(target.test_x, target.test_y)
    accuracies = []
    train_run(
        model,
        Split.from_numpy(target.train_x, target.train_y),
        resolve_checkpoints(FINETUNE["checkpoints"], len(target.train_y), 16),
        batch_size=16,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        data_seed=derive_seed(5, "toy_target", "finetune-data"),
        evaluate_fn=lambda m: dict(zip(("loss", "acc"), evaluate(m, test), strict=True)),
        on_checkpoint=lambda r, m: accuracies.append(r.metrics["acc"]),
    )
    assert np.abs(np.array(accuracies) - together["2b"]["test_accuracy"]).max() <= 1 / 60 + 1e-12


def test_configure_torch_rejects_unknown_or_missing_devices():
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda'"):
        configure_torch(1, "gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            configure_torch(1, "cuda")
    assert configure_torch(1, "cpu") == torch.device("cpu")


def test_process_age_is_within_the_wall_time_of_the_process():
    # psutil's create_time is off by up to 1 s on Linux (whole-second boot time), which once
    # made every job's start-up look 0.75 s longer; the age must fit in the measured lifetime.
    import subprocess
    import sys
    import time

    code = "from transferability.jobs.logs import process_age; print(process_age())"
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    age = float(out.stdout)
    assert 0 < age <= wall + 0.02  # /proc counts in clock ticks of 10 ms


def test_finetune_bookkeeping_is_one_for_both_tracks():
    """The grid and the curve rows that the CNN's multi-run fine-tuning and the image tracks'
    single-run fine-tuning share (jobs.finetune): one column order, the grid's errors naming
    the target's setting."""
    from transferability.jobs.finetune import curve_table, finetune_grid
    from transferability.training.loop import CheckpointRecord

    protocol = {"checkpoints": ["0", "1b", "2e"], "batch_size": 10}
    grid = finetune_grid(protocol, 30, context="target 'pets' (targets.pets.checkpoints)")
    assert [c.batches for c in grid] == [0, 1, 6]
    records = [
        CheckpointRecord(
            c, float("nan") if i == 0 else 0.5, {"test_loss": 1.0, "test_accuracy": 0.25}
        )
        for i, c in enumerate(grid)
    ]
    curve = curve_table(records, target="pets", source="vgg", seed=3, pretrain_step="final")
    assert list(curve.columns) == [
        "target", "source", "seed", "pretrain_step", "finetune_step", "batches", "samples",
        "epochs", "train_loss", "test_loss", "test_accuracy",
    ]  # fmt: skip
    assert list(curve["finetune_step"]) == ["0", "1b", "2e"] and curve["seed"].tolist() == [3] * 3
    with pytest.raises(ValueError, match=r"target 'pets' \(targets.pets.checkpoints\)"):
        finetune_grid(
            {"checkpoints": ["1e", "3b"], "batch_size": 10},
            30,
            context="target 'pets' (targets.pets.checkpoints)",
        )
