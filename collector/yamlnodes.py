"""Small helpers to validate a YAML file node by node, so every error names its file and line.

The collector's data files (suppressions, exporters) are read with ``yaml.compose`` instead of
``yaml.safe_load``: the node tree keeps the line of every key and value.
"""

from __future__ import annotations

from typing import Any

import yaml


class YamlFileError(ValueError):
    """A data file is invalid (message: ``FILE:LINE: problem``)."""


class Doc:
    """One file's node tree plus the file name, for ``FILE:LINE:`` messages."""

    def __init__(self, text: str, source: str, error: type[YamlFileError] = YamlFileError) -> None:
        self.source, self.error = source, error
        try:
            self.root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise error(f"{source}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None

    def fail(self, node: yaml.Node | None, problem: str) -> YamlFileError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return self.error(f"{self.source}{line}: {problem}")

    def mapping(self, node: yaml.Node | None, what: str, allowed: set[str]) -> dict[str, yaml.Node]:
        """The keys of a mapping node; unknown keys are an error (a typo must not be ignored)."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = str(key.value)
            if name not in allowed:
                raise self.fail(key, f"unknown key {name!r} in {what} (allowed: {', '.join(sorted(allowed))})")
            if name in out:
                raise self.fail(key, f"duplicate key {name!r} in {what}")
            out[name] = value
        return out

    def sequence(self, node: yaml.Node | None, what: str) -> list[yaml.Node]:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return list(node.value)

    def value(self, node: yaml.Node) -> Any:
        return yaml.safe_load(yaml.serialize(node))

    def string(self, node: yaml.Node, what: str, *, max_len: int = 2048) -> str:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise self.fail(node, f"{what} must be a non-empty string of at most {max_len} characters")
        return value

    def strings(self, node: yaml.Node, what: str) -> tuple[str, ...]:
        items = self.sequence(node, what) if not isinstance(node, yaml.ScalarNode) else [node]
        return tuple(self.string(item, what) for item in items)

    def number(self, node: yaml.Node, what: str, low: float, high: float) -> float:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.fail(node, f"{what} must be a number between {low:g} and {high:g}")
        return float(value)

    def integer(self, node: yaml.Node, what: str, low: int, high: int) -> int:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(node, f"{what} must be an integer between {low} and {high}")
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise self.fail(node, f"{what} must be true or false")
        return value

    def version_1(self, top: dict[str, yaml.Node]) -> None:
        if "version" in top and self.value(top["version"]) != 1:
            raise self.fail(top["version"], "version must be 1")


def read_text(path: str, error: type[YamlFileError] = YamlFileError) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None


__all__ = ["Doc", "YamlFileError", "read_text"]
