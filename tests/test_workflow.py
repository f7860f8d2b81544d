"""The tiny configuration end to end through Snakemake (a subprocess), then incremental
re-planning and bad input. Needs the converted MNIST/FashionMNIST that `make test` obtains."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "resources" / "datasets"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
AGGREGATES = {"tables", "figure", "all", "quanta_tables", "layer_transfer_table",
              "random_tasks_tables", "table_html"}  # fmt: skip


def report_args(report: Path) -> list[str]:
    """`snakemake --report` as `make report` writes it: with the stylesheet that lets a figure
    taller than the window scroll to its top (report/stylesheet.css)."""
    return ["--report", str(report), "--report-stylesheet", str(REPO / "report/stylesheet.css")]


def tiny_config(**changes) -> dict:
    config = yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())
    config["data_dir"] = str(DATA_DIR)
    for key, value in changes.items():
        config["tracks"]["cnn"][key] = value
    return config


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True):
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(path), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def planned_jobs(workdir: Path, config: dict) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry-run plans."""
    out = snakemake(workdir, config, "-n").stdout
    jobs = []
    # jobs of a `group:` are printed indented under "Group job …"
    for block in re.split(r"\n(?=\s*(?:local)?rule \w+:)", out):
        match = re.match(r"\s*(?:local)?rule (\w+):", block)
        if match:
            wildcards = re.search(r"wildcards: (.*)", block)
            pairs = [kv.split("=", 1) for kv in wildcards.group(1).split(", ")] if wildcards else []
            jobs.append((match.group(1), dict(pairs)))
    return jobs


