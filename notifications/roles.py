"""The two operator roles, as Django groups: `viewers` read everything the console shows;
`operators` also act (requeue, discard, cancel, pause, edit and activate templates, add to and
remove from the suppression list, import it).

Created by a migration (notifications 0009) and kept in step after every `migrate` (a
post_migrate handler), so a model added later is readable by both groups without a new
migration. Only these groups' permissions are touched; other groups are left alone.
"""

from __future__ import annotations

from typing import Any

VIEWERS = "viewers"
OPERATORS = "operators"

# Every view_* permission of these apps goes to both groups.
CONSOLE_APPS = ("notifications", "dlq", "templates_app", "django_q")

OPERATOR_ACTIONS = (
    "notifications.cancel_message",
    "notifications.pause_lane",
    # The suppression list: add (one address, or a CSV import) and change (remove an entry, which
    # deactivates it). Never delete: the rows are history (notifications/admin_deliverability.py).
    "notifications.add_suppression",
    "notifications.change_suppression",
    "dlq.requeue_deadletter",
    "dlq.discard_deadletter",
    "templates_app.add_template",
    "templates_app.change_template",
    "templates_app.add_templateversion",
    "templates_app.activate_templateversion",
    "templates_app.test_send_templateversion",
)


def sync_roles(apps: Any) -> None:
    """Create the groups if missing and give them their permissions (idempotent)."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    views = list(permission_model.objects.filter(
        content_type__app_label__in=CONSOLE_APPS, codename__startswith="view_"))
    actions = []
    for dotted in OPERATOR_ACTIONS:
        app_label, codename = dotted.split(".")
        actions.extend(permission_model.objects.filter(
            content_type__app_label=app_label, codename=codename))
    viewers, _ = group_model.objects.get_or_create(name=VIEWERS)
    operators, _ = group_model.objects.get_or_create(name=OPERATORS)
    viewers.permissions.add(*views)
    operators.permissions.add(*views, *actions)


def sync_roles_after_migrate(sender: Any, **kwargs: Any) -> None:
    from django.apps import apps as global_apps

    if sender.label == "dlq":  # the last of the console's apps: their permissions exist now
        sync_roles(kwargs.get("apps") or global_apps)
