"""Headless execution of API-format workflows made of ComfyUI classic ("V1") node classes.

Follows ComfyUI's ``execution.py`` / ``comfy_execution/graph.py`` for V1 nodes, so a workflow that runs here
runs the same way inside ComfyUI:

- a node class declares ``INPUT_TYPES()`` (``required`` / ``optional`` / ``hidden``), ``RETURN_TYPES``,
  ``FUNCTION`` and optionally ``OUTPUT_NODE``, ``INPUT_IS_LIST``, ``OUTPUT_IS_LIST``, ``IS_CHANGED``,
  ``VALIDATE_INPUTS``, ``NOT_IDEMPOTENT``; one instance per node id is kept between runs;
- only output nodes (``OUTPUT_NODE = True``) and the nodes upstream of them run, in dependency order, with
  ComfyUI's preference for output nodes and their direct feeders among the ready ones;
- constants are converted and checked like the server does (INT/FLOAT/STRING/BOOLEAN, ``min``/``max``, combo
  lists) unless ``VALIDATE_INPUTS`` takes the input; links are type-checked against ``RETURN_TYPES``;
- hidden ``PROMPT``, ``EXTRA_PNGINFO``, ``UNIQUE_ID`` are filled; functions may return a tuple or
  ``{"ui": ..., "result": ...}``; ``ui`` dicts become the run's outputs (ComfyUI's history ``outputs``);
- node outputs are cached by input signature between runs of one :class:`Executor`, so a batch of jobs
  loads its models once.

One deliberate difference: a missing *optional* widget input gets the widget's default (what the ComfyUI
frontend sends), while the server would omit it; node functions should therefore use the same defaults in
their signatures as in ``INPUT_TYPES``. Unsupported (refused with a message): V3 (``comfy_api``) classes,
lazy inputs, node expansion, the ``DYNPROMPT`` hidden input.
"""

from __future__ import annotations

import inspect
import math
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths, progress
from ..errors import LTX2Error, RunInterrupted
from .workflow import Workflow, WorkflowError, is_link, ui_file_entries

EventHandler = Callable[[str, dict], None]
"""Receives ComfyUI websocket-style messages: ``(type, data)``, e.g. ``("progress", {"node", "value", "max"})``."""

_CONVERTERS = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


class ExecutionError(LTX2Error):
    """A node raised while the workflow ran; names the node, its class and the exception."""

    exit_code = 1

    def __init__(self, message: str, node_id: str, details: str = ""):
        super().__init__(message)
        self.node_id = node_id
        self.details = details


def default_registry() -> dict[str, type]:
    """This pack's node classes plus the few core ComfyUI I/O nodes the headless runner provides."""
    from ..nodes import NODE_CLASS_MAPPINGS
    from .core_nodes import CORE_NODE_CLASSES

    return {**CORE_NODE_CLASSES, **NODE_CLASS_MAPPINGS}


@dataclass
class InputSpec:
    name: str
    category: str  # required | optional | hidden
    type: object  # "INT", "MODEL", ... or a list of combo choices
    options: dict

    @property
    def is_combo(self) -> bool:
        return isinstance(self.type, list) or (self.type == "COMBO" and "options" in self.options)

    @property
    def choices(self) -> list:
        return self.type if isinstance(self.type, list) else list(self.options.get("options", []))

    def widget_default(self):
        """The value the frontend would send for an untouched widget, or ``None`` for a socket."""
        if self.options.get("forceInput"):
            return None
        if "default" in self.options:
            return self.options["default"]
        if self.is_combo and self.choices:
            return self.choices[0]
        return None


@dataclass
class NodeClass:
    """What the executor needs from one node class, read once per run."""

    class_type: str
    cls: type
    inputs: dict[str, InputSpec]
    return_types: tuple
    is_output: bool
    validate_args: tuple[list[str], bool] | None  # VALIDATE_INPUTS parameter names, takes **kwargs

    @classmethod
    def read(cls, class_type: str, node_cls: type) -> "NodeClass":
        declared = node_cls.INPUT_TYPES()
        inputs = {}
        for category in ("required", "optional", "hidden"):
            for name, info in (declared.get(category) or {}).items():
                if not isinstance(info, (tuple, list)):
                    info = (info,)
                options = info[1] if len(info) > 1 and isinstance(info[1], dict) else {}
                inputs[name] = InputSpec(name, category, info[0], options)
        validate = getattr(node_cls, "VALIDATE_INPUTS", None)
        validate_args = None
        if validate is not None:
            spec = inspect.getfullargspec(validate)
            validate_args = ([a for a in spec.args if a not in ("self", "cls", "s")], spec.varkw is not None)
        return cls(class_type, node_cls, inputs, tuple(getattr(node_cls, "RETURN_TYPES", ())),
                   getattr(node_cls, "OUTPUT_NODE", False) is True, validate_args)

    def validates_itself(self, name: str) -> bool:
        return self.validate_args is not None and (name in self.validate_args[0] or self.validate_args[1])


