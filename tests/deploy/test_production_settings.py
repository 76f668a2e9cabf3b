"""deploy/production.env passes `manage.py check --deploy`; the defaults alone do not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def production_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / "deploy" / "production.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def check_deploy(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k in ("PATH", "HOME", "LANG", "VIRTUAL_ENV", "PYTHONPATH")}
    base.update(env)
    # The check needs no database server: keep it off the one the file names.
    base.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                 "VAR_DIR": str(tmp_path)})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=base, capture_output=True, text=True, timeout=120)


def filled_in() -> dict[str, str]:
    """production.env as an operator leaves it: every CHANGE replaced by a real value."""
    return {key: value.replace("CHANGE-ME-", "").replace("CHANGE", "x7Qv2Lr9Tz4")
            for key, value in production_env().items()}


def test_the_documented_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    done = check_deploy(filled_in(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_refuses_the_placeholders_left_in(tmp_path: Path) -> None:
    done = check_deploy(production_env(), tmp_path)
    assert done.returncode != 0
    for name in ("SECRET_KEY", "NOTIFY_METRICS_TOKEN", "ANYMAIL_WEBHOOK_SECRET"):
        assert f"{name} still holds the placeholder" in done.stderr, done.stderr


def test_without_them_check_deploy_names_what_is_missing(tmp_path: Path) -> None:
    env = {"SECRET_KEY": production_env()["SECRET_KEY"], "DEBUG": "true"}
    done = check_deploy(env, tmp_path)
    assert done.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016",
                  "security.W018"):
        assert check in done.stderr, check


def test_every_required_value_is_marked_for_change() -> None:
    text = (ROOT / "deploy" / "production.env").read_text()
    env = production_env()
    assert env["DEBUG"] == "false" and env["HTTPS"] == "true"
    for key in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "NOTIFY_METRICS_TOKEN"):
        assert key in env, key
    assert text.count("CHANGE") >= 8
