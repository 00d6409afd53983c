from misalign_tui.core.metrics.profile import *  # noqa: F401,F403 - temporary during the split
from misalign_tui.core.metrics.profile import _grouped_counts  # noqa: F401