def test_tiny_run_tables(tiny_run):
    tables = tiny_run / "results" / "cnn" / "tables"
    spearman = pd.read_csv(tables / "correlations.csv")
    assert list(spearman.columns[:12]) == ["track", "target", "layer", "metric", "grouping",
                                           "group", "n", "rho", "pvalue", "ci_low", "ci_high",
                                           "significant"]  # fmt: skip
    assert set(spearman["grouping"]) == {"all", "source", "pretrain_step", "finetune_step"}
    everything = spearman[spearman.grouping == "all"]
    peers = {"transrate", "gbc", "nleep", "parc", "sfda", "etran"}
    layer_metrics = (
        {"id", "ss", "rsa", "hscore", "hscore_reg", "logme"}
        | peers
        | {f"s{i}" for i in range(1, 7)}
    )
    pool2 = everything[everything.layer == "pool2"]
    assert set(pool2["target"]) == {"mnist", "fashion_mnist"}
    assert set(pool2["metric"]) == layer_metrics | {"c56"}
    assert set(everything[everything.layer == "logits"]["metric"]) == {"leep", "nce"}
    # pool2 has 1 600 features for 100 images: the H-score saturates at K - 1 for every model
    saturated = everything[(everything.metric == "hscore") & (everything.layer == "pool2")]
    assert saturated["rho"].isna().all() and saturated["note"].str.contains("constant").all()
    for name in ("id", "ss", "rsa", "logme", "leep", "nce"):
        rows = everything[everything.metric == name]
        rows = rows[rows.layer == ("logits" if name in ("leep", "nce") else "pool2")]
        assert np.isfinite(rows["rho"]).all() and (rows["n"] == 6).all(), name
    assert {"rho_oriented", "kendall_tau", "weighted_tau", "pearson", "top1_regret",
            "relative_top1", "best_in_top3"} <= set(spearman.columns)  # fmt: skip
    # the peers' six metrics at every layer: a value, or NaN with the reason
    metrics = pd.read_csv(tables / "metrics.csv", keep_default_na=True)
    peer_rows = metrics[metrics["metric"].isin(peers)]
    assert set(peer_rows["layer"]) == set(tiny_config()["tracks"]["cnn"]["layers"])
    assert (peer_rows["value"].notna() | peer_rows["note"].fillna("").str.len().gt(0)).all()
    assert peer_rows["value"].notna().mean() > 0.5

    metrics = pd.read_csv(tables / "metrics.csv")
    per_model = 2 * 2 * 3  # targets × sources × checkpoints
    quanta = 2 * 2 * 2  # targets × sources × QUANTA layers, at the last checkpoint only
    baselines = per_model * 3  # pretrain_samples, source_accuracy, random at layer "model"
    assert len(metrics) == per_model * (4 * (len(layer_metrics) + 1) + 2) + quanta + baselines
    assert set(metrics.loc[metrics.layer == "model", "metric"]) == {
        "baseline_pretrain_samples", "baseline_source_accuracy", "baseline_random"}  # fmt: skip
    trained = metrics[(metrics.layer != "input") & metrics.metric.isin(["id", "ss", "rsa"])]
    assert np.isfinite(trained["value"]).all()

    logauc = pd.read_csv(tables / "logauc.csv")
    assert len(logauc) == 2 * 2 * 3 and logauc["logauc"].between(0, 1).all()
    finetune = pd.read_csv(tables / "finetune.csv")
    assert set(finetune["finetune_step"].astype(str)) == {"0", "2b", "5b"}
    pretrain = pd.read_csv(tables / "pretrain.csv")
    assert len(pretrain) == 2 * 3 and pretrain["test_accuracy"].between(0, 1).all()
    for name in ("pretrain_accuracy", "metrics_per_layer", "finetune_curves", "correlations"):
        png = tiny_run / "results" / "cnn" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_tiny_run_studies(tiny_run):
    """The three studies of the tiny config end to end: tables, the quanta metric, figures."""
    tables = tiny_run / "results" / "cnn" / "tables"
    quanta = pd.read_csv(tables / "quanta.csv")
    runs = 2 * 2 * 2 * 2 * 2  # targets × sources × layers × λ inits × runs
    assert len(quanta) == runs * 4  # epochs 0 … 3
    assert quanta["lambda_s"].between(0, 1).all()
    scores = pd.read_csv(tables / "quanta_scores.csv")
    assert len(scores) == runs // 2 and (scores["runs"] == 2).all()
    assert set(scores["pretrain_step"]) == {"10b"}  # the last pre-training checkpoint
    # the λ init 0.9 scores are the metric `quanta` (at the last pre-training checkpoint)
    metrics = pd.read_csv(tables / "metrics.csv")
    joined = metrics[metrics.metric == "quanta"].merge(
        scores[scores.lambda_init == 0.9], on=["target", "source", "layer"]
    )
    assert len(joined) == 8 and np.allclose(joined["value"], joined["score"])
    correlations = pd.read_csv(tables / "correlations.csv")
    assert set(correlations[correlations.metric == "quanta"]["layer"]) == {"conv1", "fc1"}

    transfer = pd.read_csv(tables / "layer_transfer.csv")
    roles = transfer.groupby(["target", "base"])["role"].first().to_dict()
    assert roles == {
        ("mnist", "mnist"): "B",
        ("mnist", "fashion_mnist"): "A",
        ("fashion_mnist", "fashion_mnist"): "B",
        ("fashion_mnist", "mnist"): "A",
    }
    assert set(transfer["variant"]) == {"AnB_frozen", "AnB_ft", "BnB_frozen", "BnB_ft"}
    assert set(transfer["n"]) == {1, 3} and len(transfer) == 4 * 2 * 2 * 3  # × checkpoints
    assert transfer["test_accuracy"].between(0, 1).all()

    values = pd.read_csv(tables / "random_tasks.csv")
    assert values["task"].nunique() == 4
    assert set(values["measure"]) == {"leep", "nce", "hscore", "logme", "ss", "head_accuracy",
                                      "finetune_accuracy", "reference_accuracy"}  # fmt: skip
    pearson = pd.read_csv(tables / "random_tasks_pearson.csv")
    assert len(pearson) == 5 * 2 and (pearson["n"] == 4).all()  # metrics × ground truths
    levels = pd.read_csv(tables / "random_tasks_levels.csv")
    assert (levels.groupby(["metric", "ground_truth"])["n"].sum() == 4).all()
    convergence = pd.read_csv(tables / "random_tasks_convergence.csv")
    assert (convergence.groupby("samples")["n"].sum() == 4).all()
    assert np.isfinite(convergence["accuracy_difference"]).all()
    from transferability.run.config import STUDY_FIGURES

    for name in [f for figures in STUDY_FIGURES.values() for f in figures]:
        png = tiny_run / "results" / "cnn" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name


