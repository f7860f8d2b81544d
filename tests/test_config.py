import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from transferability import config as tconfig

REPO = Path(__file__).resolve().parents[1]


def test_snakefile_imports_do_not_load_torch():
    """The Snakefile imports transferability.config (SPEC §9: no torch at parse time)."""
    code = (
        "import sys; import transferability.config, transferability.data; "
        "import transferability.metrics; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["config.yaml", "config/paper.yaml", "tests/config/tiny.yaml"])
def test_shipped_configs_pass_the_semantic_checks(name):
    tconfig.check(yaml.safe_load((REPO / name).read_text()))


def test_protocol_resolution_applies_source_overrides():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    assert tconfig.pretrain_protocol(cfg, "cnn", "mnist_split1")["batch_size"] == 32
    assert tconfig.pretrain_protocol(cfg, "cnn", "mnist")["batch_size"] == 64
    assert tconfig.source(cfg, "cnn", "mnist_noise")["dataset"] == "mnist_noise"
    assert tconfig.checkpoint_labels(cfg, "cnn", "pretrain")[0] == "0"
    with pytest.raises(tconfig.ConfigError, match="unknown target 'svhn'.*known: "):
        tconfig.target(cfg, "cnn", "svhn")


def test_checkpoint_zero_is_required():
    cfg = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    cfg["tracks"]["cnn"]["pretrain"]["checkpoints"] = ["1b", "3b"]
    with pytest.raises(tconfig.ConfigError, match="must include '0'"):
        tconfig.check(cfg)
