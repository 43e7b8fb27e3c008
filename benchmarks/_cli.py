"""How every benchmark script ends on bad input: one line naming it, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from semrank.errors import SemrankError


def run(main: Callable[[], None]) -> None:
    """``main()``; a semrank error or a missing file (data absent, a wrong --home) exits with
    its message and status 2, as the semrank CLI does."""
    try:
        main()
    except (SemrankError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
