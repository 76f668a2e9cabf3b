"""`make run`: the web server and one qcluster per lane, in the foreground, with a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


def read_procfile(path: Path) -> list[tuple[str, str]]:
    """(name, command) of each `name: command` line of a Procfile, in order."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read the Procfile {path}: {exc.strerror}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not PROCESS_NAME.fullmatch(name.strip()) or not command.strip():
            raise CommandError(f"{path}, line {number}: expected `name: command`, got {line!r}")
        entries.append((name.strip(), command.strip()))
    if not entries:
        raise CommandError(f"{path} names no process")
    return entries


PROCESS_NAME = re.compile(r"[A-Za-z0-9_-]+")


class Command(BaseCommand):
    help = ("Run the web server and both lanes' qcluster processes until Ctrl-C; with --procfile, "
            "the Procfile's `release` first, then its other processes (make serve).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--procfile", type=Path, default=None,
                            help="run this Procfile's processes (through sh, so $PORT expands) "
                                 "instead of runserver and the lanes")

    def handle(self, *args: Any, procfile: Path | None = None, **options: Any) -> None:
        port = settings.PORT
        if procfile is not None:
            specs = self._procfile_specs(procfile)
        else:
            manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
            specs = [("web", manage + ["runserver", f"127.0.0.1:{port}", "--noreload"], {})]
            for lane in settings.LANES:
                specs.append((f"{lane} cluster", manage + ["qcluster"],
                              {"Q_CLUSTER_NAME": lane}))
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        for name, argv, extra_env in specs:
            # Each child gets its own process group so Ctrl-C reaches us once, and we stop each
            # qcluster with SIGINT to its group: in-flight sends finish, nothing is cut mid-send.
            proc = subprocess.Popen(argv, env={**os.environ, **extra_env}, start_new_session=True,
                                    cwd=settings.BASE_DIR)
            children.append((name, proc))
        self.stdout.write(self.style.SUCCESS(self._banner(port)))
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in children:
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping")
                        stopping = True
                time.sleep(0.3)
        finally:
            self._shutdown(children)

    def _procfile_specs(self, procfile: Path) -> list[tuple[str, list[str], dict[str, str]]]:
        """The Procfile's processes, after running its `release` to completion."""
        entries = read_procfile(procfile)
        # The venv's python and gunicorn first on PATH, as the Procfile expects them there.
        env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        for name, command in entries:
            if name == "release":
                self.stdout.write(f"release: {command}")
                done = subprocess.run(["sh", "-c", command], env={**os.environ, **env},
                                      cwd=settings.BASE_DIR)
                if done.returncode:
                    raise CommandError(f"release failed (exit {done.returncode}): {command}")
        return [(name, ["sh", "-c", f"exec {command}"], env)
                for name, command in entries if name != "release"]

    def _shutdown(self, children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        self.stdout.write("stopping: letting in-flight sends finish...")
        for _, proc in children:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + settings.Q_CLUSTER["timeout"] + 5
        for name, proc in children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in time; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.stdout.write("stopped.")

    def _banner(self, port: int) -> str:
        outbox = settings.EMAIL_FILE_PATH
        return (
            f"\nNotification platform running.\n"
            f"  Admin:  http://127.0.0.1:{port}/admin/  (login: admin / admin)\n"
            f"  Emails: written to {outbox} (EMAIL_BACKEND={settings.EMAIL_BACKEND})\n"
            f"  Send a test event, in another terminal:\n"
            f"    .venv/bin/python manage.py send_event order.placed ann@example.com "
            f"--data '{{\"order_id\": 42, \"total\": \"$19.90\", "
            f"\"items\": [{{\"name\": \"Tea\", \"qty\": 2}}]}}'\n"
            f"  Queue depth: .venv/bin/python manage.py notifications_stats\n"
            f"  Stop: Ctrl-C\n"
        )
