"""deploy/prometheus: the alert rules are valid, do what their tests say, and name only metrics
that /metrics serves.

promtool (Debian's prometheus package; .ci/run installs it and sets DEPLOY_TOOLS_REQUIRED)
checks the rules, runs their unit tests (alerts.test.yml) and checks the example scrape
configuration.
Without it those three skip; the cross-check with /metrics below always runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
REQUIRED_ENV = "DEPLOY_TOOLS_REQUIRED"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        message = "promtool is missing (apt-get install prometheus)"
        if os.environ.get(REQUIRED_ENV):
            pytest.fail(f"{message}, and {REQUIRED_ENV} is set (CI installs it).")
        pytest.skip(f"{message}; .ci/run installs it and runs these tests.")
    done = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_accepts_the_rules() -> None:
    assert "SUCCESS: 7 rules found" in promtool("check", "rules", "alerts.yml")


def test_the_rules_pass_their_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


def test_promtool_accepts_the_example_scrape_config(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert "/etc/prometheus/notify-metrics-token" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/notify-metrics-token", str(token)))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml", cwd=tmp_path)


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_every_rule_has_a_severity_and_a_summary() -> None:
    found = rules()
    assert len(found) == 7
    for rule in found:
        assert rule["alert"].startswith("Notify"), rule
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule
        assert rule["annotations"]["summary"], rule


def served_names(text: str) -> set[str]:
    """Every sample name /metrics can serve, from its TYPE lines (a family is declared even
    while it has no samples)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}_{part}" for part in ("bucket", "count", "sum"))
    return names


@pytest.mark.usefixtures("demo", "no_wakeups")
def test_the_rules_name_only_metrics_that_metrics_serves(client: Client) -> None:
    text = client.get("/metrics").content.decode()
    served = served_names(text)
    assert {"notify_sent_total", "notify_dead_total", "notify_send_duration_seconds_bucket",
            "notify_cluster_last_seen_timestamp_seconds"} <= served
    named = {name for rule in rules()
             for name in re.findall(r"\bnotify_[a-z_]+", rule["expr"])}
    assert len(named) >= 6, named
    assert named <= served, f"the rules name metrics /metrics does not serve: {named - served}"
