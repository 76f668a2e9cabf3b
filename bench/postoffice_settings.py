"""Settings for the django-post-office baseline: the project's settings plus `post_office`.

Used to migrate the bench database (so post_office's tables exist beside ours) and to run
`manage.py send_queued_mail`. POST_OFFICE is left as a user would leave it (defaults:
BATCH_SIZE 100, THREADS_PER_PROCESS 5, LOG_LEVEL 2), unless POST_OFFICE_BATCH_SIZE /
POST_OFFICE_THREADS are given.
"""

from __future__ import annotations

import os

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "post_office"]

POST_OFFICE: dict[str, object] = {}
if os.environ.get("POST_OFFICE_BATCH_SIZE"):
    POST_OFFICE["BATCH_SIZE"] = int(os.environ["POST_OFFICE_BATCH_SIZE"])
if os.environ.get("POST_OFFICE_THREADS"):
    POST_OFFICE["THREADS_PER_PROCESS"] = int(os.environ["POST_OFFICE_THREADS"])
