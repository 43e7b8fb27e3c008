"""Elasticsearch's multi-target syntax: the indexes one search reads.

``"a,b"`` names several indexes (or aliases of them), ``"logs-*"`` every index whose name
matches the pattern and every index an alias whose name matches it names (Elasticsearch expands
a wildcard to aliases too), ``"_all"`` or ``"*"`` every index, and ``"-name"`` (after the
others) leaves out the indexes whose name matches it again (``"logs-*,-logs-old"``; an alias's
index is left out by its own name, as Elasticsearch resolves aliases after exclusions). Index
names start with a letter or digit and hold neither ``,`` nor ``*`` nor ``:``, so none of this
reads as a name, and a hit's key ``index:id`` splits at its first colon.

As Elasticsearch answers by default: a named index that does not exist is an error (404;
``ignore_unavailable=True`` leaves it out), a pattern that matches nothing is no error (the
search finds nothing; ``allow_no_indices=False`` makes it one).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from semrank.errors import IndexNotFoundError, InvalidInputError
from semrank.store._aliases import list_aliases, resolve_index_name
from semrank.store._registry import list_indexes

EVERY_INDEX = frozenset({"_all", "*"})
KEY_SEPARATOR = ":"  # in no index name: a hit key's index ends at its first one


def is_multi_target(spec: object) -> bool:
    """Whether ``spec`` names indexes by the multi-target syntax rather than one by name."""
    return isinstance(spec, str) and ("," in spec or "*" in spec or spec in EVERY_INDEX)


def resolve_targets(
    spec: str,
    home: str | Path | None = None,
    *,
    store: str | None = None,
    ignore_unavailable: bool = False,
    allow_no_indices: bool = True,
) -> list[str]:
    """The indexes ``spec`` names, each once, in the order named (a pattern's in name order),
    aliases resolved to the index they name."""
    parts = spec.split(",")
    if any(not part.strip() for part in parts):
        raise InvalidInputError(
            f"index list {spec!r:.120} has an empty name; separate index names (or patterns "
            'such as "logs-*") with single commas'
        )
    every = list_indexes(home, store=store)
    # Read only for a pattern: a list of names looks each up (``resolve_index_name``).
    patterned = any("*" in part and part not in EVERY_INDEX for part in parts)
    aliases = list_aliases(home, store=store) if patterned else {}
    chosen: dict[str, None] = {}
    if parts[0].strip().startswith("-"):
        raise InvalidInputError(
            f"index list {spec!r:.120} starts with an exclusion; name the indexes (or a pattern) "
            f'first and leave some out after them: "logs-*,{parts[0].strip()}"'
        )
    for part in (part.strip() for part in parts):
        if part.startswith("-"):
            for name in [name for name in chosen if fnmatchcase(name, part[1:])]:
                del chosen[name]
        elif part in EVERY_INDEX or "*" in part:
            matched = every if part in EVERY_INDEX else _matching(part, every, aliases)
            if not matched and not allow_no_indices:
                raise IndexNotFoundError(
                    f"no index matches {part!r} (allow_no_indices is false); indexes: "
                    f"{', '.join(every) or 'none'}"
                )
            chosen.update(dict.fromkeys(matched))
        else:
            name = resolve_index_name(part, home, store=store)
            if name in every:
                chosen[name] = None
            elif not ignore_unavailable:
                raise IndexNotFoundError(
                    f"index {part!r} (named in {spec!r:.120}) not found; indexes: "
                    f"{', '.join(every) or 'none'}"
                )
    return list(chosen)


def _matching(pattern: str, every: list[str], aliases: dict[str, str]) -> list[str]:
    """The indexes ``pattern`` matches by their names or their aliases' (alias -> index), in
    the order of the names matched."""
    targets = {**{name: name for name in every}, **aliases}  # no alias takes an index's name
    indexes = set(every)
    found = (targets[name] for name in sorted(targets) if fnmatchcase(name, pattern))
    return list(dict.fromkeys(index for index in found if index in indexes))


def hit_key(index: str, doc_id: str) -> str:
    """One hit of a search over several indexes, told from the same id in another index."""
    return f"{index}{KEY_SEPARATOR}{doc_id}"


def split_key(key: str) -> tuple[str, str]:
    """``hit_key``'s (index, id)."""
    index, _, doc_id = key.partition(KEY_SEPARATOR)
    return index, doc_id
