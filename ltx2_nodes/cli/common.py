"""Exit codes, the one validation layer of command-line values, and the options the commands share.

Every option that takes a number, a size, a device, an address or a path is read by a ``type=`` function
of this module (or checked by a function here before anything loads): a bad value becomes one
``error: argument --OPTION: <what is wrong and the fix>`` line and exit code 2, before any model loads.
The same functions read the ``$LTX2_*`` environment defaults (:func:`apply_engine_options`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import signal
import sys
import tempfile
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from urllib.parse import urlsplit

from .. import distributed, paths
from ..errors import InputError
from .workflow import UsageError


class ExitCode(IntEnum):
    """What ``python -m ltx2_nodes`` returns; scripts can rely on these."""

    OK = 0
    FAILED = 1  # a node failed while running (run), or at least one job failed (queue)
    USAGE = 2  # bad arguments, unreadable file, invalid workflow: nothing ran
    UNREACHABLE = 3  # the ComfyUI server did not answer (queue --server)
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; a queue resumes where it stopped when run again


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of exiting, so ``main`` prints the usual one
    ``error:`` line and returns exit code 2 (also when ``main`` is called in-process)."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _typed(convert, name: str):
    """An argparse ``type=`` function: ``convert(text)``; its ``InputError``/``ValueError`` message is shown."""
    def parse(text: str):
        try:
            return convert(text)
        except (InputError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def _number(text: str, kind, *, minimum=None, above=None, what: str = "a number"):
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{text!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number; give {what}")
    if (minimum is not None and value < minimum) or (above is not None and value <= above):
        raise ValueError(f"{text!r} is out of range; give {what}")
    return value


positive_int = _typed(lambda t: _number(t, int, minimum=1, what="a whole number >= 1"), "positive_int")
nonnegative_int = _typed(lambda t: _number(t, int, minimum=0, what="a whole number >= 0"), "nonnegative_int")
positive_float = _typed(lambda t: _number(t, float, above=0, what="a finite number > 0"), "positive_float")
nonnegative_float = _typed(lambda t: _number(t, float, minimum=0, what="a finite number >= 0"), "nonnegative_float")


def _unit_interval(text: str) -> float:
    value = _number(text, float, minimum=0, what="a number from 0 to 1")
    if value > 1:
        raise ValueError(f"{text!r} is out of range; give a number from 0 to 1")
    return value


unit_float = _typed(_unit_interval, "unit_float")


def _memory_size(text: str) -> str:
    from ..memory.engine import parse_size

    parse_size(text)
    return text


def _device(text: str) -> str:
    from ..memory.devices import ComputeDevice

    ComputeDevice.resolve(text)
    return text


def server_base(server: str) -> str:
    """``--server``: ``http(s)://host[:port]`` (``http://`` when no scheme is given), without a trailing slash;
    anything else raises ``UsageError`` (exit 2, nothing contacted)."""
    given = server
    if "://" not in server:
        server = "http://" + server
    parts = urlsplit(server)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or not port_ok or any(c.isspace() for c in server) \
            or not all(c.isalnum() or c in ".-_:[]" for c in host):
        raise UsageError(f"cannot use server address {given!r}; expected http://HOST:PORT, e.g. "
                         f"http://127.0.0.1:8188")
    return server.rstrip("/")


memory_size = _typed(_memory_size, "memory_size")
device_name = _typed(_device, "device_name")
server_url = _typed(server_base, "server_url")


def writable_folder(folder: str | os.PathLike, option: str) -> Path:
    """``folder`` checked writable by writing a probe file into it, or into its nearest existing parent when
    it does not exist yet (the writers create it when they write): an output folder is known to work before
    anything loads, and a refused request leaves no folder behind."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder}: is an existing file, not a folder; pass a folder (or a new .mp4 "
                         f"file name where the command writes one file)")
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing, prefix=".ltx2-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {folder}: cannot write there ({exc.strerror or exc}); pass a folder you can "
                         f"write to") from None
    return folder


def load_clip(path: Path, option: str = "--video-to-audio"):
    """The frames, sound and frame rate (``nodes.comfy_types.VideoComponents``) of the video ``option`` names,
    refused (exit 2) when missing, unreadable or empty."""
    from ..nodes.comfy_types import SavedVideo

    if not path.is_file():
        raise UsageError(f"{option} {path}: no such file; name an MP4/MOV/WebM video.")
    try:
        clip = SavedVideo(path).get_components()
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
        raise UsageError(f"{option} {path}: cannot read it as a video ({exc}); re-encode it as an H.264 "
                         "MP4.") from None
    if clip.images.shape[0] == 0:
        raise UsageError(f"{option} {path}: the file holds no video frames.")
    return clip


