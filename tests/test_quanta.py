"""QUANTA (transferability.studies.quanta) on the thesis CNN, CPU, small synthetic splits."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from transferability.models.thesis_cnn import build_cnn
from transferability.studies.quanta import (
    HISTORY_COLUMNS,
    QUANTA_LAYERS,
    QuantaCNN,
    quanta_model,
    quanta_score,
    train_quanta,
)
from transferability.training.loop import Split, to_input

BATCH = 16
LR = 1e-3  # larger than the paper's 1e-4 so that λ visibly moves in a few steps


def _toy_split(n=64, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
    images[:, 5:10, 5:10] += (labels * 60).astype(np.uint8)[:, None, None]  # learnable signal
    return Split.from_numpy(images, labels)


TRAIN = _toy_split()
TEST = _toy_split(40, seed=1)
SOURCE = build_cnn(3, seed=7)
X = to_input(TEST.images[:8])


def _set_lambda_s(model: QuantaCNN, value: float) -> None:
    """λ_S = 1 (0) exactly in float32: softmax((±100, ∓100)) underflows the other to 0."""
    with torch.no_grad():
        model.v.copy_(torch.tensor([100.0, -100.0]) * (1 if value == 1 else -1))


def _train(model, epochs=2, data_seed=3):
    return train_quanta(
        model, TRAIN, TEST, epochs=epochs, batch_size=BATCH, lr=LR, data_seed=data_seed
    )


@pytest.mark.parametrize("copy_source", [True, False])
@pytest.mark.parametrize("layer", QUANTA_LAYERS)
def test_lambda_s_one_gives_source_layer_output(layer, copy_source):
    model = quanta_model(SOURCE, 3, layer, 0.9, seed=1).eval()
    if copy_source:  # earlier layers identical to the source's; without, Z_S must still be S's
        model.target.load_state_dict(SOURCE.state_dict())
        # ... except the mixed layer itself, so that Z_T differs from Z_S there
        getattr(model.target, layer).reset_parameters()
    _set_lambda_s(model, 1)
    assert model.lambdas().tolist() == [1.0, 0.0]
    expected = SOURCE.eval().forward_layers(X, (layer,))[layer]
    got = model.forward_layers(X, (layer,))[layer]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    if layer == "fc2":
        torch.testing.assert_close(model(X), SOURCE(X), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layer", QUANTA_LAYERS)
def test_lambda_s_zero_gives_target_forward(layer):
    model = quanta_model(SOURCE, 3, layer, 0.9, seed=1).eval()
    _set_lambda_s(model, 0)
    expected = model.target.forward_layers(X)
    got = model.forward_layers(X)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model(X), model.target(X), rtol=1e-6, atol=1e-6)


def test_state_dict_source_and_no_dropout_in_source():
    state = {k: v.clone() for k, v in SOURCE.state_dict().items()}
    model = quanta_model(state, 3, "fc1", 0.5, seed=1).train()
    assert not model.source.training and model.target.training
    assert all(not p.requires_grad for p in model.source.parameters())
    for key, value in state.items():
        assert torch.equal(model.source.state_dict()[key], value)
    # The caller's source is copied, never frozen or re-moded in place.
    assert all(p.requires_grad for p in SOURCE.parameters())


@pytest.mark.parametrize("layer", QUANTA_LAYERS)
def test_gradients_reach_v_not_source(layer):
    model = quanta_model(SOURCE, 3, layer, 0.75, seed=1).train()
    torch.manual_seed(0)
    loss = torch.nn.functional.cross_entropy(model(X), TEST.labels[:8])
    loss.backward()
    assert model.v.grad is not None and model.v.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.source.parameters())
    assert all(p.grad is not None for p in model.target.parameters())


def test_source_bit_identical_after_training_and_lambdas_valid():
    model = quanta_model(SOURCE, 3, "conv2", 0.9, seed=1)
    before = {k: v.clone() for k, v in model.source.state_dict().items()}
    target_before = model.target.conv1.weight.detach().clone()
    history = _train(model, epochs=3)
    for key, value in model.source.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(model.target.conv1.weight, target_before)
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    lam_s, lam_t = history["lambda_s"].to_numpy(), history["lambda_t"].to_numpy()
    assert ((lam_s >= 0) & (lam_s <= 1) & (lam_t >= 0) & (lam_t <= 1)).all()
    np.testing.assert_allclose(lam_s + lam_t, 1.0, atol=1e-6)
    assert lam_s[-1] != lam_s[0]  # v is trained
    assert math.isnan(history["train_loss"].iloc[0])
    assert history["train_loss"].iloc[1:].notna().all()
    assert history["test_accuracy"].between(0, 1).all()


@pytest.mark.parametrize("lambda_init", [0.9, 0.75, 0.5])
def test_lambda_init_respected(lambda_init):
    model = quanta_model(SOURCE, 4, "fc1", lambda_init, seed=2)
    assert model.lambdas()[0].item() == pytest.approx(lambda_init, abs=1e-6)
    history = _train(model, epochs=0)
    assert len(history) == 1
    assert history["lambda_s"].iloc[0] == pytest.approx(lambda_init, abs=1e-6)
    assert history["lambda_t"].iloc[0] == pytest.approx(1 - lambda_init, abs=1e-6)


def test_train_quanta_deterministic():
    def run():
        model = quanta_model(SOURCE, 3, "fc1", 0.9, seed=5)
        return _train(model, epochs=2, data_seed=11), model.state_dict()

    torch.manual_seed(123)  # what ran before must not matter
    first, first_state = run()
    torch.manual_seed(456)
    second, second_state = run()
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    for key, value in first_state.items():
        assert torch.equal(value, second_state[key]), key


def test_eval_every_tests_only_at_its_epochs_and_changes_nothing_else():
    """eval_every=2 over 5 epochs evaluates the test set at epochs 0, 2, 4 and 5 (the last);
    λ, training losses and the trained weights equal those of evaluating every epoch."""

    def run(eval_every):
        model = quanta_model(SOURCE, 3, "conv2", 0.9, seed=5)
        history = train_quanta(model, TRAIN, TEST, epochs=5, batch_size=BATCH, lr=LR,
                               data_seed=11, eval_every=eval_every)  # fmt: skip
        return history, model.state_dict()

    every, every_state = run(1)
    sparse, sparse_state = run(2)
    tested = sparse["test_accuracy"].notna()
    assert sparse.loc[tested, "epoch"].tolist() == [0, 2, 4, 5]
    assert sparse["test_loss"].notna().tolist() == tested.tolist()
    pd.testing.assert_frame_equal(sparse[tested], every[tested], check_exact=True)
    for column in ("epoch", "lambda_s", "lambda_t", "train_loss"):
        pd.testing.assert_series_equal(sparse[column], every[column], check_exact=True)
    for key, value in every_state.items():
        assert torch.equal(value, sparse_state[key]), key
    with pytest.raises(ValueError, match="eval_every must be >= 1, got 0"):
        run(0)


def test_quanta_score():
    history = pd.DataFrame(
        {"epoch": range(6), "lambda_s": [0.9, 0.8, 0.7, 0.6, 0.5, 0.2]},
    )
    assert quanta_score(history, last_epochs=3) == pytest.approx((0.6 + 0.5 + 0.2) / 3)
    assert quanta_score(history.iloc[::-1], last_epochs=1) == pytest.approx(0.2)
    # Fewer trained epochs than asked: all of them, epoch 0 never counts.
    assert quanta_score(history) == pytest.approx(np.mean([0.8, 0.7, 0.6, 0.5, 0.2]))
    with pytest.raises(ValueError, match="no epoch after epoch 0"):
        quanta_score(history.iloc[:1])
    with pytest.raises(ValueError, match="last_epochs"):
        quanta_score(history, last_epochs=0)
    with pytest.raises(ValueError, match="lambda_s"):
        quanta_score(history.drop(columns="lambda_s"))


def test_errors():
    with pytest.raises(ValueError, match=r"unknown QUANTA layer 'pool1'.*conv1.*fc2"):
        quanta_model(SOURCE, 3, "pool1", 0.9, seed=0)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="lambda_init"):
            quanta_model(SOURCE, 3, "conv1", bad, seed=0)
    with pytest.raises(ValueError, match="fc2 needs equal class counts.*3.*5"):
        quanta_model(SOURCE, 5, "fc2", 0.9, seed=0)
    quanta_model(SOURCE, 5, "fc1", 0.9, seed=0)  # differing class counts are fine below fc2
    with pytest.raises(ValueError, match="fc2.weight"):
        quanta_model({}, 3, "conv1", 0.9, seed=0)
