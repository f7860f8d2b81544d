"""Your own metric (issue 23): plugin files and modules, both metric forms (streamed ``layer``
and in-memory ``features``), the example k-NN metric against scikit-learn, the CLI, and bad
plugins. The tiny-run test of a plugin through Snakemake is in test_workflow.py."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from transferability.artifacts import write_activations
from transferability.jobs.metric_jobs import metric_table
from transferability.metrics import METRICS, compute_metrics, metric_names
from transferability.metrics.plugins import PluginError, load_plugin, load_plugins, plugin_path
from transferability.run import config as tconfig

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "metric_plugin.py"


def _write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture(autouse=True)
def _registry_restored():
    """Every test starts from the built-in metrics: plugins loaded here are forgotten after."""
    from transferability.metrics import plugins

    metrics, loaded = dict(METRICS), dict(plugins._LOADED)
    yield
    METRICS.clear()
    METRICS.update(metrics)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


@pytest.fixture
def features():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(2), 25)
    x = rng.normal(size=(50, 6)) + 1.2 * np.eye(6)[labels]
    return x.astype(np.float32), labels


def _activation_file(tmp_path, x, labels, layer="fc1") -> Path:
    path = tmp_path / f"{layer}.h5"
    write_activations(path, x, labels, np.arange(len(labels)), {"layer": layer})
    return path


def test_example_knn_loo_equals_scikit_learn(features):
    load_plugin(str(EXAMPLE))
    x, y = features
    # two classes and an odd K: no tied votes, so the tie rule cannot matter
    expected = cross_val_score(KNeighborsClassifier(5), x, y, cv=LeaveOneOut()).mean()
    assert METRICS["knn_loo"](x, y) == pytest.approx(expected, abs=1e-12)
    assert METRICS["knn_loo"].kind == "features" and METRICS["knn_loo"].higher_is_better
    # a perfectly separated layer: every sample's neighbours share its class
    separated = np.repeat(np.eye(2), 10, axis=0).astype(np.float32) * 100
    assert METRICS["knn_loo"](separated, np.repeat([0, 1], 10)) == 1.0


def test_loading_is_idempotent_and_an_edit_reloads(tmp_path):
    path = _write(
        tmp_path / "one.py",
        """
        from transferability.metrics import register_metric

        @register_metric("plugin_mean", higher_is_better=True)
        def plugin_mean(stats):
            return float(stats.row_sum.mean())
    """,
    )
    first = load_plugin(str(path))
    assert load_plugin(str(path)) is first and first.names == ("plugin_mean",)
    assert "plugin_mean" in metric_names("layer")
    _write(
        path,
        """
        from transferability.metrics import register_metric

        @register_metric("plugin_mean2", higher_is_better=False)
        def plugin_mean2(stats):
            return 2.0
    """,
    )
    second = load_plugin(str(path))
    assert second.names == ("plugin_mean2",)
    assert "plugin_mean" not in METRICS  # the edited file's old names are forgotten
    assert METRICS["plugin_mean2"].plugin == str(path.resolve())


def test_layer_plugin_is_streamed_and_equals_its_features_twin(tmp_path, features):
    """The same k-NN rule written on LayerStats (streamed) and on the features (in memory)."""
    _write(
        tmp_path / "twin.py",
        """
        import numpy as np
        from transferability.metrics import register_metric

        @register_metric("nn1_loo_stats", higher_is_better=True)
        def nn1_loo_stats(stats):
            d2 = stats.sq_distances.copy()
            np.fill_diagonal(d2, np.inf)
            return float(np.mean(stats.codes[d2.argmin(axis=1)] == stats.codes))

        @register_metric("nn1_loo_features", higher_is_better=True, kind="features")
        def nn1_loo_features(features, labels):
            assert features.dtype == np.float32 and features.ndim == 2
            x = features.astype(np.float64)
            d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
            np.fill_diagonal(d2, np.inf)
            return float(np.mean(labels[d2.argmin(axis=1)] == labels))
    """,
    )
    load_plugin(str(tmp_path / "twin.py"))
    x, y = features
    path = _activation_file(tmp_path, x, y)
    table = metric_table([path], ["ss", "nn1_loo_stats", "nn1_loo_features"]).set_index("metric")
    assert table.loc["nn1_loo_stats", "value"] == pytest.approx(
        table.loc["nn1_loo_features", "value"], abs=1e-12
    )
    assert (
        table.loc["nn1_loo_stats", "value"]
        == compute_metrics(x, y, ["nn1_loo_stats"])["nn1_loo_stats"]
    )
    assert set(table["layer"]) == {"fc1"} and (table["note"] == "").all()


def test_features_metric_over_the_bound_is_refused_naming_the_file(tmp_path, features):
    load_plugin(str(EXAMPLE))
    x, y = features
    path = _activation_file(tmp_path, x, y)
    with pytest.raises(ValueError, match=r"fc1\.h5.*layer 'fc1'.*features_max_gib"):
        metric_table([path], ["knn_loo"], features_max_bytes=x.nbytes - 1)
    assert metric_table([path], ["knn_loo"], features_max_bytes=x.nbytes)["value"].notna().all()


@pytest.mark.parametrize(
    "returned, reason",
    [
        ("float('inf')", "returned inf"),
        ("np.array([1.0, 2.0])", "array of shape (2,)"),
        ("'high'", "returned str"),
        ("float('nan')", ""),
    ],
)
def test_a_plugin_value_that_is_not_one_number_is_nan_with_the_reason(
    tmp_path, features, returned, reason
):
    _write(
        tmp_path / "odd.py",
        f"""
        import numpy as np
        from transferability.metrics import register_metric

        @register_metric("odd_value", higher_is_better=True, kind="features")
        def odd_value(features, labels):
            return {returned}
    """,
    )
    load_plugin(str(tmp_path / "odd.py"))
    x, y = features
    table = metric_table([_activation_file(tmp_path, x, y)], ["odd_value", "ss"])
    row = table.set_index("metric").loc["odd_value"]
    assert math.isnan(row["value"]) and reason in row["note"]
    assert np.isfinite(table.set_index("metric").loc["ss", "value"])  # the run goes on


def test_a_plugin_that_raises_valueerror_is_nan_and_a_crash_names_the_plugin(tmp_path, features):
    _write(
        tmp_path / "raises.py",
        """
        from transferability.metrics import register_metric

        @register_metric("undefined_here", higher_is_better=True, kind="features")
        def undefined_here(features, labels):
            raise ValueError("needs 3 classes")

        @register_metric("buggy", higher_is_better=True, kind="features")
        def buggy(features, labels):
            return 1 / 0
    """,
    )
    load_plugin(str(tmp_path / "raises.py"))
    x, y = features
    path = _activation_file(tmp_path, x, y)
    row = metric_table([path], ["undefined_here"]).iloc[0]
    assert math.isnan(row["value"]) and row["note"] == "needs 3 classes"
    with pytest.raises(RuntimeError, match=r"'buggy' of plugin .*raises\.py.*ZeroDivisionError"):
        metric_table([path], ["buggy"])


def test_bad_plugins_are_refused_naming_the_file(tmp_path):
    broken = _write(tmp_path / "broken.py", "import numpy as np\nnp.nonexistent_function()\n")
    with pytest.raises(PluginError, match=r"broken\.py failed to import: AttributeError"):
        load_plugin(str(broken))
    clash = _write(
        tmp_path / "clash.py",
        """
        from transferability.metrics import register_metric

        @register_metric("logme", higher_is_better=True)
        def mine(stats):
            return 0.0
    """,
    )
    with pytest.raises(PluginError, match=r"clash\.py.*'logme' is already registered as a "
                       "built-in metric"):  # fmt: skip
        load_plugin(str(clash))
    assert METRICS["logme"].plugin is None  # the built-in is untouched
    reserved = _write(
        tmp_path / "reserved.py",
        """
        from transferability.metrics import register_metric

        @register_metric("baseline_mine", higher_is_better=True)
        def mine(stats):
            return 0.0
    """,
    )
    with pytest.raises(PluginError, match="'baseline_mine' is reserved"):
        load_plugin(str(reserved))
    empty = _write(tmp_path / "empty.py", "X = 1\n")
    with pytest.raises(PluginError, match=r"empty\.py registers no metric"):
        load_plugin(str(empty))
    with pytest.raises(PluginError, match="no such file"):
        plugin_path("missing_plugin.py", base=tmp_path)
    with pytest.raises(PluginError, match="neither a .py file nor an importable module"):
        plugin_path("no_such_module_anywhere")


def test_a_module_name_is_a_plugin_too(tmp_path, monkeypatch):
    _write(
        tmp_path / "my_metrics_mod.py",
        """
        from transferability.metrics import register_metric

        @register_metric("module_metric", higher_is_better=True, kind="prediction")
        def module_metric(probs, labels):
            return float(probs.max(axis=1).mean())
    """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (plugin,) = load_plugins(["my_metrics_mod"])
    assert plugin.path == (tmp_path / "my_metrics_mod.py").resolve()
    assert "module_metric" in metric_names("prediction")
    sys.modules.pop("my_metrics_mod", None)


def test_config_refuses_bad_plugins_and_oversize_layers_before_any_job(tmp_path):
    from snakemake.utils import validate
    from test_workflow import tiny_config

    config = tiny_config()
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))  # fills the defaults
    config["metric_plugins"] = [str(tmp_path / "nope.py")]
    with pytest.raises(tconfig.ConfigError, match=r"metric_plugins: .*nope\.py"):
        tconfig.check(config)
    config["metric_plugins"] = [str(EXAMPLE)]
    config["tracks"]["cnn"]["metrics"] += ["knn_loo"]
    tconfig.check(config)  # 2 GiB: the tiny layers fit
    # conv1 of the thesis CNN: 32 × 26 × 26 features; 10 per class × 10 classes
    config["features_max_gib"] = 100 * 32 * 26 * 26 * 4 / 2**30 * 0.99
    with pytest.raises(tconfig.ConfigError, match=r"layer 'conv1' .* 100 × 21632 float32"):
        tconfig.check(config)
    assert tconfig.metric_plugin_files(config, ["id", "knn_loo"]) == [str(EXAMPLE.resolve())]
    # a random-task study never receives a features metric (it holds no size check)
    assert "knn_loo" not in tconfig.random_tasks_metrics(
        {**config, "tracks": {"cnn": {**config["tracks"]["cnn"], "studies": {
            "random_tasks": {}}}}}, "cnn")  # fmt: skip


def test_rank_cli_takes_a_metric_plugin(tmp_path, capsys):
    from transferability.cli import main

    status = main(["rank", "--metric-plugin", str(tmp_path / "absent.py"), "--model", "x.pt",
                   "--target", "mnist"])  # fmt: skip
    assert status == 2 and "absent.py" in capsys.readouterr().err


def test_h5_file_is_left_unchanged_by_features_metrics(tmp_path, features):
    _write(
        tmp_path / "mutate.py",
        """
        from transferability.metrics import register_metric

        @register_metric("mutating", higher_is_better=True, kind="features")
        def mutating(features, labels):
            features[0, 0] = 1e9
            return 0.0
    """,
    )
    load_plugin(str(tmp_path / "mutate.py"))
    x, y = features
    path = _activation_file(tmp_path, x, y)
    row = metric_table([path], ["mutating"]).iloc[0]
    assert math.isnan(row["value"]) and "read-only" in row["note"]
    with h5py.File(path) as f:
        assert np.array_equal(f["activations"][...], x)
