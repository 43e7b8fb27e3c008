"""``python -m semrank``: the ``semrank`` command, from a venv that is not activated."""

from semrank._launch import main

main()
