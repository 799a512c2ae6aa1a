"""cluster.yaml is a valid Ray cluster-launcher config and keeps the cluster private.

Fast and offline: validated against Ray's own schema (``ray/autoscaler/ray-schema.json``
from the installed ray) and Ray's own validator, with the network blocked. Every check
is also run on a broken copy, so these tests cannot pass by checking nothing.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shlex
import socket
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"

COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
PUBLIC_BINDS = ("0.0.0.0", "::", "[::]", "::/0", "0.0.0.0/0")
LOCAL_OR_PRIVATE_HOSTS = {"127.0.0.1", "localhost"}
PRIVATE_PORTS = (8265, 5000)  # Ray dashboard / job API, MLflow

SECRET_PATTERNS = [
    re.compile(p, re.IGNORECASE) for p in (
        r"aws_secret_access_key", r"aws_access_key_id", r"aws_session_token",
        r"secret_?key\s*[:=]", r"password\s*[:=]",
    )
] + [
    re.compile(p) for p in (
        r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",             # AWS access key ids
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",       # pasted SSH / TLS keys
        r"\bghp_[A-Za-z0-9]{30,}", r"\bgithub_pat_[A-Za-z0-9_]{30,}",
        r"\bhf_[A-Za-z0-9]{30,}", r"\bxox[abp]-[A-Za-z0-9-]{10,}",
    )
]


# --------------------------------------------------------------------------- helpers

def load_config() -> dict:
    with open(CLUSTER_YAML) as f:
        config = yaml.safe_load(f)
    assert isinstance(config, dict), "cluster.yaml must be a YAML mapping"
    return config


def ray_schema() -> dict:
    import ray.autoscaler  # inside the function: only these tests pay for importing ray

    path = os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")
    with open(path) as f:
        return json.load(f)


def ray_validate(config: dict) -> dict:
    """Ray's own offline check, as `ray up` does it: fill in the provider defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def commands(config: dict, *keys: str) -> list[str]:
    keys = keys or COMMAND_KEYS
    out = [c for k in keys for c in (config.get(k) or [])]
    for node_type in (config.get("available_node_types") or {}).values():
        for k in ("initialization_commands", "worker_setup_commands"):
            if k in keys:
                out += node_type.get(k) or []
    return out


def strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in strings(k) + strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return []


def option_values(command: str, option: str) -> list[str]:
    """Values of ``--option=x`` / ``--option x`` in a shell command line."""
    try:
        words = shlex.split(command, comments=False)
    except ValueError:  # unbalanced quotes: fall back to whitespace splitting
        words = command.split()
    values = []
    for i, w in enumerate(words):
        if w == option and i + 1 < len(words):
            values.append(words[i + 1])
        elif w.startswith(option + "="):
            values.append(w.split("=", 1)[1])
    return values


def segments(command: str, marker: str) -> list[str]:
    """Pieces of a (possibly compound) command line from each ``marker`` to the next separator."""
    return [m.group(0) for m in re.finditer(re.escape(marker) + r"[^;&|<>]*", command)]


def is_public(host: str) -> bool:
    return host.strip("'\"") in PUBLIC_BINDS


def security_problems(config: dict) -> list[str]:
    """Everything that would expose the cluster or leak a secret; empty when all is well."""
    problems = []
    for s in strings(config):
        for bad in ("0.0.0.0", "::/0"):
            if bad in s:
                problems.append(f"public address {bad!r} in {s[:80]!r}")

    heads = [seg for c in commands(config, "head_start_ray_commands")
             for seg in segments(c, "ray start") if "--head" in seg]
    if not heads:
        problems.append("head_start_ray_commands has no `ray start --head`")
    for seg in heads:
        hosts = option_values(seg, "--dashboard-host")
        if hosts != ["127.0.0.1"]:
            problems.append(f"`ray start --head` must pass --dashboard-host=127.0.0.1: {seg!r}")
    for c in commands(config):
        for seg in segments(c, "ray start"):
            if any(is_public(h) for h in option_values(seg, "--dashboard-host")):
                problems.append(f"dashboard bound publicly: {seg!r}")

    servers = [seg for c in commands(config) for seg in segments(c, "mlflow server")]
    if not servers:
        problems.append("no command starts an MLflow tracking server")
    for seg in servers:
        hosts = option_values(seg, "--host") + option_values(seg, "-h")
        if not hosts:
            problems.append(f"mlflow server must pass an explicit --host: {seg!r}")
        for host in hosts:
            h = host.strip("'\"")
            if is_public(h) or not (h in LOCAL_OR_PRIVATE_HOSTS or h.startswith("$")):
                problems.append(f"mlflow server bound to {h!r}, not 127.0.0.1 / the private IP")

    provider = config.get("provider") or {}
    for rule in (provider.get("security_group") or {}).get("IpPermissions") or []:
        lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
        for port in PRIVATE_PORTS:
            if lo == -1 or lo <= port <= hi:
                problems.append(f"security group rule opens port {port}: {rule}")
    return problems


def secret_problems(text: str) -> list[str]:
    return [f"looks like a secret: {p.pattern}" for p in SECRET_PATTERNS if p.search(text)]


def gpu_scale_from_zero_types(config: dict) -> list[str]:
    head = config.get("head_node_type")
    return [name for name, nt in (config.get("available_node_types") or {}).items()
            if name != head and (nt.get("resources") or {}).get("GPU", 0) >= 1
            and nt.get("min_workers", 0) == 0 and nt.get("max_workers", 1) >= 1]


def installs_project(cmds: list[str]) -> bool:
    return any("pip install" in c and "gensweep" in c for c in cmds)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# --------------------------------------------------------------------------- schema

