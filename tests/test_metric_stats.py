"""The streamed layer statistics equal the in-memory ones and direct NumPy computations."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from transferability.artifacts import write_activations
from transferability.metrics import (
    METRICS,
    compute_layer_metrics,
    compute_metrics,
    layer_stats,
    layer_stats_from_h5,
    metric_names,
)


def _activations(n=60, shape=(3, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    x = np.maximum(rng.standard_normal((n, *shape)) + labels[:, None, None, None] * 0.3, 0)
    x[7] = x[3]  # an exact duplicate
    x[11] = 0.0  # a dead sample
    return x.astype(np.float32), labels


def test_stats_match_numpy():
    x, y = _activations()
    flat = x.reshape(len(x), -1).astype(np.float64)
    stats = layer_stats(x, y)
    centred = flat - flat.mean(axis=0)
    np.testing.assert_allclose(stats.gram, flat @ flat.T, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.centred_gram, centred @ centred.T, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.row_sum, flat.sum(1), rtol=1e-12)
    assert stats.duplicate_of[7] == 3 and stats.duplicate_of[3] == 3
    assert (stats.duplicate_of[np.r_[0:3, 4:7]] == np.r_[0:3, 4:7]).all()
    assert stats.constant_rows[11] and stats.constant_rows.sum() == 1
    assert (stats.row_nonzero == np.count_nonzero(flat, axis=1)).all()
    assert stats.layer_shape == (3, 5, 4) and stats.n_features == 60


def test_streamed_file_equals_in_memory(tmp_path):
    x, y = _activations()
    path = tmp_path / "layer.h5"
    write_activations(path, x, y, np.arange(len(y)), {"layer": "conv9"})
    # a tiny streaming budget forces many strips and row blocks
    streamed = layer_stats_from_h5(path, with_sample_stats=True, stream_bytes=4096)
    memory = layer_stats(x, y, with_sample_stats=True)
    np.testing.assert_allclose(streamed.centred_gram, memory.centred_gram, rtol=1e-10, atol=1e-10)
    assert (streamed.duplicate_of == memory.duplicate_of).all()
    assert streamed.layer_shape == memory.layer_shape
    for key, values in memory.sample_stats.items():
        np.testing.assert_allclose(streamed.sample_stats[key], values, rtol=1e-10, atol=1e-12)
    names = metric_names("layer")
    with pytest.warns():  # the duplicate and the dead sample are reported
        from_file = compute_layer_metrics(path, names)
        from_array = compute_metrics(x, y, names)
    assert set(from_file) == set(names)
    for name in names:
        assert from_file[name] == pytest.approx(from_array[name], rel=1e-6, nan_ok=True), name


def test_streaming_reports_nan_with_file_and_layer(tmp_path):
    x, y = _activations()
    x[5, 1, 2, 3] = np.inf
    path = tmp_path / "bad.h5"
    write_activations(path, x, y, np.arange(len(y)), {"layer": "pool7"})
    with pytest.raises(ValueError, match=r"bad\.h5: layer pool7 activations contain NaN/Inf"):
        layer_stats_from_h5(path)


def test_every_layer_metric_is_registered_with_a_direction():
    for name in metric_names("layer"):
        assert isinstance(METRICS[name].higher_is_better, bool)


def test_metric_table_records_undefined_metrics_and_carries_on(tmp_path):
    from transferability.jobs.metric_jobs import metric_table

    x, _ = _activations()
    one_class = np.zeros(len(x), dtype=int)
    path = tmp_path / "fc1.h5"
    write_activations(path, x, one_class, np.arange(len(x)), {"layer": "fc1"})
    logits = tmp_path / "logits.h5"
    write_activations(logits, np.random.default_rng(0).normal(size=(len(x), 5)), one_class,
                      np.arange(len(x)), {"layer": "logits"})  # fmt: skip
    table = metric_table([path], ["id", "ss", "rsa", "logme", "s4", "leep"], logits).set_index(
        "metric"
    )
    assert np.isfinite(table.loc["id", "value"]) and np.isfinite(table.loc["s4", "value"])
    for name in ("ss", "rsa", "leep"):
        assert np.isnan(table.loc[name, "value"]), name
        assert "at least 2" in table.loc[name, "note"] or "2 classes" in table.loc[name, "note"]
    assert "duplicate" in table.loc["id", "note"]  # rows 3 and 7 are identical
    assert table.loc["leep", "layer"] == "logits"


def test_metric_table_reuses_the_input_layer_rows_of_identical_images(tmp_path, monkeypatch):
    """With ``reuse``, an input layer with the same values and labels as an earlier one is not
    recomputed and gives the same rows; other layers, and an input layer of other images, are
    computed."""
    import transferability.metrics as metrics_module
    from transferability.jobs.metric_jobs import metric_table

    x, y = _activations()
    other = x.copy()
    other[0] += 1.0

    def files(step, images):
        paths = []
        for layer, values in (("input", images), ("conv1", x * (step + 2))):
            paths.append(tmp_path / f"step{step}_{layer}.h5")
            write_activations(paths[-1], values, y, np.arange(len(y)), {"layer": layer})
        return paths

    names = ["id", "ss", "rsa", "logme", "s4"]
    expected = [metric_table(files(step, x), names) for step in range(3)]
    calls = []
    real = metrics_module.layer_stats_from_h5

    def counted(path, **options):
        calls.append(Path(path).name)
        return real(path, **options)

    monkeypatch.setattr(metrics_module, "layer_stats_from_h5", counted)
    reuse = {}
    got = [metric_table(files(step, x), names, reuse=reuse) for step in range(3)]
    for want, have in zip(expected, got, strict=True):
        pd.testing.assert_frame_equal(want, have)
    assert calls == ["step0_input.h5", "step0_conv1.h5", "step1_conv1.h5", "step2_conv1.h5"]
    calls.clear()
    metric_table(files(3, other), names, reuse=reuse)
    assert calls == ["step3_input.h5", "step3_conv1.h5"]
