"""Streaming metrics vs the naive load-everything path, side by side (SPEC §7, issue 4).

Writes a synthetic post-ReLU activation file of VGG ``pool1`` shape (default 1 200 samples ×
64 × 112 × 112 = 802 816 features, float32, 40 classes) in row blocks, then computes every
registered layer metric twice, each in its own subprocess so that peak RSS is measured
separately:

- ``streaming``: ``compute_layer_metrics(path, names)`` — one pass over column strips for the
  Gram-based statistics, one over row blocks for the per-image featuremap statistics;
- ``naive``: ``h5py`` reads the whole array, then ``compute_metrics(features, labels, names)``;

and a third time streaming without the peers' six metrics (TransRate, GBC, NLEEP, PARC, SFDA,
ETran), to show what they add to the pass (``streaming_without_peers``).

Writes ``benchmarks/results/streaming_metrics.{json,md}`` and prints the table.

    .venv/bin/python benchmarks/streaming_metrics.py [--n 1200] [--shape 64 112 112]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
#: The peers' metrics (PEER_METRICS.md), timed with and without in the streaming pass.
PEERS = ("transrate", "gbc", "nleep", "parc", "sfda", "etran")


def write_synthetic(path: Path, n: int, shape: tuple[int, ...], classes: int, seed: int) -> None:
    """Class-structured ReLU activations, written 32 rows at a time (never all in RAM)."""
    from transferability.artifacts import activation_writer

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    class_shift = rng.standard_normal((classes, shape[0])).astype(np.float32)  # per channel
    with activation_writer(path, n, shape, labels, np.arange(n), {"layer": "pool1"}) as data:
        for start in range(0, n, 32):
            rows = np.arange(start, min(n, start + 32))
            block = rng.standard_normal((len(rows), *shape), dtype=np.float32)
            block += class_shift[labels[rows]][:, :, None, None]
            np.maximum(block, 0, out=block)
            data[start : start + len(rows)] = block.reshape(len(rows), -1)


def run(mode: str, path: str, names: list[str]) -> dict:
    import h5py

    from transferability.metrics import compute_layer_metrics, compute_metrics

    start = time.perf_counter()
    if mode == "streaming":
        values = compute_layer_metrics(path, names)
    else:
        with h5py.File(path, "r") as f:
            features, labels = f["activations"][...], f["labels"][...]
            shape = tuple(f.attrs["layer_shape"])
        values = compute_metrics(features.reshape(len(features), *shape), labels, names)
    return {
        "mode": mode,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "values": values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 112, 112])
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--run", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--metrics", nargs="*", help="default: every registered layer metric")
    parser.add_argument(
        "--file", type=Path, help="keep the synthetic file here (reused if it exists)"
    )
    args = parser.parse_args()
    from transferability.metrics import metric_names

    names = args.metrics or metric_names("layer")
    if args.run:
        print(json.dumps(run(args.run[0], args.run[1], names)))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = args.file or Path(tmp) / "pool1.h5"
        t0 = time.perf_counter()
        if not path.exists():
            write_synthetic(path, args.n, tuple(args.shape), args.classes, seed=0)
        write_s = time.perf_counter() - t0
        size_gb = path.stat().st_size / 1e9
        results = {}
        without = [m for m in names if m not in PEERS]
        runs = {"streaming": ("streaming", names), "naive": ("naive", names),
                "streaming_without_peers": ("streaming", without)}  # fmt: skip
        for label, (mode, chosen) in runs.items():
            cmd = [sys.executable, __file__, "--run", mode, str(path), "--metrics", *chosen]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[label] = json.loads(out.strip().splitlines()[-1])
    stream, naive = results["streaming"], results["naive"]
    base = results["streaming_without_peers"]
    rel = {
        name: abs(stream["values"][name] - naive["values"][name])
        / max(abs(naive["values"][name]), 1e-300)
        for name in names
    }
    d = int(np.prod(args.shape))
    summary = {
        "n": args.n, "layer_shape": args.shape, "features": d,
        "float32_gb": args.n * d * 4 / 1e9, "file_gb": size_gb, "write_seconds": write_s,
        "metrics": names, "streaming": stream, "naive": naive, "max_rel_diff": max(rel.values()),
        "rel_diff": rel, "streaming_without_peers": base,
        "peers_time_ratio": stream["seconds"] / base["seconds"],
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "streaming_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"Every layer metric ({', '.join(names)}) of one synthetic activation file: "
        f"n = {args.n}, layer shape {tuple(args.shape)} = {d:,} features "
        f"({summary['float32_gb']:.2f} GB as float32, {size_gb:.2f} GB on disk, lzf).",
        "",
        "| path | time (s) | peak RSS (MB) |",
        "|---|---|---|",
        f"| streaming (`compute_layer_metrics`) | {stream['seconds']:.1f} | "
        f"{stream['peak_rss_mb']:,.0f} |",
        f"| streaming without the peers' six ({', '.join(PEERS)}) | {base['seconds']:.1f} | "
        f"{base['peak_rss_mb']:,.0f} |",
        f"| naive (load all, `compute_metrics`) | {naive['seconds']:.1f} | "
        f"{naive['peak_rss_mb']:,.0f} |",
        "",
        f"The peers' six metrics make the streaming pass {summary['peers_time_ratio']:.2f}× as "
        f"long (goal ≤ 1.5×). "
        f"Peak RSS ratio naive / streaming: {naive['peak_rss_mb'] / stream['peak_rss_mb']:.1f}×. "
        f"Largest relative difference between the two paths over all metrics: "
        f"{summary['max_rel_diff']:.1e}.",
        "",
        "| metric | streaming | naive | relative difference |",
        "|---|---|---|---|",
        *(
            f"| {m} | {stream['values'][m]:.6g} | {naive['values'][m]:.6g} | {rel[m]:.1e} |"
            for m in names
        ),
    ]
    table = "\n".join(lines)
    (RESULTS / "streaming_metrics.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
