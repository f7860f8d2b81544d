"""One-off check for issue 26 (the library split into stage packages): the tiny CNN and tiny
VGG configurations — together every rule of the workflow — run at two commits give the same
per-model files.

    python tools/compare_runs.py run REV OUT      # run both configs at commit REV into OUT
                                                  # (REV "WORKTREE": this checkout as it is)
    python tools/compare_runs.py compare OUT_A OUT_B

`run` checks REV out into a temporary worktree and imports the library from it (PYTHONPATH
before the editable install). `compare` walks every file under results/ except logs,
benchmarks, the report and Snakemake's own state. A file passes when it is byte-identical, or
when it differs only in what records *when and with which code* it was made, never in a result:

- HDF5 activation files and .pt checkpoints carry the code's version, ``code_version``
  (``0.1.0+git.<commit>[-dirty]``): every dataset and attribute (every tensor and metadata
  entry) is compared exactly, ``code_version`` excepted;
- matplotlib's PDFs carry their ``/CreationDate``: compared byte by byte without it.

Everything else (CSV tables, PNG figures, JSON, HTML pages) must be byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("tests/config/tiny.yaml", "tests/config/tiny_vgg.yaml")
SKIP_PARTS = {"logs", "benchmarks", ".snakemake"}
#: The provenance stamp of activation files and checkpoints (artifacts.code_version).
STAMP = "code_version"
CREATION_DATE = re.compile(rb"/CreationDate \([^)]*\)")


def run(rev: str, out: Path) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if rev == "WORKTREE":
        _run_tree(REPO, out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
                       check=True)  # fmt: skip
        try:
            _run_tree(tree, out)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=True)  # fmt: skip


def _run_tree(tree: Path, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree / "workflow")}
    for config_file in CONFIGS:
        config = yaml.safe_load((REPO / config_file).read_text())
        config["data_dir"] = str(REPO / "resources" / "datasets")
        path = out / Path(config_file).name
        path.write_text(yaml.safe_dump(config))
        cmd = [sys.executable, "-m", "snakemake", "-s", str(tree / "Snakefile"), "-d",
               str(out), "--configfile", str(path), "--cores", "2", "--quiet"]  # fmt: skip
        subprocess.run(cmd, check=True, env=env)


def _files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in sorted((root / "results").rglob("*"))
        if p.is_file()
        and not SKIP_PARTS & set(p.relative_to(root).parts)
        and p.name != "report.html"
    }


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _h5_differences(a: Path, b: Path) -> list[str]:
    found: list[str] = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:

        def visit(name: str, obj) -> None:
            other = fb.get(name)
            if other is None:
                found.append(f"{name}: missing in B")
                return
            if dict(obj.attrs).keys() != dict(other.attrs).keys() or any(
                not np.array_equal(obj.attrs[k], other.attrs[k]) for k in obj.attrs if k != STAMP
            ):
                found.append(f"{name}: attributes differ")
            if isinstance(obj, h5py.Dataset) and not np.array_equal(obj[()], other[()]):
                found.append(f"{name}: values differ")

        visit("/", fa["/"])
        fa.visititems(visit)
        fb.visititems(lambda name, obj: name in fa or found.append(f"{name}: missing in A"))
    return found


def _equal(x, y) -> bool:
    """Exact equality of checkpoint contents: tensors elementwise, containers recursively, the
    provenance stamp left out of metadata."""
    import torch

    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
    if isinstance(x, dict) and isinstance(y, dict):
        keys = set(x) - {STAMP}
        return keys == set(y) - {STAMP} and all(_equal(x[k], y[k]) for k in keys)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_equal(u, v) for u, v in zip(x, y, strict=True))
    if isinstance(x, float) and isinstance(y, float) and x != x and y != y:
        return True  # NaN, e.g. the source accuracy of a random source
    return type(x) is type(y) and x == y


def _checkpoint_differences(a: Path, b: Path) -> list[str]:
    import torch

    ca, cb = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
    return [] if _equal(ca, cb) else [f"{a.name}: contents differ"]


def _same_but_stamp(rel: str, a: Path, b: Path) -> bool:
    """Whether two files that differ in bytes differ only in their provenance stamp."""
    if rel.endswith(".h5"):
        return not _h5_differences(a, b)
    if rel.endswith(".pt"):
        return not _checkpoint_differences(a, b)
    if rel.endswith(".pdf"):
        return CREATION_DATE.sub(b"", a.read_bytes()) == CREATION_DATE.sub(b"", b.read_bytes())
    return False


def compare(a: Path, b: Path) -> int:
    files_a, files_b = _files(a), _files(b)
    only = sorted(set(files_a) ^ set(files_b))
    identical = same_content = 0
    differ: list[str] = []
    for rel in sorted(set(files_a) & set(files_b)):
        if _digest(files_a[rel]) == _digest(files_b[rel]):
            identical += 1
        elif _same_but_stamp(rel, files_a[rel], files_b[rel]):
            same_content += 1
        else:
            differ.append(rel)
    kinds: dict[str, int] = {}
    for rel in files_a:
        kinds[Path(rel).suffix or "(none)"] = kinds.get(Path(rel).suffix or "(none)", 0) + 1
    print(f"files compared: {len(set(files_a) & set(files_b))} "
          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")  # fmt: skip
    print(f"byte-identical: {identical}; identical but for the code_version stamp (HDF5, .pt) "
          f"or the PDF creation date: {same_content}; different: {len(differ)}; "
          f"in one run only: {len(only)}")  # fmt: skip
    for rel in differ:
        print(f"  DIFFERENT {rel}")
    for rel in only:
        print(f"  ONLY IN {'A' if rel in files_a else 'B'} {rel}")
    return 1 if differ or only else 0


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "run":
        run(args[0], Path(args[1]))
    elif command == "compare":
        sys.exit(compare(Path(args[0]), Path(args[1])))
    else:
        sys.exit(f"unknown command {command!r}: run REV OUT | compare OUT_A OUT_B")
