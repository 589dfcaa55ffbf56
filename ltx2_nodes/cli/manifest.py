"""The batch queue's manifest: one JSON object per job and line, rewritten atomically on every change.

A record holds ``key`` (hash of the job's final workflow), ``line`` (its line in the prompts file), ``prompt``,
``seed``, ``status`` (``queued`` -> ``running`` -> ``done`` | ``failed``), ``prompt_id``, ``client_id`` (server
mode), ``target`` (server URL or ``local``), ``files``, ``error``, ``attempts`` and ``updated``. Each update
writes a temporary file next to the manifest, fsyncs it and renames it over the old one, so a kill at any
moment leaves either the old or the new manifest, never a torn one. Records of jobs that are no longer in
the prompts file are kept untouched.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .workflow import UsageError

class Manifest:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[str, dict] = {}

    def load(self) -> "Manifest":
        """Read the records (none when the file does not exist yet)."""
        self.records = {}
        if not self.path.exists():
            return self
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read manifest {self.path}: {exc}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                raise UsageError(f"manifest {self.path} line {number} is not a job record; fix or move the file "
                                 f"(or pass another --manifest)")
            self.records[record["key"]] = record
        return self

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def update(self, key: str, **fields) -> dict:
        """Change one job's record and write the manifest atomically."""
        record = self.records.setdefault(key, {"key": key})
        record.update(fields)
        record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.save()
        return record

    def register(self, jobs, target: str) -> None:
        """Record every job not in the manifest yet as ``queued`` for ``target``, in one write."""
        for job in jobs:
            if job.key not in self.records:
                self.records[job.key] = {"key": job.key, **job.record(), "status": "queued", "target": target,
                                         "attempts": 0, "files": [], "error": None}
        self.save()

    def begin(self, key: str, target: str) -> str:
        """Record one more attempt of a job as ``running`` on ``target``, under a new prompt id (returned)."""
        prompt_id = str(uuid.uuid4())
        self.update(key, status="running", prompt_id=prompt_id, target=target,
                    attempts=self.records.get(key, {}).get("attempts", 0) + 1, files=[], error=None)
        return prompt_id

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values())
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        fsync_directory(self.path.parent)

    @contextmanager
    def locked(self) -> Iterator["Manifest"]:
        """Hold ``<manifest>.lock`` (so two queue processes never work on one manifest) and load the records."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock; running two queues on one manifest is on the user
            yield self.load()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise UsageError(f"manifest {self.path} is in use by another queue process; wait for it or "
                                 f"pass another --manifest") from None
            try:
                yield self.load()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open directories and needs no such step."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
