"""Everything deploylib runs on a target, as ``Command`` values grouped by concern (built here,
run by backends): ``layout`` (paths, release ids), ``state`` (what a target holds, and the
decisions made from it), ``reading`` (reading it in one round trip), ``lock``, ``release``
(making and switching releases) and ``log`` (the release log). The few flags only GNU coreutils
has are named in ``gnu``."""
