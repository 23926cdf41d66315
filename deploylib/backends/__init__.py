"""Where operations run: one ``Backend`` per target.

``local`` runs on this machine through Invoke, ``printer`` prints instead of running (dry-run),
``fake`` records (``deploylib.testing``). The SSH backend is one more implementation of the
same interface, imported only when an SSH host is involved.
"""

from deploylib.backends.base import Backend, Result

__all__ = ["Backend", "Result"]
