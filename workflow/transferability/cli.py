"""The ``transferability`` command. Subcommand ``rank`` (SPEC §12): rank candidate models for a
target dataset or image folder by transferability metrics, without fine-tuning.

A thin layer over :mod:`transferability.rank`; user errors print
``transferability rank: error: <message>`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "transferability"


def _split_list(values: Sequence[str] | None) -> list[str]:
    """Repeated and/or comma-separated option values as one list."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``transferability`` and its subcommands."""
    from transferability.data.arrays import KNOWN_DATASETS
    from transferability.data.layouts import FORMATS
    from transferability.rank import DEFAULT_METRICS

    parser = argparse.ArgumentParser(
        prog=PROG, description="Transferability estimation: tools around the workflow."
    )
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rank = subs.add_parser(
        "rank",
        help="rank candidate models for a target without fine-tuning",
        description=(
            "Extract one layer of every candidate model on a class-balanced subset of the "
            "target, compute transferability metrics and print the models ranked by one of "
            "them (no fine-tuning). Candidates are checkpoint files written by the workflow "
            "(--model) and/or a workflow config's sources (--config)."
        ),
    )
    what = rank.add_argument_group("target and candidates")
    what.add_argument(
        "--target",
        required=True,
        help=f"dataset name ({', '.join(KNOWN_DATASETS)}; its test split) or an image folder "
        "with one sub-folder per class",
    )
    what.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH",
        help="checkpoint file written by the workflow (CNN step<label>.pt or VGG final.pt); "
        "repeat for several",
    )
    what.add_argument(
        "--target-format",
        default="imagefolder",
        choices=FORMATS,
        help="layout of a folder --target: class folders (default) or a torchvision dataset "
        "root as torchvision stores it",
    )
    what.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="FILE_OR_NAME",
        help="a plain weight file (.safetensors or a state dict, e.g. saved from a torchvision "
        "or timm model), a torchvision weight name such as ResNet18_Weights.IMAGENET1K_V1 (read "
        "from the local torch hub cache) or 'pretrained' for a timm --arch (the local Hugging "
        "Face cache); needs --arch; repeat for several",
    )
    what.add_argument(
        "--arch",
        action="append",
        default=[],
        metavar="NAME",
        help="architecture of the --weights of the same position (resnet18, vit_b_16, "
        "timm/convnext_atto.d2_in1k, ...); "
        "one given for several --weights applies to all",
    )
    what.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="input side the --weights models are built for (ViT; default their own)",
    )
    what.add_argument(
        "--allow-download",
        action="store_true",
        help="let torchvision download a weight name missing from the cache",
    )
    what.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="label of the --model of the same position (default: source, seed, step from "
        "the checkpoint); give one per --model",
    )
    what.add_argument(
        "--config",
        metavar="FILE",
        help="workflow config: rank its sources' checkpoints (all, or those of --source)",
    )
    what.add_argument(
        "--source",
        action="append",
        metavar="NAME",
        help="source(s) of --config (repeat or comma-separate; default all of the track)",
    )
    what.add_argument("--track", help="track of --config (default: the one holding the sources)")
    what.add_argument(
        "--run-seed",
        type=int,
        metavar="K",
        help="training seed of the --config checkpoints (default: the track's first)",
    )
    what.add_argument(
        "--step",
        metavar="LABEL",
        help="pre-training checkpoint of the --config CNN sources (default: the last)",
    )
    how = rank.add_argument_group("extraction and metrics")
    how.add_argument(
        "--layer", help="layer to extract (default: fc1 for the CNN, fc7 for VGG, pool5 "
        "for a VGG encoder)"
    )  # fmt: skip
    how.add_argument(
        "--metrics",
        action="append",
        metavar="LIST",
        help=f"comma-separated metric names (default: {','.join(DEFAULT_METRICS)})",
    )
    how.add_argument("--by", metavar="METRIC", help="rank by this metric (default: the first)")
    how.add_argument(
        "--metric-plugin",
        action="append",
        default=[],
        metavar="FILE",
        help="a Python file (or module) registering your own metrics with register_metric; "
        "their names can then go in --metrics (repeatable; docs/plugins.md)",
    )
    how.add_argument(
        "--per-class",
        type=int,
        metavar="N",
        help="samples per class (default: --config's extract.per_class, else 50)",
    )
    how.add_argument(
        "--seed",
        type=int,
        help="seed of the class-balanced subset (default: --config's extract.seed, else 0)",
    )
    how.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where dataset names are read (default: --config's data_dir, else resources/datasets)",
    )
    how.add_argument(
        "--resize", type=int, help="resize of the shorter side (default: the model's own; 256)"
    )
    how.add_argument(
        "--crop", type=int, help="centre crop (default: the model's own; 224, CIFAR-style 32)"
    )
    how.add_argument("--batch-size", type=int, metavar="N", help="images per forward pass")
    how.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    how.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    out = rank.add_argument_group("output")
    out.add_argument("--csv", metavar="PATH", help="also write the table (unrounded) as CSV")
    return parser


