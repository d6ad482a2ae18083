"""Line numbers for policy errors: the YAML node a validation error path points at.

Policy files are validated with msgspec, whose errors name a path like ``$.datatypes[3].patterns[0]``;
operators need the file's line. ``node_at`` walks the composed YAML tree along that path and stops at
the deepest node that exists, so an error about a missing key points at the mapping that lacks it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
# libyaml's parser when PyYAML was built with it (the wheels are): the policies load at every start
# (sensor, replay, each test), and the pure-Python parser spends most of the start-up's policy time.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def node_at(node: yaml.Node | None, path: str) -> yaml.Node | None:
    """The node at a msgspec error path (``$.a[0].b``), or the deepest existing node on the way."""
    for name, index in _PART.findall(path.removeprefix("$")):
        if node is None:
            return None
        if name and isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == name), None)
            if found is None:
                return node
            node = found
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
        else:
            return node
    return node


def line_of(node: yaml.Node | None) -> int:
    """1-based line of a node (1 when there is none: the error concerns the whole file)."""
    return int(node.start_mark.line) + 1 if node is not None else 1


def read_policy_yaml(path: str | Path, error: type[Exception]) -> tuple[Any, yaml.Node | None]:
    """Read a policy file once: its data and its node tree (for line numbers), from one parse.

    Unreadable files and YAML syntax errors raise ``error`` with ``file[:line]: problem``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc.__class__.__name__}: {exc}") from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{path}:{mark.line + 1 if mark is not None else 1}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return data, root