def test_cluster_yaml_matches_rays_schema():
    config = load_config()
    schema = ray_schema()
    jsonschema.validate(config, schema)

    # The same check must reject broken copies: the file cannot pass vacuously.
    broken = {
        "bogus top-level key": dict(config, not_a_ray_field=1),
        "missing provider": {k: v for k, v in config.items() if k != "provider"},
        "missing cluster_name": {k: v for k, v in config.items() if k != "cluster_name"},
    }
    bad_node = copy.deepcopy(config)
    del bad_node["available_node_types"][bad_node["head_node_type"]]["resources"]
    broken["node type without resources"] = bad_node
    typo = copy.deepcopy(config)
    typo["available_node_types"][typo["head_node_type"]]["min_worker"] = 0
    broken["misspelt node-type field"] = typo
    for what, cfg in broken.items():
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(cfg, schema)
            pytest.fail(f"schema accepted a config with a {what}")


def test_cluster_yaml_passes_rays_own_validator_offline(no_network):
    config = load_config()
    prepared = ray_validate(config)
    assert prepared["cluster_name"] == "gensweep"
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]

    bad_head = dict(copy.deepcopy(config), head_node_type="no.such.type")
    with pytest.raises(ValueError, match="head_node_type"):
        ray_validate(bad_head)
    bogus = dict(copy.deepcopy(config), not_a_ray_field=1)
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(bogus)
    too_many = copy.deepcopy(config)
    for nt in too_many["available_node_types"].values():
        nt["min_workers"] = too_many["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        ray_validate(too_many)


# --------------------------------------------------------------------------- cluster shape

def test_gpu_workers_scale_from_zero_and_head_is_cpu():
    config = load_config()
    assert config["cluster_name"] == "gensweep"
    assert gpu_scale_from_zero_types(config), "need a GPU worker type with min_workers: 0"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0, "the head is a CPU node"
    for name, nt in config["available_node_types"].items():
        assert nt.get("max_workers", 0) <= config["max_workers"], name
        assert "InstanceType" in nt["node_config"] and "ImageId" in nt["node_config"], name

    no_gpu = copy.deepcopy(config)
    for nt in no_gpu["available_node_types"].values():
        nt["resources"].pop("GPU", None)
    assert not gpu_scale_from_zero_types(no_gpu)
    always_on = copy.deepcopy(config)
    for nt in always_on["available_node_types"].values():
        nt["min_workers"] = 1
    assert not gpu_scale_from_zero_types(always_on)


def test_setup_installs_the_project_on_every_node():
    config = load_config()
    head_cmds = commands(config, "setup_commands", "head_setup_commands")
    worker_cmds = commands(config, "setup_commands", "worker_setup_commands")
    assert installs_project(head_cmds), "head setup must `pip install` gensweep"
    assert installs_project(worker_cmds), "worker setup must `pip install` gensweep"
    assert config["file_mounts"].get("~/gensweep") or any("git clone" in c for c in head_cmds)
    # GPU workers get the CUDA torch, not the CPU-only build the dev machines use.
    assert any(re.search(r"pip install .*\btorch\b", c) for c in worker_cmds)
    assert not any("whl/cpu" in c for c in worker_cmds), "workers must not install CPU-only torch"
    # Ray on the nodes is pinned (it must match the version `ray up` / `ray job submit` run).
    assert any(re.search(r"ray\[[^\]]*\]==\d", c) for c in head_cmds)

    assert not installs_project(["pip install numpy", "git clone x"])


# --------------------------------------------------------------------------- security

def test_dashboard_and_mlflow_are_never_public():
    config = load_config()
    assert security_problems(config) == []
    mlflow = [c for c in commands(config, "head_start_ray_commands", "head_setup_commands")
              if "mlflow server" in c]
    assert mlflow, "the head must start the MLflow tracking server"
    assert not any("mlflow server" in c for c in commands(config, "worker_setup_commands",
                                                         "worker_start_ray_commands"))

    # Each kind of leak is caught.
    def mutated(old: str, new: str) -> dict:
        text = CLUSTER_YAML.read_text()
        assert old in text, old
        return yaml.safe_load(text.replace(old, new))

    leaks = [
        mutated("--dashboard-host=127.0.0.1 --dashboard-port", "--dashboard-host=0.0.0.0 --dashboard-port"),
        mutated("--dashboard-host=127.0.0.1 --dashboard-port", "--dashboard-port"),
        mutated('--host "$HEAD_PRIVATE_IP"', "--host 0.0.0.0"),
        mutated('--host "$HEAD_PRIVATE_IP"', "--host ::"),
        mutated('--host "$HEAD_PRIVATE_IP"', "--host 203.0.113.7"),
        mutated('--host "$HEAD_PRIVATE_IP"', ""),
    ]
    for cfg in leaks:
        assert security_problems(cfg), cfg
    open_sg = copy.deepcopy(config)
    open_sg["provider"].setdefault("security_group", {})["IpPermissions"] = [
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
         "IpRanges": [{"CidrIp": "198.51.100.0/24"}]}]
    assert any("8265" in p for p in security_problems(open_sg))
    jsonschema.validate(open_sg, ray_schema())  # Ray accepts it: only our check stops it


def test_no_credentials_in_the_file():
    text = CLUSTER_YAML.read_text()
    assert secret_problems(text) == []
    config = load_config()
    assert "ssh_private_key" not in (config.get("auth") or {}) or \
        not str(config["auth"]["ssh_private_key"]).startswith("-----")
    assert "aws_credentials" not in config["provider"]

    for leak in ("aws_secret_access_key: abc", "AKIA" + "ABCDEFGHIJKLMNOP",
                 "-----BEGIN RSA " + "PRIVATE KEY-----", "ghp_" + "a" * 36):
        assert secret_problems(text + "\n# " + leak + "\n"), leak
