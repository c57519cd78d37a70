"""One field of a JSON document changed, for the tests that refuse bodies field by field
(tests/unit/test_bodies.py against the declarations, tests/integration/test_keys.py against
the server)."""

from __future__ import annotations

import copy
from typing import Any

DELETE = object()  # as a value: remove the field instead


def edited(doc: Any, path: list[Any], value: Any) -> Any:
    """A copy of ``doc`` with the field at ``path`` (keys and list indexes) set to ``value``,
    or removed when ``value`` is ``DELETE``."""
    doc = copy.deepcopy(doc)
    target = doc
    for step in path[:-1]:
        target = target[step]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc
