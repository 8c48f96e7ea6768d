"""A dry run through Meltano never moves the bookmark; a live run sends everything and moves it.

Issue 14, point 4: ``TARGET_PLANHAT_DRY_RUN=true meltano --environment prod run …`` used to save
the tap's bookmark, so the next live run started after events Planhat never got. Here a Meltano
project has a ``prod`` environment like a user's (``dry_run: false``, no
``dry_run_writes_state``), the loader declared as plugin/target-planhat.yml declares it (so Meltano
passes ``TARGET_PLANHAT_DRY_RUN`` as a boolean), a Planhat stand-in on 127.0.0.1 as ``api_url``,
and the real incremental extractor: PyPI tap-amplitude-api behind the bundled Export-API
stand-in (the demo's ``tap-amplitude-sample``), which starts from Meltano's saved bookmark. So a
bookmark moved by the dry run would show as events missing from the live run, as in production.

Both plugins are the ones already installed (the demo's tap venv, this checkout's
``target-planhat`` console script): no ``meltano install``, a few seconds per project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import TARGET_BIN
from tests.support.meltano import (
    DEFINITION,
    ROOT,
    SAMPLE_TAP_BIN,
    clean_env,
    demo_meltano,
    run_meltano,
    sample_messages,
)
from tests.support.receiver import TOKEN, PlanhatReceiver

STATE_ID = "prod:tap-amplitude-sample-to-target-planhat"
RUN = ("--environment", "prod", "run", "tap-amplitude-sample", "target-planhat")


@pytest.fixture(scope="module", autouse=True)
def _meltano() -> None:
    demo_meltano()


@pytest.fixture
def planhat():
    with PlanhatReceiver() as receiver:
        yield receiver


def _loader(api_url: str) -> dict[str, Any]:
    """The loader as plugin/target-planhat.yml defines it, run from this checkout's venv."""
    definition = yaml.safe_load(DEFINITION.read_text(encoding="utf-8"))
    keep = ("name", "namespace", "capabilities", "settings_group_validation", "settings")
    loader = {key: definition[key] for key in keep}
    loader["executable"] = TARGET_BIN
    loader["config"] = {
        "api_url": api_url,
        "dry_run_path": "out/dry-run.jsonl",
        "dead_letter_path": "out/rejected.jsonl",
        "report_path": "out/report.json",
        "ledger_path": "out/ledger.sqlite",
    }
    return loader


def _extractor() -> dict[str, Any]:
    """The repo's tap-amplitude-sample (meltano.yml), run from the venv the demo installed."""
    repo = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (tap,) = [p for p in repo["plugins"]["extractors"] if p["name"] == "tap-amplitude-sample"]
    tap = {key: value for key, value in tap.items() if key != "pip_url"}
    tap["executable"] = str(SAMPLE_TAP_BIN)
    tap["config"] = {
        **tap["config"],
        "export_file": str(ROOT / "data" / "sample" / "amplitude-export.jsonl"),
    }
    return tap


@pytest.fixture
def project(tmp_path: Path, planhat: PlanhatReceiver) -> Path:
    """A Meltano project whose ``prod`` environment is live and never opts in to dry-run STATE."""
    config = {
        "version": 1,
        "send_anonymous_usage_stats": False,
        "project_id": "5b0a3c7e-2f6d-4c1a-9e8b-3d7f1a2c4e60",
        "default_environment": "prod",
        "environments": [
            {
                "name": "prod",
                "config": {
                    "plugins": {
                        "loaders": [{"name": "target-planhat", "config": {"dry_run": False}}]
                    }
                },
            }
        ],
        "plugins": {"extractors": [_extractor()], "loaders": [_loader(planhat.url)]},
    }
    (tmp_path / "meltano.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    return clean_env(TARGET_PLANHAT_TENANT_TOKEN=TOKEN, **extra)


def _saved_state(project: Path) -> dict[str, Any] | None:
    """Meltano's stored state for the prod job: ``None`` when ``state list`` does not name it."""
    listed = run_meltano(project, "--environment", "prod", "state", "list", env=_env())
    if STATE_ID not in listed.stdout.split():
        return None
    got = run_meltano(project, "--environment", "prod", "state", "get", STATE_ID, env=_env())
    return json.loads(got.stdout)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _identified() -> list[dict[str, Any]]:
    return [
        m["record"]
        for m in sample_messages()
        if m["type"] == "RECORD" and m["record"].get("user_id")
    ]


def _bookmarks() -> list[str]:
    return [m["value"]["event"] for m in sample_messages() if m["type"] == "STATE"]


def _key(activity: dict[str, Any]) -> str:
    return json.dumps(activity, sort_keys=True)


def test_dry_run_in_prod_saves_no_state_and_the_live_run_then_sends_every_event(project, planhat):
    assert _saved_state(project) is None

    dry = run_meltano(project, *RUN, env=_env(TARGET_PLANHAT_DRY_RUN="true"), timeout=600)
    previewed = _lines(project / "out" / "dry-run.jsonl")
    assert len(previewed) == len(_identified())
    assert planhat.requests() == []  # a dry run: nothing reached Planhat
    assert _saved_state(project) is None, dry.stderr[-4000:]

    run_meltano(project, *RUN, env=_env(), timeout=600)
    planhat.settle()
    sent = planhat.kept_activities()
    # Every event reached Planhat, exactly the activities the dry run showed, each once.
    assert sorted(map(_key, sent)) == sorted(map(_key, previewed))
    assert {a["externalId"] for a in sent} == {r["user_id"] for r in _identified()}
    assert _saved_state(project) == {"singer_state": {"event": _bookmarks()[-1]}}


def test_dry_run_in_prod_leaves_a_seeded_bookmark_unchanged(project, planhat):
    seed = {"singer_state": {"event": _bookmarks()[1]}}  # part-way through the sample
    run_meltano(
        project,
        "--environment",
        "prod",
        "state",
        "set",
        "--force",
        STATE_ID,
        json.dumps(seed),
        env=_env(),
    )
    assert _saved_state(project) == seed

    run_meltano(project, *RUN, env=_env(TARGET_PLANHAT_DRY_RUN="true"), timeout=600)
    previewed = _lines(project / "out" / "dry-run.jsonl")
    assert 0 < len(previewed) < len(_identified())  # the tap started from the seeded bookmark
    assert planhat.requests() == []
    assert _saved_state(project) == seed

    run_meltano(project, *RUN, env=_env(), timeout=600)
    planhat.settle()
    assert sorted(map(_key, planhat.kept_activities())) == sorted(map(_key, previewed))
    # The live run moved the bookmark on (the tap exports one day from a bookmark per run).
    moved = _saved_state(project)
    assert moved is not None
    assert seed["singer_state"]["event"] < moved["singer_state"]["event"] <= _bookmarks()[-1]


def test_dry_run_writes_state_opts_in_and_a_later_live_run_starts_from_it(project, planhat):
    dry_env = _env(TARGET_PLANHAT_DRY_RUN="true", TARGET_PLANHAT_DRY_RUN_WRITES_STATE="true")
    run_meltano(project, *RUN, env=dry_env, timeout=600)
    assert len(_lines(project / "out" / "dry-run.jsonl")) == len(_identified())
    assert planhat.requests() == []
    assert _saved_state(project) == {"singer_state": {"event": _bookmarks()[-1]}}

    # What the default protects against: the live run starts at the moved bookmark, so the
    # events before it never reach Planhat.
    run_meltano(project, *RUN, env=_env(), timeout=600)
    planhat.settle()
    assert len(planhat.kept_activities()) < len(_identified())