def test_activation_file_layout(tiny_run):
    import h5py

    path = tiny_run / "results/cnn/activations/mnist/fashion_mnist/seed0/step10b/pool2.h5"
    with h5py.File(path) as f:
        assert f["activations"].shape == (100, 1600) and f["activations"].dtype == np.float32
        assert f["activations"].compression == "lzf" and f["activations"].chunks is not None
        assert list(f["layer_shape"][()] if "layer_shape" in f else f.attrs["layer_shape"]) == [
            64,
            5,
            5,
        ]
        assert (np.bincount(f["labels"][...]) == 10).all()
        assert f.attrs["source"] == "fashion_mnist" and f.attrs["target"] == "mnist"
        assert f.attrs["step"] == "10b" and f.attrs["layer"] == "pool2"
        index = f["sample_index"][...]
    # every model sees the same target samples, the shared untrained model too
    other = tiny_run / "results/cnn/activations/mnist/initial/classes10/seed0/step0/conv1.h5"
    with h5py.File(other) as f:
        assert np.array_equal(f["sample_index"][...], index)
        assert f.attrs["source"] == "initial" and f.attrs["step"] == "0"
    assert not (tiny_run / "results/cnn/activations/mnist/mnist/seed0/step0").exists()


def test_every_job_logs_its_start_up_and_lifetime(tiny_run):
    # What benchmarks/job_overhead.py sums: one row per job, start-up within the lifetime.
    import importlib.util

    spec = importlib.util.spec_from_file_location("job_overhead", REPO / "benchmarks" /
                                                  "job_overhead.py")  # fmt: skip
    job_overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job_overhead)
    rows = job_overhead.collect(tiny_run / "results")
    rules = {row["rule"] for row in rows}
    assert {"pretrain", "extract", "metrics", "finetune", "tables", "figures"} <= rules
    bench_files = list((tiny_run / "results").rglob("benchmarks/**/*.tsv"))
    assert len(rows) == len(bench_files)
    for row in rows:  # equal when the job's own work takes under 10 ms (table_html)
        assert 0 < row["startup_s"] <= row["wall_s"], row


def test_nothing_to_do_after_a_complete_run(tiny_run):
    assert planned_jobs(tiny_run, tiny_config()) == []


def test_settings_that_do_not_change_results_rerun_nothing(tiny_run):
    # how data are obtained, where training runs and how runs are grouped change no result
    config = tiny_config()
    config.update(allow_download=True, device="cpu", runs_together={"cpu": 1, "cuda": 8})
    assert planned_jobs(tiny_run, config) == []


INITIAL_RULES = {"initial_model", "extract_initial", "metrics_initial", "finetune_initial"}


@pytest.mark.parametrize("source, classes", [("mnist_noise", None), ("mnist_split1", "5")])
def test_adding_a_source_plans_only_its_jobs(tiny_run, source, classes):
    """Only the new source's own jobs (and the aggregates) run. A source with 10 classes, as
    the existing ones, reuses their untrained model: no step-0 job. The first 5-class source
    brings its untrained model: made once, extracted, measured and fine-tuned once per target."""
    config = tiny_config()
    config["tracks"]["cnn"]["sources"][source] = {"batch_size": 16}
    jobs = planned_jobs(tiny_run, config)
    own = [(rule, wc) for rule, wc in jobs if rule not in AGGREGATES | INITIAL_RULES]
    assert own, "adding a source must plan its jobs"
    for rule, wc in own:
        assert wc.get("source", wc.get("dataset")) == source, (rule, wc)
    rules = sorted(rule for rule, _ in own)
    assert rules.count("pretrain") == 1
    assert rules.count("extract") == rules.count("metrics") == rules.count("finetune") == 2
    # the studies: QUANTA and layer transfer on both targets; random tasks use only mnist
    assert rules.count("quanta") == rules.count("layer_transfer") == 2
    assert "random_tasks" not in rules
    initial = sorted((rule, wc.get("classes")) for rule, wc in jobs if rule in INITIAL_RULES)
    if classes is None:
        assert initial == []
    else:
        assert initial == sorted([("initial_model", classes)] + [
            (rule, classes) for rule in ("extract_initial", "metrics_initial", "finetune_initial")
            for _target in ("mnist", "fashion_mnist")
        ])  # fmt: skip
    assert {rule for rule, _ in jobs} - {r for r, _ in own} <= AGGREGATES | INITIAL_RULES


