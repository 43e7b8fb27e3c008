"""`semrank sql install`: semantic ranking callable from PostgreSQL."""

from __future__ import annotations

import typer

sql_app = typer.Typer(
    help="SQL functions for PostgreSQL (semrank.rank).", no_args_is_help=True, rich_markup_mode=None
)


@sql_app.command("install")
def install_command(
    dsn: str = typer.Option(
        ...,
        "--dsn",
        envvar=["SEMRANK_STORE", "SEMRANK_PG_DSN"],  # the store's variable, as elsewhere
        help="postgresql://user@host:port/database (default: $SEMRANK_STORE)",
    ),
    endpoint: str | None = typer.Option(
        None,
        "--endpoint",
        help="URL of the running `semrank serve` (default http://127.0.0.1:8000).",
    ),
    api_key: str | None = typer.Option(None, "--api-key", help="API key the server expects."),
    timeout: float | None = typer.Option(None, "--timeout", min=0.1, help="HTTP timeout (s)."),
) -> None:
    """Install semrank.rank(query, documents, ids, model) and its settings (idempotent)."""
    from semrank.sql import install
    from semrank.store.postgres import redact

    applied = install(dsn, endpoint=endpoint, api_key=api_key, timeout_s=timeout)
    state = f"applied migrations {applied}" if applied else "already up to date"
    typer.echo(f"semrank.rank installed in {redact(dsn)} ({state})")


def register(app: typer.Typer) -> None:
    """Add `semrank sql ...`."""
    app.add_typer(sql_app, name="sql")
