"""``queue``: run one workflow for every line of a prompts file, on a ComfyUI server or locally, resumably.

Server mode submits every unfinished job to ``POST /prompt`` under a prompt id chosen here and written to the
manifest *before* the request, follows progress on the ``/ws`` websocket (or by polling when it is not
available) and collects each job's files from ``/history``. Killed and re-run, it looks recorded prompt ids
up in ``/history`` and ``/queue`` and re-submits only jobs the server never got or lost; jobs keep running
on the server while the command is not watching. Local mode (``--local``) runs the jobs one after another in
this process with the headless executor (models stay loaded between jobs). Either way, re-running the same
command skips finished jobs and retries failed ones.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

from .comfy_client import ComfyClient, PromptRejected, history_outcome
from .common import (ExitCode, add_engine_options, add_path_options, apply_engine_options, apply_path_options,
                     node_registry, positive_float, server_url)
from .display import Display
from .executor import Executor
from .jobs import (PROMPT_INPUT_NAMES, SEED_INPUT_NAMES, Job, build_jobs, expand_seeds, find_input, parse_seeds,
                   read_prompts_file, record_outcome, run_job)
from .manifest import Manifest
from .ray_queue import RayQueue, add_ray_options, import_ray, ray_settings
from .websocket import WebSocketError
from .workflow import Assignment, UsageError, Workflow

HELP = "queue a workflow once per line of a prompts file (ComfyUI server or --local), resumable via a manifest"
DEFAULT_SERVER = "http://127.0.0.1:8188"


def add_parser(p) -> None:
    p.add_argument("workflow", help="API-format workflow JSON (or a POST /prompt body)")
    p.add_argument("--prompts", required=True, metavar="FILE",
                   help='one job per line: prompt text, or JSON {"prompt": ..., "seed": ..., "overrides": '
                        '{"NODE.INPUT": value}}')
    target = p.add_mutually_exclusive_group()
    target.add_argument("--server", default=DEFAULT_SERVER, type=server_url,
                        help=f"ComfyUI address (default {DEFAULT_SERVER})")
    target.add_argument("--local", action="store_true", help="run the jobs here with the headless executor")
    add_ray_options(p, target)
    p.add_argument("--seeds", metavar="LIST", help="run every job once per seed, e.g. 1,2,10-12 (jobs that set "
                                                    "their own seed keep it)")
    p.add_argument("--prompt-input", metavar="NODE.INPUT",
                   help="the input that receives the prompt text (default: the one input named prompt or text "
                        "outside negative-prompt nodes)")
    p.add_argument("--seed-input", metavar="NODE.INPUT",
                   help="the input that receives the seed (default: the one input named seed or noise_seed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input for every job (see run --set); repeatable")
    p.add_argument("--manifest", metavar="PATH", help="job manifest (default: <prompts file>.manifest.jsonl)")
    p.add_argument("--poll", type=positive_float, default=1.0, metavar="SECONDS",
                   help="server mode: how often to check /queue and /history (default 1)")
    add_path_options(p)
    add_engine_options(p)


def run(args) -> int:
    executor = client = None
    if args.ray:
        import_ray()  # before any work: without Ray installed, the install hint (exit 2)
    if args.local or args.ray:
        apply_path_options(args)
        apply_engine_options(args)
        executor = Executor(node_registry(args))
    else:
        local_only = [o for o, v in (("--models-dir", args.models_dir), ("--input-dir", args.input_dir),
                                     ("--out", args.out), ("--nodes", args.nodes), ("--device", args.device),
                                     ("--vram-budget", args.vram_budget), ("--ram-budget", args.ram_budget)) if v]
        if local_only:
            raise UsageError(f"{', '.join(local_only)}: only used with --local or --ray; a ComfyUI server uses "
                             f"its own folders and nodes")
        client = ComfyClient(args.server)
    cluster = ray_settings(args)  # None without --ray (whose own options are refused then)
    jobs = _jobs(args, executor)
    if client:
        client.check()  # before the manifest is touched
    manifest_path = Path(args.manifest) if args.manifest else Path(args.prompts + ".manifest.jsonl")
    display = Display(total_jobs=len(jobs))
    with Manifest(manifest_path).locked() as manifest:  # SIGTERM: KeyboardInterrupt (cli.common)
        try:
            if cluster:
                RayQueue(args.ray, cluster, manifest, display).run(jobs)
            elif executor:
                executor.on_event = display.event
                LocalQueue(executor, manifest, display).run(jobs)
            else:
                ServerQueue(client, manifest, display, args.poll).run(jobs)
        except KeyboardInterrupt:
            unfinished = sum(1 for j in jobs if (manifest.get(j.key) or {}).get("status") != "done")
            display.note(f"interrupted: {unfinished} job(s) unfinished"
                         + ("" if executor else " (queued jobs keep running on the server)")
                         + "; run the same command again to resume")
            raise
        finally:
            display.close()
    records = [manifest.get(j.key) or {} for j in jobs]
    done = sum(r.get("status") == "done" for r in records)
    failed = [(j, r) for j, r in zip(jobs, records) if r.get("status") == "failed"]
    for record in records:
        for path in record.get("files") or []:
            print(path)
    display.note(f"{len(jobs)} job(s): {done} done, {len(failed)} failed; manifest {manifest_path}")
    for job, record in failed:
        display.note(f"job {job.number} (line {job.spec.line}) failed: {record.get('error')}")
    return ExitCode.FAILED if failed or done < len(jobs) else ExitCode.OK


def _jobs(args, executor: Executor | None) -> list[Job]:
    """The batch: prompts file x seeds, each applied to the workflow after the ``--set`` overrides."""
    declared = executor.declared_inputs if executor else None  # a server's classes are unknown here
    workflow = Workflow.load(args.workflow)
    specs = expand_seeds(read_prompts_file(args.prompts), parse_seeds(args.seeds) if args.seeds else [])
    for text in args.overrides:
        workflow.assign(Assignment.parse(text), declared)
    if executor:
        executor.plan(workflow)  # a broken workflow fails the command (exit 2), a bad job line only its job
    prompt_input = seed_input = None
    if any(s.prompt is not None for s in specs):
        prompt_input = find_input(workflow, args.prompt_input, PROMPT_INPUT_NAMES, str, "--prompt-input")
    if any(s.seed is not None for s in specs):
        seed_input = find_input(workflow, args.seed_input, SEED_INPUT_NAMES, int, "--seed-input")
    return build_jobs(workflow, specs, prompt_input, seed_input, declared)


class LocalQueue:
    def __init__(self, executor: Executor, manifest: Manifest, display: Display):
        self.executor, self.manifest, self.display = executor, manifest, display

    def run(self, jobs: list[Job]) -> None:
        self.manifest.register(jobs, "local")
        for job in jobs:
            if self.manifest.get(job.key).get("status") == "done":
                self.display.skip_job(job.number, "already done (manifest)")
                continue
            prompt_id = self.manifest.begin(job.key, "local")
            self.display.start_job(job.number, job.title, job.workflow)
            try:
                outcome = run_job(self.executor, job.workflow, prompt_id)
            except KeyboardInterrupt:
                self.manifest.update(job.key, status="queued", error="interrupted")
                raise
            record_outcome(self.manifest, self.display, job, outcome)


class ServerQueue:
    def __init__(self, client: ComfyClient, manifest: Manifest, display: Display, poll: float):
        self.client, self.manifest, self.display = client, manifest, display
        self.poll = max(poll, 0.05)
        self.active: dict[str, Job] = {}  # prompt id -> job submitted and not finished
        self.websocket = None

    def run(self, jobs: list[Job]) -> None:
        self.manifest.register(jobs, self.client.base)
        # reuse the recorded client id: ComfyUI sends a prompt's progress only to the client that queued it
        client_id = next((r["client_id"] for r in self.manifest.records.values()
                          if r.get("target") == self.client.base and r.get("client_id")), uuid.uuid4().hex)
        self._connect(client_id)
        try:
            on_server = None
            for job in jobs:
                record = self.manifest.get(job.key)
                status, prompt_id = record.get("status"), record.get("prompt_id")
                if status == "done":
                    self.display.skip_job(job.number, "already done (manifest)")
                    continue
                if status in ("queued", "running") and prompt_id and record.get("target") == self.client.base:
                    entry = self.client.history(prompt_id)
                    if entry is not None:
                        self._finish(job, prompt_id, entry)
                        continue
                    on_server = self.client.queued_ids() if on_server is None else on_server
                    if prompt_id in on_server:
                        self.active[prompt_id] = job
                        continue
                else:
                    prompt_id = None
                self._submit(job, prompt_id or str(uuid.uuid4()), client_id)
            self._watch()
        finally:
            if self.websocket is not None:
                self.websocket.close()

    def _connect(self, client_id: str) -> None:
        try:
            self.websocket = self.client.websocket(client_id)
        except OSError as exc:
            self.display.note(f"no websocket at {self.client.base} ({exc}); following progress by polling")

    def _submit(self, job: Job, prompt_id: str, client_id: str) -> None:
        """Record the prompt id first: if we die before the server answers, a re-run finds the job by it."""
        record = self.manifest.get(job.key)
        self.manifest.update(job.key, status="queued", prompt_id=prompt_id, client_id=client_id,
                             target=self.client.base, attempts=record.get("attempts", 0) + 1, files=[],
                             error=None)
        try:
            self.client.submit(job.workflow.prompt, prompt_id, client_id, job.workflow.extra_data)
        except PromptRejected as exc:
            self.manifest.update(job.key, status="failed", error=str(exc))
            self.display.finish_job(job.number, False, str(exc))
            return
        self.active[prompt_id] = job

    def _watch(self) -> None:
        next_poll = 0.0
        while self.active:
            now = time.monotonic()
            if now >= next_poll:
                self._receive(0.0)  # show what the server already said before its jobs are marked finished
                self._poll()
                next_poll = time.monotonic() + self.poll
            elif self.websocket is None:
                time.sleep(next_poll - now)
            elif self._receive(next_poll - now):
                next_poll = 0.0

    def _receive(self, timeout: float) -> bool:
        """Handle websocket messages until ``timeout`` passes without one; ``True`` when a job just ended."""
        ended = False
        while self.websocket is not None:
            try:
                message = self.websocket.recv(timeout=max(timeout, 0.001))
            except WebSocketError as exc:
                self.display.note(f"{exc}; following progress by polling")
                self.websocket = None
                break
            if message is None:
                break
            if isinstance(message, str) and self._on_message(message):
                ended = True
                break
            timeout = 0.0
        return ended

    def _poll(self) -> None:
        """Jobs no longer running or waiting on the server are finished (or were lost by a restart)."""
        on_server = self.client.queued_ids()
        for prompt_id, job in list(self.active.items()):
            if prompt_id in on_server:
                continue
            entry = self.client.history(prompt_id)
            del self.active[prompt_id]
            if entry is not None:
                self._finish(job, prompt_id, entry)
            else:
                self.display.note(f"job {job.number}: the server lost prompt {prompt_id}; submitting it again")
                record = self.manifest.get(job.key)
                self._submit(job, prompt_id, record.get("client_id") or uuid.uuid4().hex)

    def _on_message(self, text: str) -> bool:
        """Update the display from one websocket message; ``True`` when a job just ended (check history)."""
        logging.debug("websocket: %s", text[:300])
        try:
            message = json.loads(text)
            kind, data = message.get("type"), message.get("data") or {}
        except (ValueError, AttributeError):
            return False
        job = self.active.get(str(data.get("prompt_id")))
        if job is None:
            return False
        # a job may have started before we connected (resumed queue): its first message of any kind starts it
        starts = kind in ("execution_start", "progress") or (kind == "executing" and data.get("node") is not None)
        if starts and self.display.number != job.number:
            self.manifest.update(job.key, status="running")
            self.display.start_job(job.number, job.title, job.workflow)
        if kind in ("executing", "progress"):
            self.display.event(kind, data)
        return kind in ("execution_success", "execution_error", "execution_interrupted") or \
            (kind == "executing" and data.get("node") is None)

    def _finish(self, job: Job, prompt_id: str, entry: dict) -> None:
        ok, files, error = history_outcome(entry)
        self.manifest.update(job.key, status="done" if ok else "failed", prompt_id=prompt_id, files=files,
                             error=None if ok else error)
        self.display.finish_job(job.number, ok, ", ".join(files) if ok else error)