def test_step_zero_is_computed_once_per_target_and_seed(tiny_run):
    """The untrained model is fine-tuned, extracted and measured once per (target, seed) for
    both sources (10 classes each); each source's step-0 table is that one with its name."""
    import pandas as pd

    results = tiny_run / "results" / "cnn"
    checkpoints = sorted(p.relative_to(results) for p in results.rglob("step0.pt"))
    assert checkpoints == [Path("checkpoints/initial/classes10/seed0/step0.pt")]
    for stage in ("finetune", "metrics"):
        logs = sorted(
            p.relative_to(results / "logs") for p in (results / "logs" / stage).rglob("*.log")
        )
        shared = [p for p in logs if "initial" in p.parts]
        assert shared == [Path(f"{stage}/{t}/initial/classes10/seed0.log")
                          for t in ("fashion_mnist", "mnist")], logs  # fmt: skip
        for target in ("mnist", "fashion_mnist"):
            table = pd.read_csv(results / stage / target / "initial/classes10/seed0/step0.csv")
            assert set(table["source"]) == {"initial"}
            for source in ("mnist", "fashion_mnist"):
                copy = pd.read_csv(results / stage / target / source / "seed0/step0.csv")
                assert set(copy["source"]) == {source}
                pd.testing.assert_frame_equal(
                    copy.drop(columns="source"), table.drop(columns="source")
                )
    # fine-tuning logs: step 0 only in the untrained model's jobs, once per target
    fine_tuned = [
        (log.parent.name, line)
        for log in (results / "logs" / "finetune").rglob("*.log")
        for line in log.read_text().splitlines()
        if "fine-tuned" in line and " step 0 on " in line
    ]
    assert len(fine_tuned) == 2 and all(" initial step 0 on " in line for _, line in fine_tuned)
    pretrain = pd.read_csv(results / "tables" / "pretrain.csv")
    # the history still evaluates each source's step 0 on the source's own data
    assert sorted(pretrain.query("step == '0'")["source"]) == ["fashion_mnist", "mnist"]


def test_deleting_an_activation_file_replans_producer_and_dependants(tiny_copy):
    path = tiny_copy / "results/cnn/activations/fashion_mnist/mnist/seed0/step3b/pool2.h5"
    path.unlink()
    jobs = planned_jobs(tiny_copy, tiny_config())
    run = {"track": "cnn", "target": "fashion_mnist", "source": "mnist", "seed": "0"}
    producers = sorted((rule, wc) for rule, wc in jobs if rule not in AGGREGATES)
    assert producers == sorted([("extract", run), ("metrics", run)])
    from transferability.run.config import TRACK_FIGURES

    aggregates = sorted(rule for rule, _ in jobs if rule in AGGREGATES)
    pages = ["table_html"] * 6  # the main tables' report pages
    assert aggregates == ["all"] + ["figure"] * len(TRACK_FIGURES) + pages + ["tables"]


