"""API-format workflows: reading them, naming their nodes, ``NODE.INPUT=VALUE`` overrides, the files of UI outputs.

An API-format workflow ("Save (API)" in ComfyUI, or the ``prompt`` of a ``POST /prompt`` body) maps node ids
to ``{"class_type": ..., "inputs": {...}, "_meta": {"title": ...}}``; an input is a constant or a link
``["<node id>", <output index>]``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError


class WorkflowError(InputError):
    """The workflow cannot run as given; the message names the node, its class and the input."""


class UsageError(InputError):
    """A command-line value or a file named on the command line is unusable."""


def is_link(value) -> bool:
    """ComfyUI's link test: ``["<node id>", <output index>]``."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], (int, float)) and not isinstance(value[1], bool))


MAX_JSON_DEPTH = 100  # API workflows nest ~5 levels, UI graphs in extra_data ~15; deeper input is refused


def json_depth(value) -> int:
    """How deeply ``value`` nests lists and dicts (iterative: any depth is measured without recursion)."""
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return depth


def read_json(text: str, what: str):
    """``json.loads`` for input named on the command line: JSON nested deeper than :data:`MAX_JSON_DEPTH`
    (which would exhaust Python's stack here or in any later copy or walk) raises ``UsageError`` naming
    ``what``; malformed JSON raises ``json.JSONDecodeError`` as usual."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        if json_depth(value) <= MAX_JSON_DEPTH:
            return value
    raise UsageError(f"{what} nests lists/objects more than {MAX_JSON_DEPTH} levels deep; no workflow, prompt or "
                     f"value needs that many (check how the file was generated)")


def parse_value(text: str, what: str = "the value"):
    """A command-line value: JSON when it parses (``30``, ``1.5``, ``true``, ``"7"``, ``["4", 0]``), else text.
    ``what`` names it in the error for JSON nested too deeply."""
    try:
        return read_json(text, what)
    except json.JSONDecodeError:
        return text


@dataclass(frozen=True)
class Assignment:
    """``NODE.INPUT=VALUE``; NODE is a node id, a unique class_type or a unique title."""

    node: str
    input: str
    value: object

    @classmethod
    def parse(cls, text: str) -> "Assignment":
        """``NODE.INPUT=VALUE`` from the command line; VALUE is read with :func:`parse_value`."""
        target, sep, raw = text.partition("=")
        if not sep:
            raise UsageError(f"cannot read override {text!r}: expected NODE.INPUT=VALUE, e.g. 5.steps=30")
        return cls.at(target, parse_value(raw, f"--set {target}=..."))

    @classmethod
    def at(cls, target: str, value) -> "Assignment":
        """``NODE.INPUT`` plus a value that is already typed (JSONL job overrides, the prompt text)."""
        node, dot, name = target.rpartition(".")
        if not dot or not node or not name:
            raise UsageError(f"cannot read input reference {target!r}: expected NODE.INPUT, e.g. 5.steps or "
                             f"LTX2Sampler.seed")
        return cls(node, name, value)

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


@dataclass
class Workflow:
    prompt: dict[str, dict]
    extra_data: dict = field(default_factory=dict)
    source: str = "workflow"

    @classmethod
    def load(cls, path: str | Path) -> "Workflow":
        path = Path(path)
        try:
            data = read_json(path.read_text(encoding="utf-8"), f"workflow {path}")
        except OSError as exc:
            raise UsageError(f"cannot read workflow {path}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WorkflowError(f"{path} is not a JSON workflow ({exc})") from None
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data, source: str = "workflow") -> "Workflow":
        extra_data = {}
        if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
            extra_data = data.get("extra_data") or {}
            data = data["prompt"]
        if isinstance(data, dict) and "nodes" in data and "links" in data:
            raise WorkflowError(f"{source} is a UI-format workflow (nodes and links); in ComfyUI use Workflow > "
                                f"Export (API) and pass that file")
        if not isinstance(data, dict) or not data:
            raise WorkflowError(f"{source} holds no nodes; expected an API-format workflow "
                                f'{{"<id>": {{"class_type": ..., "inputs": {{...}}}}}}')
        for node_id, node in data.items():
            if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
                raise WorkflowError(f'node {node_id}: no "class_type"; expected {{"class_type": "...", '
                                    f'"inputs": {{...}}}}')
            if not isinstance(node.get("inputs", {}), dict):
                raise WorkflowError(f'node {node_id} ({node["class_type"]}): "inputs" is not an object')
            node.setdefault("inputs", {})
        return cls(data, extra_data, source)

    def copy(self) -> "Workflow":
        return Workflow(copy.deepcopy(self.prompt), copy.deepcopy(self.extra_data), self.source)

    def label(self, node_id: str) -> str:
        """``node 5 (LTX2Sampler)``: how every message names a node."""
        node = self.prompt.get(node_id)
        return f"node {node_id} ({node['class_type']})" if node else f"node {node_id}"

    def title(self, node_id: str) -> str | None:
        meta = self.prompt[node_id].get("_meta")
        return meta.get("title") if isinstance(meta, dict) else None

    def resolve(self, ref: str) -> str:
        """The id of the node ``ref`` names: an id, else a unique class_type, else a unique title."""
        if ref in self.prompt:
            return ref
        for what, matches in (("class_type", [i for i, n in self.prompt.items() if n["class_type"] == ref]),
                              ("title", [i for i in self.prompt if self.title(i) == ref])):
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise UsageError(f"{ref!r} is ambiguous: {len(matches)} nodes have that {what} "
                                 f"({', '.join(matches)}); use the node id instead")
        raise UsageError(f"no node {ref!r} in {self.source}; use a node id ({', '.join(list(self.prompt)[:12])}"
                         f"{', ...' if len(self.prompt) > 12 else ''}), a class_type or a title")

    def assign(self, assignment: Assignment, declared: Callable[[str], Iterable[str] | None] | None = None) -> str:
        """Set one input; returns the node id. The input must exist in the node already, or be declared by
        its class (``declared(class_type)`` returns the class's input names, or ``None`` when unknown)."""
        node_id = self.resolve(assignment.node)
        node = self.prompt[node_id]
        if assignment.input not in node["inputs"]:
            names = declared(node["class_type"]) if declared else None
            if names is None or assignment.input not in set(names):
                known = sorted(set(node["inputs"]) | set(names or ()))
                raise UsageError(f"{self.label(node_id)} has no input {assignment.input!r}"
                                 + (f"; its inputs: {', '.join(known)}" if known else ""))
        node["inputs"][assignment.input] = assignment.value
        return node_id


def ui_file_entries(outputs: dict) -> list[dict]:
    """The ``{"filename", "subfolder", "type"}`` entries of nodes' UI outputs, each file once (a node may
    report one file under several keys, e.g. core's ``images`` and our ``ltx2_video``)."""
    entries, seen = [], set()
    for ui in (outputs or {}).values():
        for items in (ui.values() if isinstance(ui, dict) else ()):
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and "filename" in item:
                    key = (item.get("type") or "output", item.get("subfolder") or "", item["filename"])
                    if key not in seen:
                        seen.add(key)
                        entries.append(item)
    return entries
