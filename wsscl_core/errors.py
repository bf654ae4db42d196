"""The one exception type for problems a user can cause or fix.

The CLI prints its message without a traceback; the studio shows it with ``st.error``.
"""


class WssclError(Exception):
    """A problem the user can act on; the message is written for them."""


class RunCancelled(WssclError):
    """A run was stopped by its cancel flag; partial results are discarded."""


class RunDiverged(WssclError):
    """A loss became NaN/Inf; the run stopped and nothing it produced is kept."""
