"""Strict YAML loading for the auth and alarm files: duplicate keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml_strict(path: str | Path) -> Any:
    """Parse a YAML file with SafeLoader semantics, refusing duplicate mapping keys."""
    text = Path(path).read_text(encoding="utf-8")
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
