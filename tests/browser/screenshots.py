"""`make screenshots`: the operator console's pages as 1280x800 PNGs in docs/screenshots/.

1. A throwaway folder holds a fresh SQLite database (DATABASE_URL, VAR_DIR point there); it is
   migrated, so the `operators` and `viewers` groups exist as on a real install.
2. Demo data, an operator `olga`, and messages in the statuses the services and transitions
   lead to: sent (notify() then an in-process drain to Django's locmem backend), dead letters
   of four kinds, a retry, one in flight, pending, scheduled, cancelled; a few audit entries.
   Nothing is written with raw SQL or by setting a status field.
3. The platform's web process (`manage.py runserver --noreload`, as `make run` starts it) on a
   free port against that database.
4. Debian's Chromium logs in as olga through the login form and photographs each entry of
   SHOTS, in order, after its optional steps.

To add a page, add one line to SHOTS: `Shot(name, url, steps)`. `url` may name the ids that
`seed()` returns, as `{order_version}`; `steps(page)` runs after the page loaded (click, fill,
run an action) and before the picture. `--only a,b` takes only those pictures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Page, sync_playwright

from tests.browser.chromium import admin_login, launch, new_page

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"
OPERATOR = "olga"

Step = Callable[[Page], None]


@dataclass(frozen=True)
class Shot:
    name: str  # docs/screenshots/<name>.png
    url: str  # relative to the server; may name ids from seed(), e.g. {order_version}
    steps: Step | None = None  # run after the page loaded, before the picture


def run_action(action: str) -> Step:
    """Steps for a changelist: select every row, choose `action`, press Go (for pages behind an
    action, such as a confirmation page)."""

    def steps(page: Page) -> None:
        page.check("#action-toggle")
        page.select_option("select[name=action]", action)
        page.click("button[name=index]")

    return steps


def fill_reason(page: Page) -> None:
    page.fill("#id_reason", "Relay back up after the 451 storm; the expired ones stay dead.")
    page.fill("#id_pace", "5")


def edit_and_preview(page: Page) -> None:
    """The editor with a changed subject and heading, previewed (not saved)."""
    page.fill("#id_subject", "Order {{ order_id }} is confirmed: thank you!")
    page.fill("#id_html_body", page.input_value("#id_html_body").replace(
        "Thanks for your order", "Thank you for shopping with us"))
    page.click("#draft-preview-button")
    page.wait_for_selector("#draft-preview-status:has-text('Updated.')")
    page.locator("#draft-preview").scroll_into_view_if_needed()


ORDER_DATA = quote(json.dumps(
    {"order_id": 1042, "total": "$54.30",
     "items": [{"name": "Green tea", "qty": 2}, {"name": "Teapot", "qty": 1}]}))

SHOTS = [
    Shot("admin-index", "/admin/"),
    Shot("dead-letters", "/admin/dlq/deadletter/"),
    Shot("messages", "/admin/notifications/message/"),
    Shot("template-preview",
         f"/admin/templates_app/templateversion/{{order_version}}/preview/?data={ORDER_DATA}"),
    Shot("audit-log", "/admin/notifications/auditentry/"),
    Shot("dlq-groups", "/admin/dlq/deadletter/groups/"),
    Shot("requeue-confirmation", "/admin/dlq/deadletter/confirm/requeue/",
         fill_reason),
    Shot("operation-progress", "/admin/dlq/deadletter/operations/{operation}/"),
    Shot("template-editor",
         "/admin/templates_app/templateversion/add/?template={order_template}&locale=en",
         edit_and_preview),
    Shot("template-diff", "/admin/templates_app/templateversion/diff/"
         "?template={order_template}&old={order_version}&new={order_draft}"),
    Shot("dashboard", "/admin/notifications/message/dashboard/"),
    Shot("suppressions", "/admin/notifications/suppression/"),
]


def seed() -> dict[str, int]:
    """Fill the fresh database (Django is set up); returns ids that SHOTS' URLs may name."""
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from dlq.operations import operation_create, operation_run
    from dlq.selectors import DeadLetterFilter
    from notifications import suppression
    from notifications.audit import audit_record
    from notifications.delivery import drain_lane
    from notifications.demo import seed_demo
    from notifications.models import (
        AuditAction,
        DeadReason,
        Message,
        Outcome,
        SuppressionReason,
    )
    from notifications.roles import OPERATORS, VIEWERS
    from notifications.rollup import rollup_add
    from notifications.services import message_cancel, notify
    from notifications.wakeups import heartbeat
    from templates_app.models import TemplateVersion
    from templates_app.services import template_version_create
    from tests.browser import seed as rows

    call_command("migrate", verbosity=0)
    seed_demo()
    olga = rows.console_user(OPERATOR, OPERATORS)
    rows.console_user("vic", VIEWERS)
    settings.NOTIFY = {**settings.NOTIFY, "DRAIN_IDLE_SECONDS": 0.0}
    order = rows.ORDER

    # Sent: queued, then drained in this process to the locmem backend.
    for n, to in enumerate(["ann@example.com", "bob@example.org", "chen@example.net"], 1):
        notify(event="order.placed", to=to, data={**order, "order_id": 1000 + n})
    notify(event="user.registered", to="dana@example.com", data={"username": "dana"})
    notify(event="password.reset", to="eve@example.com",
           data={"reset_url": "https://shop.example.com/reset/8f3a"})
    drain_lane("transactional")
    for n in range(4):
        notify(event="marketing.newsletter", to=f"reader{n}@example.com", data=rows.NEWSLETTER)
    drain_lane("bulk")

    # Dead letters: claimed, one attempt recorded, then killed with the reasons and the failure
    # signatures a drain gives; groups of different sizes for the groups page.
    try_later = "smtplib.SMTPDataError: (451, b'4.3.0 try later')"
    dead = rows.dead_letter(to="frank@example.com", error=try_later)
    for name in ("gina", "hugo", "iris", "jack", "kate", "liam", "mona"):
        rows.dead_letter(to=f"{name}@example.com", error=try_later)
    # Sent already (same event, recipient and data as a sent message): the preview skips it.
    rows.dead_letter(to="ann@example.com", data={**order, "order_id": 1001}, error=try_later)
    for name in ("hal", "ida", "ned"):
        rows.dead_letter(to=f"{name}@oldmail.example.com", reason=DeadReason.PERMANENT_ERROR,
                         code="550",
                         error="smtplib.SMTPRecipientsRefused: 550 5.1.1 mailbox unavailable")
    for name in ("jo", "pat"):
        rows.dead_letter(to=f"{name}@example.com", event="marketing.newsletter",
                         data=rows.NEWSLETTER, reason=DeadReason.PERMANENT_ERROR, code="406",
                         error="anymail.exceptions.AnymailRecipientsRefused: inactive recipient")
    # A timeout after sending: it may have gone out, the preview warns.
    rows.dead_letter(to="quinn@example.com", code="", outcome=Outcome.UNKNOWN,
                     error="requests.exceptions.ReadTimeout: read timed out (10 s)")
    # A password reset that died two hours ago: past its one-hour expiry, the preview skips it.
    expired = rows.dead_letter(to="ivy@example.com", event="password.reset",
                               data={"reset_url": "https://shop.example.com/reset/77c1"},
                               error="smtplib.SMTPServerDisconnected: Connection unexpectedly "
                                     "closed", code="")
    Message.objects.filter(pk=expired.pk).update(created_at=timezone.now() - timedelta(hours=2))

    # Waiting for a retry, in flight, pending, scheduled, cancelled (claims first: they take
    # every due message of the lane).
    rows.retrying(to="kim@example.com", error="smtplib.SMTPServerDisconnected: timed out")
    rows.claimed(notify(event="order.placed", to="lee@example.com", data=order))
    notify(event="order.placed", to="max@example.com", data=order)
    notify(event="user.registered", to="nia@example.com", data={"username": "nia"},
           send_at=timezone.now() + timedelta(hours=2))
    message_cancel(message=notify(event="order.placed", to="oz@example.com", data=order))
    for n in range(3):
        notify(event="marketing.newsletter", to=f"fan{n}@example.com", data=rows.NEWSLETTER)

    audit_record(user=olga, action=AuditAction.REQUEUE, target="dead letters: max_attempts",
                 count=12, reason="provider outage over", filter={"dead_reason": "max_attempts"})
    audit_record(user=olga, action=AuditAction.PAUSE, target="lane bulk",
                 reason="bounce storm on the newsletter")
    audit_record(user="shell-admin", action=AuditAction.RESUME, target="lane bulk",
                 reason="bounces back to normal")

    # The suppression list as webhooks, recipients and operators fill it (the services that do),
    # one entry removed since.
    for name in ("hal", "ida", "ned"):
        suppression.suppress(email=f"{name}@oldmail.example.com",
                             reason=SuppressionReason.HARD_BOUNCE, source="Postmark bounced (hard)",
                             note="550 5.1.1 mailbox unavailable")
    suppression.suppress(email="reader2@example.com", reason=SuppressionReason.COMPLAINT,
                         source="Amazon SES complained")
    suppression.suppress(email="reader1@example.com", reason=SuppressionReason.UNSUBSCRIBE,
                         scope="newsletter", source="one-click unsubscribe")
    suppression.suppress(email="lou@example.com", reason=SuppressionReason.SOFT_BOUNCES,
                         source="Postmark bounced (soft)", note="3 soft bounces in 7 days")
    suppression.suppress(email="pat@example.com", reason=SuppressionReason.MANUAL,
                         source=f"admin: {OPERATOR}", user=olga,
                         audit_reason="asked by phone to stop all mail")
    removed, _ = suppression.suppress(email="jo@example.com", reason=SuppressionReason.MANUAL,
                                      source=f"admin: {OPERATOR}", user=olga,
                                      audit_reason="typo in the address on file")
    suppression.unsuppress(pks=[removed.pk], user=olga, reason="address corrected")

    # An operation under way: a paced requeue of the biggest group, one chunk done (its task is
    # run here once with no time budget, so it stops after that chunk, as if mid-run).
    group = Message.objects.get(pk=dead.pk).failure_signature
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(signature=group),
                                 reason="Relay back up after the 451 storm", user=olga, pace=2)
    operation_run(operation.pk, budget=0, requeue_self=False)

    # A second version of the order confirmation, saved but not active: the diff's right side.
    version = TemplateVersion.objects.get(template__key="order-confirmation", is_active=True)
    draft = template_version_create(
        template=version.template, locale="en", user=olga, activate=False,
        subject="Order {{ order_id }} is confirmed: thank you!",
        html_body=version.html_body.replace("Thanks for your order",
                                            "Thank you for shopping with us"),
        text_body=version.text_body + "\nQuestions? Just reply to this email.\n")
    # The last hour as the drains would have written it to the rollup (the dashboard's chart):
    # transactional steady, a newsletter burst half an hour ago with a spell of failures.
    now = timezone.now()
    for minutes_ago in range(60, 0, -1):
        at = now - timedelta(minutes=minutes_ago)
        rollup_add(lane="transactional", at=at, sent=40 + (minutes_ago * 7) % 23,
                   failed=1 if minutes_ago % 9 == 0 else 0)
        burst = 25 <= minutes_ago <= 40
        rollup_add(lane="bulk", at=at, sent=900 + (minutes_ago * 37) % 300 if burst else 0,
                   failed=(120 if 30 <= minutes_ago <= 33 else 4) if burst else 0,
                   dead=3 if minutes_ago == 31 else 0)
    for lane in settings.LANES:
        heartbeat(lane)
    return {"order_version": version.pk, "order_template": version.template_id, "dead": dead.pk,
            "order_draft": draft.pk, "operation": operation.pk}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the web process exited ({server.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    sys.exit(f"the web process did not answer {url} within 60 s:\n{log.read_text()}")


def shoot(base_url: str, ids: dict[str, int], shots: list[Shot], out: Path) -> list[Path]:
    from tests.browser.seed import PASSWORD

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = new_page(browser, base_url)
        # The admin's navigation sidebar closed (its own toggle, kept in localStorage): a
        # changelist then shows all its columns at 1280 px.
        page.add_init_script(
            "window.localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
        admin_login(page, OPERATOR, PASSWORD)
        for shot in shots:
            response = page.goto(shot.url.format(**ids))
            if response is None or response.status != 200:
                sys.exit(f"{shot.name}: {shot.url} answered "
                         f"{response.status if response else 'nothing'}")
            if shot.steps:
                shot.steps(page)
            page.wait_for_load_state("networkidle")
            path = out / f"{shot.name}.png"
            page.screenshot(path=str(path))
            written.append(path)
            print(f"  {path.relative_to(ROOT)}  {shot.url.format(**ids).split('?')[0]}")
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated shot names")
    args = parser.parse_args()
    wanted = {n for n in args.only.split(",") if n}
    unknown = wanted - {s.name for s in SHOTS}
    if unknown:
        sys.exit(f"no such shot: {', '.join(sorted(unknown))}")
    shots = [s for s in SHOTS if not wanted or s.name in wanted]

    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        env = {
            **os.environ,
            "VAR_DIR": tmp,
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
            "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "REDIS_URL": "",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "project.settings",
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.db import connections

        ids = seed()
        connections.close_all()

        port = free_port()
        log = Path(tmp) / "web.log"
        with open(log, "wb") as log_file:
            server = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}",
                 "--noreload"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            try:
                base_url = f"http://127.0.0.1:{port}"
                wait_until_up(f"{base_url}/admin/login/", server, log)
                print(f"screenshots of {base_url} as {OPERATOR}:")
                shoot(base_url, ids, shots, OUT)
            finally:
                server.terminate()
                server.wait(timeout=10)


if __name__ == "__main__":
    main()
