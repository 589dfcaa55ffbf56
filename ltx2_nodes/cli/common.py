"""Exit codes and the options every workflow-running command shares (``run``, ``queue``, later ``generate``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from enum import IntEnum
from pathlib import Path

from .. import paths
from .workflow import UsageError


class ExitCode(IntEnum):
    """What ``python -m ltx2_nodes`` returns; scripts can rely on these."""

    OK = 0
    FAILED = 1  # a node failed while running (run), or at least one job failed (queue)
    USAGE = 2  # bad arguments, unreadable file, invalid workflow: nothing ran
    UNREACHABLE = 3  # the ComfyUI server did not answer (queue --server)
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; a queue resumes where it stopped when run again


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
    parser.add_argument("--device", metavar="DEV", help="compute device: auto (CUDA if present), cuda, cuda:1, cpu "
                                                        "(default $LTX2_DEVICE or auto)")
    parser.add_argument("--vram-budget", metavar="SIZE", help="VRAM the models may occupy, e.g. 8GiB; blocks stream "
                                                             "through the GPU beyond it (default $LTX2_VRAM_BUDGET "
                                                             "or auto = free memory minus a reserve)")
    parser.add_argument("--ram-budget", metavar="SIZE", help="RAM for pinned copies of streamed blocks; beyond it "
                                                            "blocks are read from the memory-mapped file "
                                                            "(default $LTX2_RAM_BUDGET or auto)")


def apply_engine_options(args) -> None:
    settings = {key: getattr(args, key) for key in ("device", "vram_budget", "ram_budget")
                if getattr(args, key, None) is not None}
    if settings:
        from ..memory.selection import configure_engine

        configure_engine(**settings)


def apply_path_options(args) -> None:
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
