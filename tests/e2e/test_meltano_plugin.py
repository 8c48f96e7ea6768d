"""A new Meltano project adds target-planhat from plugin/target-planhat.yml and runs the sample.

What a user of their own Meltano project does (README, "Your own Meltano project"): ``meltano
init``, ``meltano add --plugin-type loader target-planhat --from-ref <the file>``, ``meltano config
set`` of a mapping object and ``dry_run``, ``meltano run``. Meltano is the demo's
``.venv-meltano`` (built by scripts/demo.sh when missing). The one edit: ``pip_url`` points at this
checkout (``-e <path>``) instead of the placeholder git URL, as the README says to for a local
checkout, and only the loader is installed (``meltano install --plugin-type loader``): the
extractor is a command with no package that prints the bundled sample (what the real tap writes).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.meltano import DEFINITION, ROOT, SAMPLE, demo_meltano, run_meltano


@pytest.fixture(scope="module")
def meltano() -> Path:
    """The demo's Meltano venv (tests/support/meltano.py), built by scripts/demo.sh when missing."""
    return demo_meltano()


def _meltano(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_meltano(project, *args, timeout=timeout)


def _sample_users() -> dict[str, str]:
    """user_id -> email of the identified events in the sample (bags are Python reprs there)."""
    import ast

    users = {}
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD" and message["record"].get("user_id"):
            props = ast.literal_eval(message["record"]["user_properties"])
            users[message["record"]["user_id"]] = props["email"]
    return users


def test_new_project_adds_the_loader_from_its_definition_and_runs_the_sample(meltano, tmp_path):
    _meltano(tmp_path, "init", "--no-usage-stats", "project", timeout=300)
    project = tmp_path / "project"

    _meltano(
        project,
        "add",
        "--plugin-type",
        "loader",
        "target-planhat",
        "--from-ref",
        str(DEFINITION),
        "--no-install",
        timeout=300,
    )
    config = yaml.safe_load((project / "meltano.yml").read_text(encoding="utf-8"))
    (loader,) = config["plugins"]["loaders"]
    assert loader["name"] == "target-planhat"
    assert loader["executable"] == "target-planhat"
    kinds = {s["name"]: s["kind"] for s in loader["settings"]}
    assert kinds["mapping"] == "object"
    assert kinds["dry_run"] == "boolean"
    assert kinds["max_request_bytes"] == "integer"

    # Install from this checkout, not the git host; and an extractor that prints the sample.
    loader["pip_url"] = f"-e {ROOT}"  # the README's local-checkout form
    config["plugins"]["extractors"] = [
        {"name": "sample-replay", "namespace": "sample_replay", "executable": "./replay.sh"}
    ]
    (project / "meltano.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    replay = project / "replay.sh"
    replay.write_text(f"#!/bin/sh\nexec cat '{SAMPLE}'\n")
    replay.chmod(0o755)
    _meltano(project, "install", "--plugin-type", "loader", "target-planhat", timeout=900)

    mapping = {"email": "$.user_properties.email", "info": {"role": "$.user_properties.role"}}
    _meltano(project, "config", "set", "target-planhat", "mapping", json.dumps(mapping))
    _meltano(project, "config", "set", "target-planhat", "dry_run", "true")
    _meltano(project, "config", "set", "target-planhat", "dry_run_path", "out/dry-run.jsonl")
    _meltano(project, "config", "set", "target-planhat", "dead_letter_path", "out/rejected.jsonl")
    listed = _meltano(project, "config", "list", "target-planhat").stdout
    assert "mapping" in listed
    # The README's production example: settings of the prod environment only.
    _meltano(
        project, "--environment", "prod", "config", "set", "target-planhat", "dry_run", "false"
    )
    _meltano(
        project, "--environment", "prod", "config", "set", "target-planhat", "ledger_path", "l.db"
    )
    environments = yaml.safe_load((project / "meltano.yml").read_text(encoding="utf-8"))
    (prod,) = [e for e in environments["environments"] if e["name"] == "prod"]
    (prod_loader,) = prod["config"]["plugins"]["loaders"]
    assert prod_loader["config"] == {"dry_run": False, "ledger_path": "l.db"}

    run = _meltano(project, "run", "sample-replay", "target-planhat", timeout=600)
    assert "planhat_delivery_report" in run.stderr

    users = _sample_users()
    activities = [
        json.loads(line)
        for line in (project / "out" / "dry-run.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(activities) == sum(1 for _ in _identified(SAMPLE))
    for activity in activities:
        # The mapping object arrived as an object: email added, info replaced, the rest default.
        assert activity["email"] == users[activity["externalId"]]
        assert set(activity["info"]) == {"role"}
        assert activity["companyExternalId"]
        assert activity["date"].endswith("Z")
    rejected = (project / "out" / "rejected.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["reason"] for line in rejected} == {"no_identifier"}


def _identified(path: Path):
    for line in path.read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD" and message["record"].get("user_id"):
            yield message["record"]