def test_a_metric_plugin_reaches_every_table_and_its_edit_reruns_only_metrics(tiny_copy):
    """One config line adds the example k-NN metric (a ``features`` plugin) to a finished run:
    only the metric jobs and what reads them run; an edit of the plugin re-runs the same."""
    plugin = tiny_copy / "my_metric.py"
    plugin.write_text((REPO / "examples" / "metric_plugin.py").read_text())
    config = tiny_config()
    config["metric_plugins"] = ["my_metric.py"]  # relative to the working directory
    config["tracks"]["cnn"]["metrics"] += ["knn_loo"]
    runs = [("metrics", {"track": "cnn", "target": t, "source": s, "seed": "0"})
            for t in ("fashion_mnist", "mnist") for s in ("fashion_mnist", "mnist")]  # fmt: skip
    # the untrained model's metrics, once per target; each source's step 0 copies them
    runs += [("metrics_initial", {"track": "cnn", "target": t, "classes": "10", "seed": "0"})
             for t in ("fashion_mnist", "mnist")]  # fmt: skip

    def metric_jobs():
        jobs = planned_jobs(tiny_copy, config)
        assert {rule for rule, _ in jobs} - {"metrics", "metrics_initial"} <= AGGREGATES, jobs
        return sorted((job for job in jobs if job[0] not in AGGREGATES), key=str)

    assert metric_jobs() == sorted(runs, key=str)
    snakemake(tiny_copy, config, "--cores", "2")
    tables = tiny_copy / "results/cnn/tables"
    rows = pd.read_csv(tables / "metrics.csv").query("metric == 'knn_loo'")
    assert set(rows["layer"]) == set(config["tracks"]["cnn"]["layers"])
    assert len(rows) == 4 * 3 * 4 and rows["value"].between(0, 1).all()  # runs × steps × layers
    correlations = pd.read_csv(tables / "correlations.csv").query("metric == 'knn_loo'")
    pooled = correlations.query("grouping == 'all'")
    assert len(pooled) == 2 * 4
    varying = pooled["layer"] != "input"  # every model sees the same images: constant there
    assert pooled[varying]["rho_boot_low"].notna().all()
    assert pooled[~varying]["note"].str.contains("constant").all()
    assert pooled[varying]["best_baseline"].str.startswith("baseline_").all()
    leaderboard = pd.read_csv(tables / "leaderboard.csv")
    assert (leaderboard.query("metric == 'knn_loo'")["kind"] == "metric").sum() == 2
    assert planned_jobs(tiny_copy, config) == []

    plugin.write_text(plugin.read_text().replace("K = 5", "K = 3"))
    assert metric_jobs() == sorted(runs, key=str)


