"""`semrank models ...`: what the catalog holds."""

from __future__ import annotations

import json
import sys

import typer

models_app = typer.Typer(help="The model catalog.", no_args_is_help=True, rich_markup_mode=None)


@models_app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the models semrank knows by name."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from semrank.models.catalog import CATALOG

    if as_json:
        typer.echo(json.dumps([asdict(spec) for spec in CATALOG], indent=2))
        return
    columns = ("name", "kind", "architecture", "max len", "licence", "score", "source")
    rows = [
        (
            f"{spec.name} (default)" if spec.default else spec.name,
            spec.kind,
            spec.architecture,
            str(spec.max_length),
            spec.license,
            spec.activation,
            spec.source,
        )
        for spec in CATALOG
    ]
    if sys.stdout is None or not sys.stdout.isatty():  # piped: whole names, one per line
        typer.echo("\n".join("\t".join(row) for row in [columns, *rows]))
        return
    table = Table(title="semrank models")
    for column in columns:
        table.add_column(column, no_wrap=column == "name")  # names are what --model takes
    for row in rows:
        table.add_row(*row)
    Console(markup=False).print(table)


def register(app: typer.Typer) -> None:
    """Add `semrank models`."""
    app.add_typer(models_app, name="models")
