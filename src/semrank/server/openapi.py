"""The committed OpenAPI document: ``python -m semrank.server.openapi [PATH]`` rewrites it.

``tests/test_server_openapi.py`` fails when ``docs/openapi.json`` is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("docs") / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The schema of an app with default settings (no models are loaded to build it)."""
    from semrank.server.app import create_app

    return create_app().openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        # Not a path: "--help" would otherwise become a file of that name.
        print(f"usage: python -m semrank.server.openapi [PATH]  (default {DEFAULT_PATH})")
        sys.exit(0 if args[0] in ("-h", "--help") else 2)
    path = Path(args[0]) if args else DEFAULT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
