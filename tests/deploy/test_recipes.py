"""deploy/: the Procfile runs (make serve), the systemd units pass `systemd-analyze verify`, the
compose file passes `docker-compose config`, and the Dockerfile copies what the image needs.

No container runtime or systemd runs here, so the units and the compose file are checked by the
tools' offline validators (Debian's systemd and docker-compose; .ci/run installs docker-compose
and sets DEPLOY_TOOLS_REQUIRED so a missing tool fails there instead of skipping), and the image
build by parsing the Dockerfile.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError

from notifications.management.commands.run_platform import read_procfile

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REQUIRED_ENV = "DEPLOY_TOOLS_REQUIRED"
LANES = ("transactional", "bulk")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is missing"
        if os.environ.get(REQUIRED_ENV):
            pytest.fail(f"{message}, and {REQUIRED_ENV} is set (.ci/run installs it).")
        pytest.skip(f"{message}; .ci/run installs it and runs this test.")
    return found


# --- Procfile ------------------------------------------------------------------------------------

def test_the_procfile_has_a_release_a_web_and_one_process_per_lane() -> None:
    entries = dict(read_procfile(DEPLOY / "Procfile"))
    assert set(entries) == {"release", "web", *LANES}
    assert entries["release"] == "python manage.py migrate --noinput"
    assert entries["web"].startswith("gunicorn project.wsgi ")
    for lane in LANES:
        assert entries[lane] == f"env Q_CLUSTER_NAME={lane} python manage.py qcluster"


def test_a_broken_procfile_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "Procfile"
    bad.write_text("web: gunicorn x\nno colon here\n")
    with pytest.raises(CommandError, match=r"line 2: expected `name: command`"):
        read_procfile(bad)
    with pytest.raises(CommandError, match="cannot read"):
        read_procfile(tmp_path / "missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[str]:
    """Command lines of `pid`'s descendants."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        done = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(parent)],
                              capture_output=True, text=True)
        for line in done.stdout.splitlines():
            child, _, args = line.strip().partition(" ")
            found.append(args)
            todo.append(int(child))
    return found


def test_make_serve_runs_the_procfile_with_debug_off(tmp_path: Path) -> None:
    """run_platform --procfile: release (migrate) first, then gunicorn answering with DEBUG off
    and a qcluster per lane; Ctrl-C stops them all cleanly."""
    port = _free_port()
    env = {**os.environ, "VAR_DIR": str(tmp_path), "DEBUG": "false", "BIND": "127.0.0.1",
           "PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "SECRET_KEY": "test-serve-" + "x" * 40, "WEB_CONCURRENCY": "1",
           "Q_WORKERS_TRANSACTIONAL": "1", "Q_WORKERS_BULK": "1"}
    env.pop("REDIS_URL", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_platform", "--procfile", "deploy/Procfile"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready/",
                                            timeout=2) as answer:
                    status = answer.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, log.read_text()
        # DEBUG off: an unknown page is the plain 404, not Django's debug page.
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page", timeout=5)
        assert missing.value.code == 404
        assert b"Django tried these URL patterns" not in missing.value.read()
        for _ in range(40):
            clusters = [a for a in _children(proc.pid) if "qcluster" in a]
            if len(clusters) >= 2:
                break
            time.sleep(0.25)
        assert len([a for a in _children(proc.pid) if "gunicorn" in a]) >= 1
        assert (tmp_path / "db.sqlite3").exists()  # the release step migrated it
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
    text = log.read_text()
    assert code == 0, text
    assert "release: python manage.py migrate --noinput" in text
    assert text.count("has stopped") >= 2, text  # both clusters stopped cleanly
    assert "stopped." in text


# --- systemd -------------------------------------------------------------------------------------

def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    # Pointed at this checkout (its venv's python and gunicorn) and the documented environment
    # file, as they would be at /opt/notify and /etc/notify; run as whoever runs the tests.
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = (unit.read_text().replace("/opt/notify/.venv", str(Path(sys.executable).parents[1]))
                .replace("/opt/notify", str(ROOT))
                .replace("/etc/notify/production.env", str(DEPLOY / "production.env"))
                .replace("User=notify", f"User={user}").replace("Group=notify", f"Group={user}"))
        names = [unit.name.replace("@.", f"@{lane}.") for lane in LANES] \
            if "@." in unit.name else [unit.name]
        for name in names:
            (tmp_path / name).write_text(text)
            units.append(str(tmp_path / name))
    assert len(units) == 4
    done = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_lane_units_stop_gently_and_wait_longer_than_a_task() -> None:
    from django.conf import settings

    unit = (DEPLOY / "systemd" / "notify-lane@.service").read_text()
    assert "KillSignal=SIGINT" in unit and "KillMode=mixed" in unit
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE).group(1))
    assert stop > settings.Q_CLUSTER["timeout"]


# --- compose and the image -----------------------------------------------------------------------

def test_the_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    compose = tool("docker-compose")
    # Its env_file, as the comment says to make it, next to a copy of the file.
    work = tmp_path / "deploy"
    work.mkdir()
    shutil.copy(DEPLOY / "compose.yaml", work / "compose.yaml")
    shutil.copy(DEPLOY / "production.env", work / "notify.env")
    (tmp_path / "Dockerfile").write_text((ROOT / "Dockerfile").read_text())
    done = subprocess.run([compose, "-f", str(work / "compose.yaml"), "config"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "redis", "release", "web", *LANES}
    for lane in LANES:
        assert services[lane]["environment"]["Q_CLUSTER_NAME"] == lane
        assert services[lane]["stop_signal"] == "SIGINT"
        assert services[lane]["depends_on"]["release"]["condition"] == \
            "service_completed_successfully"
    assert services["web"]["depends_on"]["release"]["condition"] == \
        "service_completed_successfully"


def test_the_compose_lanes_wait_longer_than_a_task_when_stopped() -> None:
    from django.conf import settings

    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for lane in LANES:
        grace = int(services[lane]["stop_grace_period"].rstrip("s"))
        assert grace > settings.Q_CLUSTER["timeout"]


def test_the_image_copies_every_app_and_installs_the_requirements() -> None:
    from django.conf import settings

    lines = [line.split("#")[0].strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    copied = {source for sources in copies for source in sources}
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    ours = {app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0])
            .is_dir()}
    assert ours | {"project", "manage.py", "requirements.txt"} <= copied
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN pip install"))
    first_app = next(i for i, line in enumerate(lines) if line.startswith("COPY project"))
    assert "-r requirements.txt" in lines[install] and install < first_app  # cached layer
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
