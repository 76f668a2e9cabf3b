"""CPU priority per lane: bulk sheds first, for CPU too.

Each lane has its own qcluster processes, so a host running both can tell the scheduler which
matters: `manage.py qcluster` with Q_CLUSTER_NAME=<lane> raises its niceness by
NOTIFY_NICE_<LANE> (bulk 10, transactional 0 by default) before it forks its workers, which
inherit it. When both lanes want the CPU (a bulk burst on a busy host), the kernel then runs the
transactional lane first; when the host is otherwise idle, bulk still gets all of it. Measured in
docs/performance.md ("Lane isolation during a bulk burst"). A negative value needs privileges
(systemd's Nice=, or root); without them it is logged and ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from django.conf import settings

logger = logging.getLogger(__name__)


def apply_lane_priority(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """For a lane's qcluster process, add its NOTIFY_NICE_<LANE>; returns what was added."""
    if len(argv) < 2 or argv[1] != "qcluster":
        return 0
    increment = settings.NOTIFY["LANE_NICE"].get(environ.get("Q_CLUSTER_NAME", ""), 0)
    if not increment:
        return 0
    try:
        os.nice(increment)
    except OSError:  # lowering niceness needs privileges
        logger.warning("could not change the lane's CPU priority by %+d (needs privileges)",
                       increment)
        return 0
    return increment
