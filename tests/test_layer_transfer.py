"""Layer-transfer networks (Yosinski et al. 2014; Shanmugam et al. §5) built from a base CNN."""

import numpy as np
import pytest
import torch

from transferability.models.thesis_cnn import build_cnn
from transferability.studies.layer_transfer import (
    TRANSFER_LAYERS,
    build_layer_transfer,
    parse_variant,
)
from transferability.training.loop import Split, evaluate, train_run
from transferability.training.schedule import resolve_checkpoints

BASE = build_cnn(10, seed=3)


def _split(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return Split.from_numpy((rng.random((n, 28, 28)) * 255).astype(np.uint8),
                            rng.integers(0, 10, n))  # fmt: skip


def test_anb_frozen_copies_and_freezes_exactly_the_first_n_layers():
    model = build_layer_transfer(BASE, 10, 2, frozen=True, seed=7)
    fresh = build_cnn(10, seed=7)
    for i, name in enumerate(TRANSFER_LAYERS):
        layer, base, new = getattr(model, name), getattr(BASE, name), getattr(fresh, name)
        expected = base if i < 2 else new
        assert torch.equal(layer.weight, expected.weight) and torch.equal(layer.bias, expected.bias)
        assert layer.weight.requires_grad == (i >= 2) and layer.bias.requires_grad == (i >= 2)


def test_frozen_layers_stay_put_while_the_rest_trains():
    model = build_layer_transfer(BASE.state_dict(), 10, 2, frozen=True, seed=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = _split()
    train_run(
        model, train, resolve_checkpoints(["0", "3b"], len(train), 16), batch_size=16,
        optimizer=torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2),
        data_seed=0, evaluate_fn=lambda m: {}, on_checkpoint=lambda r, m: None,
    )  # fmt: skip
    after = model.state_dict()
    for key in before:
        changed = not torch.equal(before[key], after[key])
        assert changed == key.startswith(("fc1.", "fc2.")), key


def test_bnb_with_every_layer_is_the_base_model():
    model = build_layer_transfer(BASE, 10, 4, frozen=False, seed=99)
    test = _split(seed=1)
    assert evaluate(model, test) == evaluate(BASE, test)
    assert all(p.requires_grad for p in model.parameters())


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="n must be in 1"):
        build_layer_transfer(BASE, 10, 0, frozen=True, seed=0)
    with pytest.raises(ValueError, match="base has 10 classes and the target 5"):
        build_layer_transfer(BASE, 5, 4, frozen=True, seed=0)
    with pytest.raises(ValueError, match="unknown layer-transfer variant"):
        parse_variant("AnA_frozen")
    assert parse_variant("BnB_ft") == ("B", False) and parse_variant("AnB_frozen") == ("A", True)