def _arrows_printable() -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "↑↓".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def run_rank(args: argparse.Namespace) -> int:
    """Run ``transferability rank`` with parsed ``args``; raises ``RankError`` on user errors."""
    from transferability.data.arrays import DATASET_ROOT
    from transferability.metrics.plugins import load_plugins
    from transferability.rank import (
        DEFAULT_METRICS,
        RankError,
        format_table,
        load_candidate,
        rank_models,
        write_table_csv,
    )
    from transferability.run.config import config_checkpoints

    load_plugins(args.metric_plugin)  # before the metric names are checked
    models = list(args.model)
    names = list(args.name) if args.name else None
    if names is not None and len(names) != len(models):
        raise RankError(f"got {len(names)} --name for {len(models)} --model; give one per model")
    sources = _split_list(args.source)
    selection = None
    if args.config:
        selection = config_checkpoints(
            args.config, sources or None, track=args.track, run_seed=args.run_seed, step=args.step
        )
        models += list(selection.paths)
        if names is not None:
            names += list(selection.names)
    elif sources or args.track or args.run_seed is not None or args.step:
        raise RankError("--source, --track, --run-seed and --step need --config")
    if args.weights:
        archs = list(args.arch)
        if len(archs) == 1:
            archs *= len(args.weights)
        if len(archs) != len(args.weights):
            raise RankError(
                f"got {len(args.arch)} --arch for {len(args.weights)} --weights; give one per "
                "--weights (or one for all)"
            )
        if names is not None:
            names += [Path(w).name for w in args.weights]
        models += [
            load_candidate(
                w, arch=a, image_size=args.image_size, allow_download=args.allow_download
            )
            for w, a in zip(args.weights, archs, strict=True)
        ]
    elif args.arch or args.image_size:
        raise RankError("--arch and --image-size describe --weights; give --weights too")
    if not models:
        raise RankError(
            "no candidate models: give --model PATH, --weights FILE --arch NAME (repeatable) "
            "and/or --config FILE"
        )

    def pick(value, from_config, default):
        if value is not None:
            return value
        return from_config if from_config is not None else default

    result = rank_models(
        models,
        args.target,
        names=names,
        layer=args.layer,
        metrics=_split_list(args.metrics) or list(DEFAULT_METRICS),
        by=args.by,
        per_class=pick(args.per_class, selection and selection.per_class, 50),
        seed=pick(args.seed, selection and selection.seed, 0),
        data_dir=pick(args.data_dir, selection and selection.data_dir, DATASET_ROOT),
        target_format=args.target_format,
        allow_download=args.allow_download,
        device=args.device,
        threads=args.threads,
        resize=pick(args.resize, selection and selection.resize, None),
        crop=pick(args.crop, selection and selection.crop, None),
        batch_size=args.batch_size,
    )
    sys.stdout.write(format_table(result, arrows=_arrows_printable()))
    if args.csv:
        write_table_csv(result, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``transferability`` console script; returns the exit status
    (0 success, 2 user error with a one-line message on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (status 2)
        return int(exit_.code or 0)
    if args.command == "rank":
        from transferability.metrics.plugins import PluginError
        from transferability.rank import RankError
        from transferability.run.config import ConfigError

        try:
            return run_rank(args)
        except (RankError, ConfigError, PluginError, FileNotFoundError) as err:
            print(f"{PROG} rank: error: {err}", file=sys.stderr)
            return 2
    parser.error(f"unknown command {args.command!r}")  # unreachable: argparse checks choices
    return 2


if __name__ == "__main__":
    sys.exit(main())