@contextmanager
def sigterm_interrupts():
    """``kill`` (SIGTERM) stops a command like Ctrl-C does: ``KeyboardInterrupt`` unwinds it (writers delete
    their partial files, a queue brings its manifest up to date) and ``main`` exits with 130."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_path_options(parser, *, outputs: bool = True) -> None:
    parser.add_argument("--models-dir", metavar="DIR",
                        help="folder holding checkpoints/, text_encoders/, loras/, latent_upscale_models/, ... "
                             f"(ComfyUI's models folder works; default ${paths.MODELS_DIR_ENV})")
    parser.add_argument("--input-dir", metavar="DIR",
                        help="where LoadImage/LoadAudio file names resolve (default: the working directory)")
    if outputs:
        parser.add_argument("--out", metavar="DIR", help="output folder of the save nodes (default ./output)")
    parser.add_argument("--nodes", action="append", default=[], metavar="MODULE",
                        help="also load node classes from this module's NODE_CLASS_MAPPINGS (a dotted module "
                             "name, a .py file or a package folder); repeatable")


def add_engine_options(parser) -> None:
    """Where and in how much memory models run headless (inside ComfyUI its own flags decide)."""
    parser.add_argument("--device", metavar="DEV", type=device_name,
                        help="compute device: auto (CUDA if present), cuda, cuda:1, cpu (default $LTX2_DEVICE or auto)")
    parser.add_argument("--vram-budget", metavar="SIZE", type=memory_size,
                        help="VRAM the models may occupy, e.g. 8GiB; blocks stream through the GPU beyond it "
                             "(default $LTX2_VRAM_BUDGET or auto = free memory minus a reserve)")
    parser.add_argument("--ram-budget", metavar="SIZE", type=memory_size,
                        help="RAM for pinned copies of streamed blocks; beyond it blocks are read from the "
                             "memory-mapped file (default $LTX2_RAM_BUDGET or auto)")


def apply_engine_options(args) -> None:
    """Configure the headless engine from the options; the ``$LTX2_*`` defaults of the options not given are
    checked by the same functions first, so a bad environment value is a usage error now, not a traceback
    inside the first node that needs the engine."""
    from ..memory.selection import ENGINE_ENV

    checks = {"device": _device, "vram_budget": _memory_size, "ram_budget": _memory_size}
    for key, env in ENGINE_ENV.items():
        value = os.environ.get(env)
        if getattr(args, key, None) is None and value is not None:
            try:
                checks[key](value)
            except (InputError, ValueError) as exc:
                raise UsageError(f"${env}={value!r}: {exc} (or unset {env})") from None
    settings = {key: getattr(args, key) for key in ("device", "vram_budget", "ram_budget")
                if getattr(args, key, None) is not None}
    if distributed.launched_size() > 1:  # torchrun: join the group, on the GPU of this rank
        from .launch import join_world

        settings = join_world(settings)
    if settings:
        from ..memory.selection import configure_engine

        configure_engine(**settings)


def apply_path_options(args) -> None:
    if getattr(args, "out", None) is not None:
        writable_folder(args.out, "--out")
    paths.configure(models_dir=args.models_dir, output_dir=getattr(args, "out", None), input_dir=args.input_dir)


def node_registry(args) -> dict[str, type]:
    """The default registry plus the classes of every ``--nodes`` module."""
    from .executor import default_registry

    registry = default_registry()
    for name in args.nodes:
        registry.update(_load_node_module(name))
    return registry


def _load_node_module(name: str) -> dict[str, type]:
    path = Path(name)
    try:
        if path.exists():
            init = (path / "__init__.py" if path.is_dir() else path).resolve()
            module_name = path.stem if path.is_file() else path.name
            module = sys.modules.get(module_name)
            if module is None or Path(getattr(module, "__file__", "") or "").resolve() != init:
                spec = importlib.util.spec_from_file_location(module_name, init)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any import failure of a user-named module is a usage error
        raise UsageError(f"--nodes {name}: cannot import it ({type(exc).__name__}: {exc})") from None
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if not isinstance(mappings, dict):
        raise UsageError(f"--nodes {name}: the module has no NODE_CLASS_MAPPINGS dict")
    return mappings
