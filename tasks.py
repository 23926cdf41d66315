"""`invoke deploy --env=dev`, `invoke rollback --env=dev`, `invoke status --env=dev`, ..."""

from deploylib.tasks import ns

__all__ = ["ns"]
