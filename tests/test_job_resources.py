"""Resources that grow with the attempt (transferability.run.resources, rules/common.smk's
attempt_scaled): the table, the scaling, overrides from the config, and every rule using it."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from test_workflow import REPO, SNAKEMAKE, tiny_config

from transferability.run import resources as job_resources
from transferability.run.resources import BASE, check_overrides, scaled


def test_scaled_is_base_times_attempt():
    assert scaled("finetune", "runtime", 1) == 240
    assert scaled("finetune", "runtime", 3) == 720
    assert scaled("image_finetune", "mem_mb", 2) == 16000
    assert [scaled("tables", "mem_mb", k) for k in (1, 2, 3)] == [4000, 8000, 12000]


def test_overrides_replace_the_base_only():
    overrides = {"pretrain": {"runtime": 1}}
    assert scaled("pretrain", "runtime", 1, overrides) == 1
    assert scaled("pretrain", "runtime", 2, overrides) == 2
    assert scaled("pretrain", "mem_mb", 2, overrides) == 2 * BASE["pretrain"]["mem_mb"]
    assert scaled("finetune", "runtime", 1, overrides) == BASE["finetune"]["runtime"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"pretrian": {"runtime": 1}}, "unknown rule 'pretrian'"),
        ({"pretrain": {"mem": 1}}, "job_resources.pretrain: unknown resource 'mem'"),
        ({"pretrain": {"runtime": 0}}, "job_resources.pretrain.runtime: expected a positive"),
        ({"pretrain": {"runtime": "1h"}}, "got '1h'"),
        ({"pretrain": {"runtime": True}}, "got True"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_overrides(overrides)


def test_bad_attempt():
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        scaled("pretrain", "runtime", 0)


def test_every_rule_with_resources_scales_them_from_the_one_table():
    """Every mem_mb/runtime in rules/*.smk comes from attempt_scaled, and every key of the table
    is used: no rule keeps a fixed number that a retry would ask for again."""
    text = "".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    assert not re.search(r"^\s*(mem_mb|runtime)=\d", text, re.M)
    used = re.findall(r'^\s*(mem_mb|runtime)=attempt_scaled\("(\w+)", "(\w+)"\)', text, re.M)
    assert all(name == resource for name, _, resource in used)
    assert {rule for _, rule, _ in used} == set(BASE)
    for rule in BASE:  # both resources of each rule
        assert {r for _, name, r in used if name == rule} == set(job_resources.RESOURCE_NAMES)


def dry_run_jobs(workdir, config: dict) -> dict[str, list[str]]:
    """rule -> the dry run's printed block of each of its jobs (`resources:` line included)."""
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(path), "-n", "--cores", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=\s*(?:local)?rule \w+:)", out.stdout):
        if match := re.match(r"\s*(?:local)?rule (\w+):", block):
            jobs.setdefault(match[1], []).append(block)
    return jobs


def test_a_dry_run_shows_the_first_attempt_and_the_override(tmp_path):
    config = tiny_config()
    config["job_resources"] = {"pretrain": {"runtime": 7, "mem_mb": 1234}}
    jobs = dry_run_jobs(tmp_path, config)
    assert jobs["pretrain"] and jobs["finetune"]
    for block in jobs["pretrain"]:
        assert " runtime=7," in block and " mem_mb=1234," in block, block
    for block in jobs["finetune"]:
        assert " runtime=240," in block and " mem_mb=4000," in block, block


@pytest.mark.parametrize("request_gpus, expected", [(False, 0), (True, 1)])
def test_request_gpus_asks_for_a_gpu_with_the_code_on_the_cpu(tmp_path, request_gpus, expected):
    """The test and dry-run aid of make test-slurm: training rules ask for gpu=1 although
    `device: cpu`; extraction (a CPU forward pass) never does."""
    config = tiny_config()
    config["request_gpus"] = request_gpus
    config["device"] = "cpu"
    jobs = dry_run_jobs(tmp_path, config)
    for rule, gpus in (("pretrain", expected), ("finetune", expected), ("extract", 0)):
        assert jobs[rule] and all(f" gpu={gpus}," in block for block in jobs[rule]), jobs[rule]