@dataclass
class Plan:
    """A validated workflow: the nodes to run in order and each node's inputs with defaults filled in."""

    workflow: Workflow
    order: list[str]
    classes: dict[str, NodeClass]
    inputs: dict[str, dict]


@dataclass
class RunResult:
    prompt_id: str
    outputs: dict[str, dict]  # node id -> its "ui" dict, like ComfyUI's /history outputs
    executed: list[str]
    cached: list[str]
    seconds: float
    files: list[Path] = field(default_factory=list)


@dataclass
class _CacheEntry:
    signature: object
    outputs: list  # one list of values per output
    ui: dict | None


def types_compatible(received, expected) -> bool:
    """ComfyUI's ``validate_node_input`` (non-strict): equal, ``*``, or overlapping ``A,B`` unions."""
    if not received != expected:  # "not !=" keeps legacy "*" str subclasses that override __ne__ working
        return True
    if received == "*" or expected == "*":
        return True
    if isinstance(received, list) and expected == "COMBO":
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got, want = {t.strip() for t in received.split(",")}, {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def _quote_choices(choices: list) -> str:
    if not choices:
        return ("one of the available choices: the list is empty (model and input file lists come from "
                "--models-dir and --input-dir)")
    shown = ", ".join(repr(c) for c in choices[:20])
    return f"one of {shown}" if len(choices) <= 20 else f"one of the {len(choices)} choices ({shown}, ...)"


class Executor:
    """Validates and runs workflows; keeps node instances and cached outputs between :meth:`run` calls."""

    def __init__(self, registry: Mapping[str, type] | None = None, on_event: EventHandler | None = None):
        self.registry = default_registry() if registry is None else dict(registry)
        self.on_event = on_event or (lambda kind, data: None)
        self._objects: dict[tuple[str, str], object] = {}
        self._cache: dict[str, _CacheEntry] = {}

    def forget_saved_outputs(self) -> None:
        """Drop the cached results that reported UI outputs (saved files), so the next run executes those nodes
        and writes their files again even when nothing upstream changed; upstream results (loaded models) stay.
        A Ray worker (``cli/ray_queue.py``) calls it before each job: every job's files go to a new folder."""
        self._cache = {node_id: entry for node_id, entry in self._cache.items() if not entry.ui}

    # ------------------------------------------------------------------ validation
    def node_class(self, class_type: str) -> NodeClass | None:
        node_cls = self.registry.get(class_type)
        return None if node_cls is None else NodeClass.read(class_type, node_cls)

    def declared_inputs(self, class_type: str) -> list[str] | None:
        """Input names of a class (for ``--set`` checks); ``None`` for a class not in the registry."""
        spec = self.node_class(class_type)
        return None if spec is None else [n for n, i in spec.inputs.items() if i.category != "hidden"]

    def plan(self, workflow: Workflow) -> Plan:
        """Check the workflow like ComfyUI's ``validate_prompt`` and order the nodes to run; raises
        :class:`WorkflowError` listing every problem, one line each."""
        classes: dict[str, NodeClass] = {}
        for node_id, node in workflow.prompt.items():
            spec = self._class_or_error(workflow, node_id, node["class_type"])
            classes[node_id] = spec
        outputs = sorted((i for i, c in classes.items() if c.is_output), key=_natural_key)
        if not outputs:
            raise WorkflowError(f"{workflow.source} has no output node (a node class with OUTPUT_NODE = True), "
                                f"so nothing would run")
        errors: list[str] = []
        inputs: dict[str, dict] = {}
        pending = list(reversed(outputs))
        while pending:
            node_id = pending.pop()
            if node_id in inputs:
                continue
            inputs[node_id] = self._check_node(workflow, node_id, classes, errors)
            pending.extend(v[0] for v in inputs[node_id].values()
                           if is_link(v) and v[0] in workflow.prompt and v[0] not in inputs)
        if errors:
            raise WorkflowError("\n".join(dict.fromkeys(errors)))
        order = _execution_order(workflow, classes, outputs, inputs)
        return Plan(workflow, order, classes, inputs)

    def _class_or_error(self, workflow: Workflow, node_id: str, class_type: str) -> NodeClass:
        node_cls = self.registry.get(class_type)
        label = workflow.label(node_id)
        if node_cls is None:
            core = ", ".join(sorted(set(self.registry) & _core_names())) or "none"
            raise WorkflowError(f"{label}: unknown node type; headless runs support this pack's nodes and the core "
                                f"nodes {core} only; run this workflow in ComfyUI "
                                f"(python -m ltx2_nodes queue --server URL)")
        if hasattr(node_cls, "define_schema"):
            raise WorkflowError(f"{label}: V3 (comfy_api) node classes are not supported by the headless runner")
        for attribute in ("INPUT_TYPES", "RETURN_TYPES", "FUNCTION"):
            if not hasattr(node_cls, attribute):
                raise WorkflowError(f"{label}: the node class has no {attribute}; not a ComfyUI node class")
        return NodeClass.read(class_type, node_cls)

    def _check_node(self, workflow: Workflow, node_id: str, classes: dict[str, NodeClass],
                    errors: list[str]) -> dict:
        """Validated inputs of one node (constants converted, optional widget defaults added)."""
        spec = classes[node_id]
        label = workflow.label(node_id)
        given = workflow.prompt[node_id]["inputs"]
        checked: dict = {}
        received_types: dict = {}
        errors_before = len(errors)
        for name, value in given.items():
            info = spec.inputs.get(name)
            where = f"{label}, input {name!r}"
            if isinstance(value, dict) and "__value__" in value:  # ComfyUI's escape for list-valued widgets
                value = value["__value__"]
            elif isinstance(value, list):
                if not is_link(value):
                    errors.append(f"{where}: {value!r} is not a link; expected [\"<node id>\", <output index>]")
                    continue
                source, index = value[0], int(value[1])
                if source not in workflow.prompt:
                    errors.append(f"{where}: linked to node {source}, which is not in the workflow")
                    continue
                produced = classes[source].return_types
                if not 0 <= index < len(produced):
                    errors.append(f"{where}: linked to output {index} of {workflow.label(source)}, which has "
                                  f"{len(produced)} output(s) ({', '.join(map(str, produced)) or 'none'})")
                    continue
                received_types[name] = produced[index]
                if info is not None and info.options.get("lazy"):
                    errors.append(f"{where}: lazy inputs are not supported by the headless runner")
                    continue
                validate_types = spec.validate_args is not None and "input_types" in spec.validate_args[0]
                if info is not None and not validate_types and not types_compatible(produced[index], info.type):
                    errors.append(f"{where}: {workflow.label(source)} output {index} is {produced[index]}, "
                                  f"expected {info.type}")
                    continue
                checked[name] = [source, index]
                continue
            if info is None or info.category == "hidden":
                continue  # ComfyUI drops constants for inputs the class does not declare
            problem, value = _check_constant(spec, info, value)
            if problem:
                errors.append(f"{where}: {problem}")
                continue
            checked[name] = value
        for name, info in spec.inputs.items():
            if info.category == "hidden":
                if info.type == "DYNPROMPT":
                    errors.append(f"{label}: hidden input DYNPROMPT is not supported by the headless runner")
            elif name not in given:
                if info.category == "required":
                    errors.append(f"{label}: required input {name!r} is missing")
                elif info.widget_default() is not None:
                    checked[name] = info.widget_default()
        if spec.validate_args is not None and len(errors) == errors_before:
            verdict = self._custom_validation(spec, checked, received_types)
            if verdict is not True:
                errors.append(f"{label}: VALIDATE_INPUTS rejected the inputs"
                              + ("" if verdict is False else f": {verdict}"))
        return checked

    def _custom_validation(self, spec: NodeClass, checked: dict, received_types: dict):
        names, takes_kwargs = spec.validate_args
        # like ComfyUI: constants only (links are not computed yet, so they arrive as None)
        args = {k: (None if is_link(v) else v) for k, v in checked.items() if k in names or takes_kwargs}
        if "input_types" in names:
            args["input_types"] = received_types
        try:
            verdict = spec.cls.VALIDATE_INPUTS(**args)
        except Exception as exc:  # noqa: BLE001 - any failure of the node's own check is a validation error
            return f"{type(exc).__name__}: {exc}"
        return True if verdict is True else (verdict or False)

    # ------------------------------------------------------------------ execution
    def run(self, workflow: Workflow, prompt_id: str | None = None) -> RunResult:
        """Validate and execute; raises :class:`WorkflowError` before anything runs, :class:`ExecutionError`
        when a node fails, ``KeyboardInterrupt`` when interrupted."""
        import torch  # the executor is torch-agnostic, but nodes must see ComfyUI's inference mode

        plan = self.plan(workflow)
        prompt_id = prompt_id or str(uuid.uuid4())
        start = time.perf_counter()
        emit = self.on_event
        signatures = self._signatures(plan)
        for node_id in list(self._cache):
            if node_id not in workflow.prompt:
                del self._cache[node_id]
        cached = [n for n in plan.order if self._cache.get(n) and self._cache[n].signature == signatures[n]]
        emit("execution_start", {"prompt_id": prompt_id})
        emit("execution_cached", {"nodes": cached, "prompt_id": prompt_id})
        results: dict[str, list] = {}
        ui_outputs: dict[str, dict] = {}
        executed: list[str] = []

        def on_progress(node_id, value, total):
            emit("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id})

        with progress.reporting_to(on_progress), torch.inference_mode():
            for node_id in plan.order:
                entry = self._cache.get(node_id)
                if node_id not in cached:
                    emit("executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id})
                    try:
                        outputs, ui = self._execute_node(plan, node_id, results, prompt_id)
                    except KeyboardInterrupt:
                        emit("execution_interrupted", {"prompt_id": prompt_id, "node_id": node_id,
                                                       "node_type": plan.classes[node_id].class_type,
                                                       "executed": executed})
                        raise
                    except ExecutionError as exc:
                        emit("execution_error", {"prompt_id": prompt_id, "node_id": node_id,
                                                 "node_type": plan.classes[node_id].class_type,
                                                 "exception_message": str(exc), "traceback": exc.details,
                                                 "executed": executed})
                        raise
                    entry = self._cache[node_id] = _CacheEntry(signatures[node_id], outputs, ui)
                    executed.append(node_id)
                results[node_id] = entry.outputs
                if entry.ui:
                    ui_outputs[node_id] = entry.ui
                    emit("executed", {"node": node_id, "display_node": node_id, "output": entry.ui,
                                      "prompt_id": prompt_id})
        emit("execution_success", {"prompt_id": prompt_id})
        emit("executing", {"node": None, "prompt_id": prompt_id})
        return RunResult(prompt_id, ui_outputs, executed, cached, time.perf_counter() - start,
                         output_files(ui_outputs))

    def _execute_node(self, plan: Plan, node_id: str, results: dict[str, list], prompt_id: str):
        spec = plan.classes[node_id]
        label = plan.workflow.label(node_id)
        key = (node_id, spec.class_type)
        try:
            arguments = self._arguments(plan, node_id, results)
            obj = self._objects.get(key)
            if obj is None:
                obj = self._objects[key] = spec.cls()
            with progress.node_context(node_id):
                returned = _map_over_lists(obj, spec.cls.FUNCTION, arguments,
                                           getattr(spec.cls, "INPUT_IS_LIST", False))
            return _merge_returns(returned, spec, label)
        except (KeyboardInterrupt, ExecutionError):
            raise
        except RunInterrupted:
            raise KeyboardInterrupt from None
        except LTX2Error as exc:
            raise ExecutionError(f"{label}: {exc}", node_id, traceback.format_exc()) from exc
        except Exception as exc:  # a node's failure becomes one line naming the node
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise ExecutionError(f"{label} failed: {type(exc).__name__}: {first_line}", node_id,
                                 traceback.format_exc()) from exc

    def _arguments(self, plan: Plan, node_id: str, results: dict[str, list]) -> dict[str, list]:
        """Every input as a list of values (ComfyUI's list semantics), hidden inputs filled in."""
        arguments = {}
        for name, value in plan.inputs[node_id].items():
            if not is_link(value):
                arguments[name] = [value]
                continue
            produced = results[value[0]]
            if value[1] >= len(produced):
                raise ExecutionError(f"{plan.workflow.label(node_id)}, input {name!r}: "
                                     f"{plan.workflow.label(value[0])} returned no value for output {value[1]} "
                                     f"(it returned only 'ui')", node_id)
            arguments[name] = produced[value[1]]
        extra = plan.workflow.extra_data
        hidden = {"PROMPT": plan.workflow.prompt, "UNIQUE_ID": node_id,
                  "EXTRA_PNGINFO": extra.get("extra_pnginfo"),
                  "AUTH_TOKEN_COMFY_ORG": extra.get("auth_token_comfy_org"),
                  "API_KEY_COMFY_ORG": extra.get("api_key_comfy_org")}
        for name, info in plan.classes[node_id].inputs.items():
            if info.category == "hidden" and info.type in hidden:
                arguments[name] = [hidden[info.type]]
        return arguments

    def _signatures(self, plan: Plan) -> dict[str, object]:
        """Input signatures (ComfyUI's cache keys): class, IS_CHANGED, constants and the ancestors' signatures."""
        signatures: dict[str, object] = {}
        for node_id in plan.order:
            spec = plan.classes[node_id]
            parts: list = [spec.class_type, self._is_changed(plan, node_id)]
            hidden_types = [i.type for i in spec.inputs.values() if i.category == "hidden"]
            if getattr(spec.cls, "NOT_IDEMPOTENT", False) or "UNIQUE_ID" in hidden_types:
                parts.append(node_id)
            for name in sorted(plan.inputs[node_id]):
                value = plan.inputs[node_id][name]
                parts.append((name, ("link", signatures[value[0]], value[1]) if is_link(value) else value))
            signatures[node_id] = parts
        return signatures

    def _is_changed(self, plan: Plan, node_id: str):
        spec = plan.classes[node_id]
        if not hasattr(spec.cls, "IS_CHANGED"):
            return False
        constants = {k: [None if is_link(v) else v] for k, v in plan.inputs[node_id].items()}
        try:
            value = _map_over_lists(spec.cls, "IS_CHANGED", constants, getattr(spec.cls, "INPUT_IS_LIST", False))
        except Exception:  # noqa: BLE001 - ComfyUI treats a failing IS_CHANGED as "always changed"
            return object()
        if any(isinstance(v, float) and math.isnan(v) for v in value):
            return object()  # NaN means "changed every time"; a fresh object never compares equal
        return value


def _core_names() -> set[str]:
    from .core_nodes import CORE_NODE_CLASSES

    return set(CORE_NODE_CLASSES)


def _natural_key(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _check_constant(spec: NodeClass, info: InputSpec, value) -> tuple[str | None, object]:
    """Convert and range-check one constant the way ComfyUI's ``validate_inputs`` does."""
    converter = _CONVERTERS.get(info.type) if isinstance(info.type, str) else None
    if converter is not None:
        try:
            value = converter(value)
        except (TypeError, ValueError, OverflowError):
            return f"{value!r} is not a valid {info.type}", value
    if spec.validates_itself(info.name):
        return None, value
    if "min" in info.options and value < info.options["min"]:
        return f"{value!r} is below the minimum {info.options['min']}", value
    if "max" in info.options and value > info.options["max"]:
        return f"{value!r} is above the maximum {info.options['max']}", value
    if info.is_combo and value not in info.choices:
        return f"{value!r} is not {_quote_choices(info.choices)}", value
    return None, value


def _map_over_lists(obj, function: str, arguments: dict[str, list], input_is_list: bool) -> list:
    """ComfyUI's ``_async_map_node_over_list``: call once per list index (shorter lists repeat their last item),
    or once with the whole lists when the class sets ``INPUT_IS_LIST``."""
    func = getattr(obj, function)
    if inspect.iscoroutinefunction(func):
        import asyncio

        call = lambda kwargs: asyncio.run(func(**kwargs))  # noqa: E731
    else:
        call = lambda kwargs: func(**kwargs)  # noqa: E731
    if input_is_list:
        return [call(arguments)]
    count = max((len(v) for v in arguments.values()), default=0)
    if count == 0:
        return [call({})]  # ComfyUI calls without arguments when every input list is empty
    return [call({k: v[i if i < len(v) else -1] for k, v in arguments.items()}) for i in range(count)]


def _merge_returns(returned: list, spec: NodeClass, label: str) -> tuple[list, dict | None]:
    """ComfyUI's ``get_output_from_returns`` + ``merge_result_data`` for V1 return values."""
    results, uis = [], []
    for value in returned:
        if isinstance(value, dict):
            if "expand" in value:
                raise ExecutionError(f"{label}: node expansion (returning 'expand') is not supported by the "
                                     f"headless runner", "")
            if "ui" in value:
                uis.append(value["ui"])
            if "result" in value:
                results.append(value["result"])
            continue
        if value is None:
            raise ExecutionError(f"{label} returned None; a node function returns a tuple with one value per "
                                 f"RETURN_TYPES entry, or {{'ui': ..., 'result': (...)}}", "")
        results.append(value)
    count = len(spec.return_types)
    for value in results:
        if not isinstance(value, (tuple, list)) or len(value) != count:
            got = f"{len(value)} values" if isinstance(value, (tuple, list)) else type(value).__name__
            raise ExecutionError(f"{label} returned {got}; RETURN_TYPES declares {count} "
                                 f"({', '.join(map(str, spec.return_types)) or 'none'})", "")
    is_list = getattr(spec.cls, "OUTPUT_IS_LIST", None) or (False,) * count
    outputs = []
    for i in range(count if results else 0):
        if i < len(is_list) and is_list[i]:
            outputs.append([item for value in results for item in value[i]])
        else:
            outputs.append([value[i] for value in results])
    ui = {k: [item for u in uis for item in u[k]] for k in uis[0]} if uis else None
    return outputs, ui


def _execution_order(workflow: Workflow, classes: dict[str, NodeClass], outputs: list[str],
                     inputs: dict[str, dict]) -> list[str]:
    """ComfyUI's topological dissolve (``ExecutionList``): among ready nodes prefer output nodes, then nodes
    feeding an output, then nodes two links away from one, else the first pending node."""
    pending: dict[str, None] = {}
    blocked_by: dict[str, set[str]] = {}
    blocking: dict[str, set[str]] = {}
    for output in outputs:  # add_node: depth-first from each output, sources pushed in input order
        stack = [output]
        while stack:
            node_id = stack.pop()
            if node_id in pending:
                continue
            pending[node_id] = None
            blocked_by.setdefault(node_id, set())
            blocking.setdefault(node_id, set())
            for value in inputs[node_id].values():
                if is_link(value):
                    stack.append(value[0])
                    blocked_by[node_id].add(value[0])
                    blocking.setdefault(value[0], set()).add(node_id)

    def is_output(node_id):
        return classes[node_id].is_output

    def pick(ready):
        for rule in (lambda n: is_output(n),
                     lambda n: any(is_output(b) for b in blocking[n]),
                     lambda n: any(is_output(c) for b in blocking[n] for c in blocking[b])):
            for node_id in ready:
                if rule(node_id):
                    return node_id
        return ready[0]

    order = []
    while pending:
        ready = [n for n in pending if not blocked_by[n]]
        if not ready:
            raise WorkflowError(_describe_cycle(workflow, blocked_by, list(pending)))
        node_id = pick(ready)
        order.append(node_id)
        del pending[node_id]
        for later in blocking[node_id]:
            blocked_by[later].discard(node_id)
    return order


def _describe_cycle(workflow: Workflow, blocked_by: dict[str, set[str]], stuck: list[str]) -> str:
    """Walk the dependencies among the stuck nodes until one repeats: that loop is a cycle."""
    path, seen = [], {}
    node_id = stuck[0]
    while node_id not in seen:
        seen[node_id] = len(path)
        path.append(node_id)
        node_id = sorted((d for d in blocked_by[node_id] if d in stuck), key=_natural_key)[0]
    loop = path[seen[node_id]:] + [node_id]
    return "dependency cycle: " + " -> ".join(workflow.label(n) for n in reversed(loop))


def output_files(ui_outputs: dict[str, dict]) -> list[Path]:
    """Files named in UI outputs (``{"filename", "subfolder", "type"}`` entries), resolved to paths."""
    files = []
    for item in ui_file_entries(ui_outputs):
        folder = paths.directory_for(item.get("type") or "output")
        if folder is not None:
            files.append(folder / (item.get("subfolder") or "") / item["filename"])
    return files