def test_corrupted_checkpoint_fails_naming_the_file(tiny_copy):
    checkpoint = tiny_copy / "results/cnn/checkpoints/mnist/seed0/step3b.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    (tiny_copy / "results/cnn/activations/mnist/mnist/seed0/step10b/fc1.h5").unlink()
    kept = tiny_copy / "results/cnn/tables/correlations.csv"
    before = kept.read_bytes()
    result = snakemake(tiny_copy, tiny_config(), "--cores", "1", check=False)
    assert result.returncode != 0
    log = (tiny_copy / "results/cnn/logs/extract/mnist/mnist/seed0.log").read_text()
    output = result.stdout + result.stderr + log
    assert "cannot read checkpoint" in output and "step3b.pt" in output
    assert kept.read_bytes() == before  # nothing already computed is lost
    assert (tiny_copy / "results/cnn/checkpoints/mnist/seed0/step10b.pt").is_file()


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"seedz": [0]}, "'seedz' was unexpected"),
        ({"seeds": "two"}, "['tracks']['cnn']['seeds']"),
        ({"layers": ["pool9"]}, "tracks.cnn.layers: unknown layer(s) ['pool9']"),
        ({"metrics": ["idd"]}, "tracks.cnn.metrics: unknown metric(s) ['idd']"),
        ({"metrics": ["id", "c56"]}, "'c56' combines ['s5', 's6']"),
        ({"sources": {"mnist": {"dataset": "mnist_typo"}}}, "known datasets: ['mnist'"),
        ({"metric_plugins": ["broken.py"]}, "broken.py failed to import: NameError"),
        ({"metric_plugins": ["clash.py"]}, "'ss' is already registered as a built-in"),
        (
            {
                "metric_plugins": [str(REPO / "examples/metric_plugin.py")],
                "features_max_gib": 1e-3,
                "metrics": ["id", "knn_loo"],
            },
            "layer 'conv1' of source",
        ),
        ({"job_resources": {"pretrian": {"runtime": 5}}}, "job_resources: unknown rule 'pretrian'"),
        ({"job_resources": {"pretrain": {"time": 5}}}, "job_resources.pretrain: unknown resource"),
        ({"job_resources": {"pretrain": {"runtime": 0}}}, "['job_resources']['pretrain']"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, change, expected):
    (tmp_path / "broken.py").write_text("undefined_name + 1\n")
    (tmp_path / "clash.py").write_text(
        "from transferability.metrics import register_metric\n"
        "register_metric('ss', higher_is_better=True)(lambda stats: 0.0)\n"
    )
    config = tiny_config(
        **{
            k: v
            for k, v in change.items()
            if k in ("metrics", "sources", "seedz", "seeds", "layers")
        }
    )
    top_level = ("metric_plugins", "features_max_gib", "job_resources")
    config.update({k: v for k, v in change.items() if k in top_level})
    result = snakemake(tmp_path, config, "--cores", "1", check=False)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_paper_config_plans_the_full_thesis_grid(tmp_path):
    """config/paper.yaml: 6 sources × 10 seeds pre-trained, every run extracted and fine-tuned
    on both targets (its 12 checkpoints inside each job)."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["data_dir"] = str(DATA_DIR)
    result = snakemake(tmp_path, config, "-n", "--quiet", "rules")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert counts["pretrain"] == "60"
    assert counts["extract"] == counts["finetune"] == counts["metrics"] == "120"
    # step 0: one untrained model per (seed, classes: 10 and the splits' 5), once per target
    assert counts["initial_model"] == "20"
    assert counts["extract_initial"] == counts["finetune_initial"] == "40"
    assert counts["metrics_initial"] == "40"
    # the studies: one job per (target, source, seed) or (family, source, seed)
    assert counts["quanta"] == counts["layer_transfer"] == "120"
    assert counts["random_tasks"] == "18" and counts["random_task_references"] == "3"
    track = config["tracks"]["cnn"]
    assert len(track["pretrain"]["checkpoints"]) == len(track["finetune"]["checkpoints"]) == 12


def test_reproduce_config_plans_its_protocol(tmp_path):
    """config/reproduce.yaml merged into config.yaml, as `--configfile` does: 6 sources × 3
    seeds, both targets, the studies switched off (null), the grids docs/reproduction used."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / "reproduce.yaml").read_text()))
    config["data_dir"] = str(DATA_DIR)
    track = config["tracks"]["cnn"]
    assert track["pretrain"]["checkpoints"] == ["0", "10b", "100b", "300b", "1e", "3e", "10e"]
    assert (
        track["finetune"]["checkpoints"][-1] == "1e" and track["finetune"]["eval_samples"] is None
    )
    result = snakemake(tmp_path, config, "-n", "--quiet", "rules")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert counts["pretrain"] == "18"
    assert counts["extract"] == counts["finetune"] == counts["metrics"] == "36"
    assert counts["initial_model"] == "6" and counts["finetune_initial"] == "12"
    assert not {"quanta", "layer_transfer", "random_tasks"} & set(counts)
    assert counts["figure"] == "10"  # the track's figures, none of the studies'


def test_report_holds_every_figure_and_table_with_captions(tiny_run):
    """`snakemake --report` on the tiny run: one self-contained HTML file with every figure and
    table of the run, grouped by track and stage, with the captions of report/*.rst."""
    report = tiny_run / "report.html"
    snakemake(tiny_run, tiny_config(), *report_args(report))
    html = report.read_text()
    figures = sorted((tiny_run / "results" / "cnn" / "figures").glob("*.png"))
    tables = sorted((tiny_run / "results" / "cnn" / "tables").glob("*.csv"))
    assert len(figures) >= 10 and len(tables) >= 12
    # each table is in the report as its HTML page (rule table_html), which carries the CSV
    for path in figures + [t.with_suffix(".html") for t in tables]:
        assert path.name in html, path.name
    captions = ["Pre-training test accuracy of each source", "QUANTA score per layer",
                "Layer transfer (Shanmugam et al.", "Nguyen et al. 2020, LEEP, Fig. 4",
                "Fisher 95 % band", "How well each metric predicts transfer"]  # fmt: skip
    for caption in captions:
        assert caption in html, caption
    for stage in ("pre-training", "correlations", "random tasks", "QUANTA tables", "main result"):
        assert f'"{stage}"' in html, stage
    assert "seed 00" not in html  # papers are cited by author and year (docs/references.md)
    assert "align-items: safe center" in html  # report/stylesheet.css
