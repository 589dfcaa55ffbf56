"""Batch jobs for ``queue``: reading the prompts file, seeds, and turning each job into a concrete workflow.

Prompts file: one job per non-empty line, either plain prompt text, a JSON string (for prompts with
newlines), or a JSON object ``{"prompt": "...", "seed": 7, "overrides": {"NODE.INPUT": value}}`` (every key
optional).

Which input receives the prompt text: ``--prompt-input NODE.INPUT`` when given; otherwise the one constant
string input named ``prompt`` or ``text`` on a node whose class_type and title do not contain "negative"
(if both names occur, ``prompt`` wins). Seeds go to ``--seed-input`` or the integer input named ``seed``
or ``noise_seed``. Candidates that all hold the same value are one logical input and all receive the job's
value: a two-stage workflow gives both samplers the same seed so stage 2 continues stage 1's noise stream.
Anything else ambiguous is refused with the candidates listed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .executor import ExecutionError
from .workflow import Assignment, UsageError, Workflow, WorkflowError, is_link, read_json

PROMPT_INPUT_NAMES = ("prompt", "text")
SEED_INPUT_NAMES = ("seed", "noise_seed")
_JOB_KEYS = {"prompt", "seed", "overrides"}
# The most jobs one ``queue`` command builds (prompts file lines x ``--seeds``), checked before any is built:
# a typo such as ``--seeds 0-50000000`` is refused at once instead of building fifty million workflows.
MAX_JOBS = 10_000


@dataclass(frozen=True)
class JobSpec:
    line: int
    prompt: str | None = None
    seed: int | None = None
    overrides: dict = field(default_factory=dict)


@dataclass
class Job:
    number: int
    spec: JobSpec
    workflow: Workflow
    key: str

    @property
    def title(self) -> str:
        text = self.spec.prompt if self.spec.prompt is not None else f"line {self.spec.line}"
        text = " ".join(text.split())
        text = text if len(text) <= 60 else text[:57] + "..."
        return text + (f" (seed {self.spec.seed})" if self.spec.seed is not None else "")

    def record(self) -> dict:
        """The manifest fields that describe the job itself."""
        return {"line": self.spec.line, "prompt": self.spec.prompt, "seed": self.spec.seed,
                "overrides": self.spec.overrides}


@dataclass
class JobOutcome:
    """How one job ended where it ran: its output files, or the error that failed it."""

    ok: bool
    files: list[str] = field(default_factory=list)
    error: str | None = None


def run_job(executor, workflow: Workflow, prompt_id: str) -> JobOutcome:
    """Run one job's workflow on a headless :class:`~.executor.Executor`: the one job runner of ``queue --local``
    and of a Ray worker (``cli/ray_queue.py``). A failing node or a workflow the executor refuses fails this job
    only; ``KeyboardInterrupt`` and anything unexpected propagate."""
    try:
        result = executor.run(workflow, prompt_id)
    except (ExecutionError, WorkflowError) as exc:
        return JobOutcome(False, error=str(exc))
    return JobOutcome(True, [str(p) for p in result.files])


def record_outcome(manifest, display, job: Job, outcome: JobOutcome) -> None:
    """Write a finished attempt to the manifest (``done`` with its files, or ``failed`` with its error, on one
    line) and show it."""
    if outcome.ok:
        manifest.update(job.key, status="done", files=outcome.files)
        display.finish_job(job.number, True, ", ".join(outcome.files))
    else:
        error = outcome.error or "failed"
        manifest.update(job.key, status="failed", error=error.replace("\n", "; "))
        display.finish_job(job.number, False, error.splitlines()[0])


def read_prompts_file(path: str | Path) -> list[JobSpec]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read prompts file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"prompts file {path} is not UTF-8 text") from None
    specs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line:
            specs.append(_parse_line(path, number, line))
            if len(specs) > MAX_JOBS:
                raise UsageError(f"prompts file {path} holds more than {MAX_JOBS:,} jobs (line {number}); a queue "
                                 f"runs at most {MAX_JOBS:,}. Split the file and queue each part.")
    if not specs:
        raise UsageError(f"prompts file {path} holds no prompts (one prompt or JSON job per line)")
    return specs


def _parse_line(path: Path, number: int, line: str) -> JobSpec:
    where = f"{path} line {number}"
    if line[0] not in "{\"":
        return JobSpec(number, prompt=line)
    try:
        value = read_json(line, where)
    except json.JSONDecodeError as exc:
        if line[0] == "{":
            raise UsageError(f"{where}: not valid JSON ({exc.msg}); write a plain prompt or "
                             f'{{"prompt": "...", "seed": 1, "overrides": {{"NODE.INPUT": value}}}}') from None
        return JobSpec(number, prompt=line)  # plain text that happens to start with a quote
    if isinstance(value, str):
        return JobSpec(number, prompt=value)
    unknown = set(value) - _JOB_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a job has prompt, seed, overrides")
    prompt, seed, overrides = value.get("prompt"), value.get("seed"), value.get("overrides", {})
    if prompt is not None and not isinstance(prompt, str):
        raise UsageError(f"{where}: \"prompt\" must be a string")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise UsageError(f"{where}: \"seed\" must be an integer")
    if not isinstance(overrides, dict):
        raise UsageError(f"{where}: \"overrides\" must be an object {{\"NODE.INPUT\": value}}")
    return JobSpec(number, prompt, seed, overrides)


def parse_seeds(text: str) -> list[int]:
    """``1,2,10-12`` -> ``[1, 2, 10, 11, 12]`` (seeds are non-negative, as in ComfyUI); at most ``MAX_JOBS``."""
    ranges = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise UsageError(f"--seeds {text!r}: expected non-negative integers and ranges like 1,2,10-12")
        low = int(match.group(1))
        ranges.append(range(low, int(match.group(2) or low) + 1))
    count = sum(r.stop - r.start for r in ranges)  # len() overflows past 2**63
    if count > MAX_JOBS:
        raise UsageError(f"--seeds {text!r} names {count:,} seeds; a queue runs at most {MAX_JOBS:,} jobs. Give a "
                         "shorter range (e.g. 1-100) and queue the rest in another run.")
    return [seed for r in ranges for seed in r]


def expand_seeds(specs: list[JobSpec], seeds: list[int]) -> list[JobSpec]:
    """One job per seed for every job that does not set its own seed (at most ``MAX_JOBS`` in all)."""
    if not seeds:
        return specs
    count = sum(1 if spec.seed is not None else len(seeds) for spec in specs)
    if count > MAX_JOBS:
        raise UsageError(f"{len(specs):,} prompt line(s) x {len(seeds):,} seed(s) make {count:,} jobs; a queue runs "
                         f"at most {MAX_JOBS:,}. Use fewer seeds or split the prompts file over several runs.")
    return [s for spec in specs for s in ([spec] if spec.seed is not None else
                                          [replace(spec, seed=seed) for seed in seeds])]


def find_input(workflow: Workflow, explicit: str | None, names: tuple[str, ...], kind: type,
               option: str) -> list[tuple[str, str]]:
    """``[(node id, input name), ...]`` receiving the prompt or seed (see the module docstring for the rule)."""
    if explicit:
        target = Assignment.at(explicit, None)
        node_id = workflow.resolve(target.node)
        if target.input not in workflow.prompt[node_id]["inputs"]:
            raise UsageError(f"{option} {explicit}: {workflow.label(node_id)} has no input {target.input!r} "
                             f"in {workflow.source}")
        return [(node_id, target.input)]
    candidates = []
    for node_id, node in workflow.prompt.items():
        identity = f"{node['class_type']} {workflow.title(node_id) or ''}".lower()
        if "negative" in identity:
            continue
        for name in names:
            value = node["inputs"].get(name)
            if name in node["inputs"] and not is_link(value) and isinstance(value, kind) \
                    and not isinstance(value, bool):
                candidates.append((names.index(name), node_id, name))
    if candidates:
        best = min(c[0] for c in candidates)
        candidates = [c for c in candidates if c[0] == best]
    values = {json.dumps(workflow.prompt[n]["inputs"][i]) for _, n, i in candidates}
    if len(candidates) == 1 or (candidates and len(values) == 1):
        return [(n, i) for _, n, i in candidates]
    what = "prompt" if kind is str else "seed"
    if not candidates:
        raise UsageError(f"{workflow.source}: no {what} input found (a constant input named "
                         f"{' or '.join(names)}); name it with {option} NODE.INPUT")
    listed = ", ".join(f"{n}.{i}" for _, n, i in candidates)
    raise UsageError(f"{workflow.source}: several possible {what} inputs ({listed}); choose one with "
                     f"{option} NODE.INPUT")


def build_jobs(workflow: Workflow, specs: list[JobSpec], prompt_input: list[tuple[str, str]] | None,
               seed_input: list[tuple[str, str]] | None,
               declared: Callable[[str], Iterable[str] | None] | None = None) -> list[Job]:
    """Each job's own workflow (prompt, seed and overrides applied) and its manifest key: a hash of that
    workflow, with ``-2``, ``-3``, ... for repeats of an identical job."""
    jobs, seen = [], {}
    for number, spec in enumerate(specs, 1):
        job_workflow = workflow.copy()
        for value, targets in ((spec.prompt, prompt_input), (spec.seed, seed_input)):
            if value is not None:
                for node_id, name in targets:
                    job_workflow.prompt[node_id]["inputs"][name] = value
        for target, value in spec.overrides.items():
            try:
                job_workflow.assign(Assignment.at(target, value), declared)
            except UsageError as exc:
                raise UsageError(f"prompts file line {spec.line}: {exc}") from None
        canonical = json.dumps(job_workflow.prompt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        key = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        seen[key] = seen.get(key, 0) + 1
        jobs.append(Job(number, spec, job_workflow, key if seen[key] == 1 else f"{key}-{seen[key]}"))
    return jobs
