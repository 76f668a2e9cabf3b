"""In-process fake mail servers for end-to-end tests (see each module's docstring)."""

from .postmark import FakePostmark, PostmarkRequest
from .smtp import FakeSMTP, SMTPAttempt, SMTPMessage

__all__ = ["FakePostmark", "PostmarkRequest", "FakeSMTP", "SMTPAttempt", "SMTPMessage"]
