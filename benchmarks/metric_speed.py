"""Every layer metric next to its peer's own code, timed side by side (issue 23, item 6).

On seeded float32 class-structured features (ReLU of Gaussian noise plus a per-feature class
shift; default shapes n × d = 1000 × 2048 and 500 × 9216, 10 classes) it times, in one process
and interleaved repeat by repeat (so that both sides see the same load):

- ``alone``: ``compute_metrics(features, labels, [name])`` — the statistics pass plus the metric;
- ``in the pass``: the one pass of all layer metrics, as ``compute_metrics(features, labels,
  all_names)`` runs it (statistics, then each metric in order, sharing cached factorisations),
  with each metric's own share; the ``pass`` row is the whole;
- ``peer``: the peer's own function on the same float32 array (sklearn/NumPy/numba as its code
  calls them), where a checkout is given.

Medians over ``--repeats`` runs (3 for anything slower than 3 s) after one warm-up run.
Ratios are peer time / ours (> 1: ours is faster). Values are compared where they mean the same
thing; the peers compute in the input's precision (float32), this project in float64.

The peers' code is not part of this repository: fetch it yourself into a scratch folder and
pass ``--peers DIR`` (a missing checkout is skipped):

    git clone https://github.com/dbolya/parc DIR/parc
    git clone https://github.com/thuml/Transfer-Learning-Library DIR/Transfer-Learning-Library
    git clone https://github.com/thuml/LogME DIR/LogME
    git clone https://github.com/TencentARC/SFDA DIR/SFDA
    git clone https://github.com/mgholamikn/ETran DIR/ETran

(the peers of gbc and nleep, google-research ``stable_transfer``, need TensorFlow and are not
run). The peers' d × d algorithms (TLlib ``h_score``/``regularized_h_score``/``transrate``,
SFDA, ETran's LDA) are skipped above ``--max-peer-features`` (default 4096): at d = 9216 each
takes minutes. Without ``--peers`` only this project's metrics are timed.

Writes ``benchmarks/results/metric_speed.{json,md}`` and prints the table.

    .venv/bin/python benchmarks/metric_speed.py --peers /tmp/peers
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _machine import cpu_model

RESULTS = Path(__file__).parent / "results"
SLOW_SECONDS = 3.0  # a run slower than this is repeated 3 times only
#: Module names the peers' folders define more than once (``utils``, ``constants``, ...): each
#: peer is imported with its own folder first on sys.path and these evicted around it.
PEER_LOCAL_MODULES = ("constants", "datasets", "methods", "metrics", "models", "utils")


@dataclass
class Peer:
    """A peer's own function for one of this project's metrics."""

    metric: str  # this project's metric it is timed against
    repo: str  # folder under --peers (the GitHub repository's name)
    github: str
    file: str
    call: str  # what is called, for the table
    dxd: bool  # d × d algorithm (skipped above --max-peer-features)
    compare_with: str | None  # this project's metric with the same definition (None: differs)
    note: str = ""
    fn: Callable | None = None


PEERS = [
    Peer("parc", "parc", "dbolya/parc", "methods.py", "PARC(n_dims=32)", False, "parc",
         "peer's one-hot width 16 (a power of 2: its label RDM is exactly two-valued)"),
    Peer("hscore", "Transfer-Learning-Library", "thuml/Transfer-Learning-Library",
         "tllib/ranking/hscore.py", "h_score", True, "hscore"),
    Peer("hscore_reg", "Transfer-Learning-Library", "thuml/Transfer-Learning-Library",
         "tllib/ranking/hscore.py", "regularized_h_score", True, None,
         "TLlib uses 1/(n−1) for cov(g); this project 1/n"),
    Peer("logme", "LogME", "thuml/LogME", "LogME.py", "LogME().fit", False,
         "logme_thuml_fixed_point", "value: this project's logme_thuml_fixed_point"),
    Peer("logme_thuml_fixed_point", "LogME", "thuml/LogME", "LogME.py", "LogME().fit", False,
         "logme_thuml_fixed_point"),
    Peer("transrate", "Transfer-Learning-Library", "thuml/Transfer-Learning-Library",
         "tllib/ranking/transrate.py", "transrate", True, "transrate"),
    Peer("sfda", "SFDA", "TencentARC/SFDA", "metrics.py", "SFDA_Score", True, "sfda"),
    Peer("etran", "ETran", "mgholamikn/ETran", "metrics.py",
         "Energy_Score(x, 0.5, 'bot') + LDA_Score", True, "etran"),
]  # fmt: skip


def features(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-structured float32 ReLU features and labels 0..classes−1 (balanced)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    shift = rng.standard_normal((classes, d), dtype=np.float32)
    x = rng.standard_normal((n, d), dtype=np.float32) + shift[labels]
    np.maximum(x, 0, out=x)
    return x, labels


def _import_file(folder: Path, file: str, name: str):
    """Import ``folder/file`` with ``folder`` first on sys.path, in isolation from the other
    peers' same-named helper modules."""

    def local(name: str) -> bool:  # e.g. utils, models, models.group1.resnet
        return name.split(".", 1)[0] in PEER_LOCAL_MODULES

    saved_path = list(sys.path)
    saved = {m: sys.modules.pop(m) for m in list(sys.modules) if local(m)}
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(name, folder / file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        for m in [m for m in sys.modules if local(m)]:
            del sys.modules[m]
        sys.modules.update(saved)
    return module


def _commit(folder: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_peers(root: Path | None, classes: int) -> tuple[list[Peer], dict[str, str]]:
    """The peers whose checkouts exist under ``root``, their functions bound; repo → commit."""
    if root is None:
        return [], {}
    found, commits, modules = [], {}, {}
    for peer in PEERS:
        folder = root / peer.repo
        if not (folder / peer.file).exists():
            print(f"peer {peer.github} not found at {folder / peer.file}: skipped")
            continue
        key = (peer.repo, peer.file)
        if key not in modules:
            name = f"peer_{peer.repo}_{Path(peer.file).stem}".replace("-", "_")
            modules[key] = _import_file(folder, peer.file, name)
            commits[peer.github] = _commit(folder)
        peer.fn = _bind(peer, modules[key], classes)
        found.append(peer)
    return found, commits


def _bind(peer: Peer, module, classes: int) -> Callable:
    if peer.metric == "parc":
        width = 1 << max(1, (classes - 1).bit_length())  # see Peer.note
        module.constants.num_classes["metric_speed"] = width
        return lambda x, y: module.PARC(n_dims=32)(x, None, y, "src", "metric_speed", "arch", None)
    if peer.call == "LogME().fit":
        return lambda x, y: module.LogME(regression=False).fit(x, y)
    if peer.metric == "sfda":
        return lambda x, y: module.SFDA_Score(x, y)  # it overwrites x: timed on a copy
    if peer.metric == "etran":
        return lambda x, y: module.Energy_Score(x, 0.5, "bot") + module.LDA_Score(x, y)
    return getattr(module, peer.call)


def _run(fn: Callable, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, float(value)


def _median(times: list[float]) -> float:
    return float(statistics.median(times))


def bench_shape(n, d, classes, seed, names, peers, repeats, max_peer_features) -> dict:
    from transferability.metrics import METRICS, compute_metrics, stats_options
    from transferability.metrics.stats import layer_stats

    x, y = features(n, d, classes, seed)
    options = stats_options(names)

    def one_pass() -> tuple[float, dict[str, float], dict[str, float]]:
        start = time.perf_counter()
        stats = layer_stats(x, y, **options)
        shares = {"statistics": time.perf_counter() - start}
        values = {}
        for name in names:
            shares[name], values[name] = _run(METRICS[name], stats)
        return time.perf_counter() - start, shares, values

    def alone(name: str) -> tuple[float, float]:
        t, values = _run_dict(lambda: compute_metrics(x, y, [name]))
        return t, values[name]

    active = [p for p in peers if not (p.dxd and d > max_peer_features)]
    skipped = {p.metric: p for p in peers if p not in active}

    def peer_run(peer: Peer) -> tuple[float, float]:
        arg = x.copy() if peer.metric == "sfda" else x
        return _run(peer.fn, arg, y)

    print(f"n = {n}, d = {d}: warm-up", flush=True)
    one_pass()
    for peer in active:
        peer_run(peer)

    # interleaved: per repeat, the pass, then each metric alone next to its peer
    rec = {name: {"alone": [], "pass": [], "peer": []} for name in names}
    pass_total, stats_share, ours_value, peer_value = [], [], {}, {}
    slow: set[str] = set()
    for r in range(repeats):
        if r < 3 or "pass" not in slow:
            total, shares, values = one_pass()
            pass_total.append(total)
            stats_share.append(shares["statistics"])
            for name in names:
                rec[name]["pass"].append(shares[name])
            slow |= {"pass"} if total > SLOW_SECONDS else set()
        for name in names:
            if r >= 3 and name in slow:
                continue
            t, ours_value[name] = alone(name)
            rec[name]["alone"].append(t)
            peer = next((p for p in active if p.metric == name), None)
            if peer is not None:
                t_peer, peer_value[name] = peer_run(peer)
                rec[name]["peer"].append(t_peer)
                t = max(t, t_peer)
            if t > SLOW_SECONDS:
                slow.add(name)
        print(f"  repeat {r + 1}/{repeats} done", flush=True)

    # PARC also on a float64 copy: the peer's algorithm without its float32 rounding
    parc64 = None
    parc_peer = next((p for p in active if p.metric == "parc"), None)
    if parc_peer is not None:
        parc64 = float(parc_peer.fn(x.astype(np.float64), y))

    rows = {}
    for name in names:
        row = {
            "alone_s": _median(rec[name]["alone"]),
            "alone_runs": len(rec[name]["alone"]),
            "pass_s": _median(rec[name]["pass"]),
            "value": ours_value[name],
        }
        peer = next((p for p in active if p.metric == name), None)
        if peer is not None:
            same = peer.compare_with
            ours = ours_value[same] if same in ours_value else None
            row["peer"] = {
                "repo": peer.github,
                "file": peer.file,
                "call": peer.call,
                "seconds": _median(rec[name]["peer"]),
                "runs": len(rec[name]["peer"]),
                "value": peer_value[name],
                "compared_with": same,
                "rel_diff": None if ours is None else _rel(ours, peer_value[name]),
                "note": peer.note,
            }
            row["ratio_alone"] = row["peer"]["seconds"] / row["alone_s"]
            row["ratio_pass"] = row["peer"]["seconds"] / row["pass_s"]
            if name == "parc" and parc64 is not None:
                row["peer"]["value_float64_input"] = parc64
                row["peer"]["rel_diff_float64_input"] = _rel(ours_value["parc"], parc64)
        elif name in skipped:
            row["peer_skipped"] = (
                f"{skipped[name].github} {skipped[name].call}: d × d algorithm, "
                f"d = {d} > --max-peer-features {max_peer_features}"
            )
        rows[name] = row
    return {
        "n": n, "d": d, "classes": classes, "seed": seed, "metrics": rows,
        "pass_s": _median(pass_total), "pass_runs": len(pass_total),
        "statistics_s": _median(stats_share),
    }  # fmt: skip


def _run_dict(fn: Callable) -> tuple[float, dict]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _fmt_s(s: float) -> str:
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def _fmt_ratio(r: float) -> str:
    return f"{r:.2f}" if r < 100 else f"{r:.0f}"


def markdown(summary: dict) -> str:
    lines = [
        "# Layer metrics vs the peers' own code",
        "",
        f"Command: `{summary['command']}`  ",
        f"CPU: {summary['cpu']} ({summary['cpus']} logical CPUs, BLAS threads "
        f"{summary['blas_threads']}); load average before / after: "
        f"{summary['loadavg_before']} / {summary['loadavg_after']}  ",
        f"Python {summary['versions']['python']}, NumPy {summary['versions']['numpy']}, "
        f"SciPy {summary['versions']['scipy']}, scikit-learn "
        f"{summary['versions']['sklearn']}; {summary['date']}.",
        "",
        "Seeded float32 class-structured features (ReLU of N(0, 1) + a per-feature class "
        "shift), balanced classes. Times: medians (s) of the runs shown after one warm-up, "
        "ours and the peer's interleaved. *alone*: `compute_metrics(x, y, [name])`, the "
        "statistics pass included; *in the pass*: the metric's own share of the one pass of all "
        "layer metrics (cached factorisations shared, statistics counted once in the `pass` "
        "row). Ratio = peer time / ours (> 1: ours faster).",
    ]
    if summary["peers"]:
        lines += [
            "",
            "Peers' code (fetched, not part of this repository): "
            + ", ".join(f"{repo} @ {commit[:12]}" for repo, commit in summary["peers"].items())
            + ".",
        ]
    for shape in summary["shapes"]:
        lines += [
            "",
            f"## n = {shape['n']}, d = {shape['d']}, {shape['classes']} classes",
            "",
            "| metric | ours alone | ours in the pass | peer's code | peer | ratio alone | "
            "ratio in the pass | ours value | peer value | rel. diff |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in shape["metrics"].items():
            cells = [name, f"{_fmt_s(row['alone_s'])} ({row['alone_runs']})",
                     _fmt_s(row["pass_s"])]  # fmt: skip
            peer = row.get("peer")
            if peer:
                rel = "—" if peer["rel_diff"] is None else f"{peer['rel_diff']:.1e}"
                cells += [
                    f"{peer['repo']} `{peer['call']}`",
                    f"{_fmt_s(peer['seconds'])} ({peer['runs']})",
                    f"**{_fmt_ratio(row['ratio_alone'])}**", _fmt_ratio(row["ratio_pass"]),
                    f"{row['value']:.8g}", f"{peer['value']:.8g}", rel,
                ]  # fmt: skip
            elif "peer_skipped" in row:
                cells += ["skipped: d × d at this d", "", "", "", f"{row['value']:.8g}", "", ""]
            else:
                cells += ["", "", "", "", f"{row['value']:.8g}", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append(
            f"| **pass** (all {len(shape['metrics'])}) | | {_fmt_s(shape['pass_s'])} "
            f"({shape['pass_runs']}; statistics {_fmt_s(shape['statistics_s'])}) "
            "| | | | | | | |"
        )
        notes = [
            f"- {name}: {row['peer']['note']}"
            for name, row in shape["metrics"].items()
            if row.get("peer", {}).get("note")
        ]
        parc = shape["metrics"].get("parc", {}).get("peer", {})
        if "value_float64_input" in parc:
            notes.append(
                f"- parc: the peer on a float64 copy of the features gives "
                f"{parc['value_float64_input']:.12g} (rel. diff to ours "
                f"{parc['rel_diff_float64_input']:.1e}); on the float32 array as timed "
                f"{parc['value']:.12g}."
            )
        if notes:
            lines += ["", *notes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=Path, help="folder with the peers' checkouts")
    parser.add_argument("--shapes", nargs="+", default=["1000x2048", "500x9216"],
                        help="n×d pairs (default: 1000x2048 500x9216)")  # fmt: skip
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metrics", nargs="*", help="default: every registered layer metric")
    parser.add_argument("--max-peer-features", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()

    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    from transferability.metrics import metric_names

    warnings.simplefilter("ignore")  # the peers' and ours (e.g. NaN metrics): not timed output
    names = args.metrics or metric_names("layer")
    peers, commits = load_peers(args.peers, args.classes)
    peers = [p for p in peers if p.metric in names]
    load_before = os.getloadavg()
    shapes = []
    for spec in args.shapes:
        n, d = (int(v) for v in spec.lower().split("x"))
        shapes.append(bench_shape(n, d, args.classes, args.seed, names, peers, args.repeats,
                                  args.max_peer_features))  # fmt: skip
    blas = sorted({f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()
                   if i["user_api"] == "blas"})  # fmt: skip
    summary = {
        "command": " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv]),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "blas_threads": ", ".join(blas),
        "loadavg_before": " ".join(f"{v:.1f}" for v in load_before),
        "loadavg_after": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "sklearn": sklearn.__version__,
        },  # fmt: skip
        "repeats": args.repeats,
        "peers": commits,
        "shapes": shapes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metric_speed.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(summary)
    (args.out / "metric_speed.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
