from misalign_tui.core.store.database import *  # noqa: F401,F403 - temporary during the split
