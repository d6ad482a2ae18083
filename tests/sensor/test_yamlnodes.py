"""Policy YAML: libyaml's parser (when PyYAML has it) and the pure-Python one give the same data,
the same node lines for error messages, and the same ``file:line`` for syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sensor import yamlnodes
from sensor.yamlnodes import line_of, node_at, read_policy_yaml

POLICIES = Path(yamlnodes.__file__).resolve().parents[1] / "policies"


class PolicyError(Exception):
    pass


@pytest.fixture(params=["libyaml", "python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "libyaml":
        if not getattr(yaml, "__with_libyaml__", False):
            pytest.fail("PyYAML without libyaml: the policies would load with the slow parser")
        monkeypatch.setattr(yamlnodes, "_Loader", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(yamlnodes, "_Loader", yaml.SafeLoader)
    return str(request.param)


def test_bundled_policies_read_the_same_with_either_parser(loader: str) -> None:
    files = sorted(POLICIES.rglob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        data, root = read_policy_yaml(path, PolicyError)
        assert data == yaml.safe_load(path.read_text(encoding="utf-8")), path
        assert root is not None


def test_node_lines_and_syntax_errors(loader: str, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules:\n  - id: A-001\n    pattern: x\n  - id: B-002\n    pattern: y\n")
    _, root = read_policy_yaml(path, PolicyError)
    assert line_of(node_at(root, "$.rules[1].pattern")) == 6
    assert line_of(node_at(root, "$.rules[1].missing")) == 5  # the mapping that lacks the key
    path.write_text("version: 1\nrules: [\n  - id: x\n")
    with pytest.raises(PolicyError) as err:
        read_policy_yaml(path, PolicyError)
    assert str(err.value).startswith(f"{path}:3: invalid YAML: "), str(err.value)
