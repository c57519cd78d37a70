"""Versioned schema migrations: ``<dialect>/NNNN_name.sql``, applied in order on start.

Each backend keeps a ``schema_version`` table (one row per applied version) and
applies every newer file in one transaction per file, so a crash mid-migration
leaves the schema at the last complete version. Files are never edited once
released: a change is a new file with the next number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"([0-9]{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """The dialect's migrations by version; versions must run 1, 2, 3, ... without gaps."""
    folder = resources.files(__name__) / dialect
    found: list[Migration] = []
    for entry in folder.iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    if [mig.version for mig in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations are not numbered 1..n without gaps")
    return found


def split_statements(sql: str, is_complete: Callable[[str], bool] | None = None) -> list[str]:
    """Split a script into statements at lines ending in ';' (that ``is_complete`` accepts)."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        if stripped.endswith(";"):
            text = "\n".join(current).strip()
            if is_complete is not None and not is_complete(text):
                continue
            statements.append(text)
            current = []
    if current and "\n".join(current).strip():
        raise RuntimeError("a migration ends in an unterminated statement")
    return statements
