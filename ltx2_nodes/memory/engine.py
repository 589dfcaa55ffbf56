"""The memory engine: one object that decides where each stage's weights live while it runs.

    engine = MemoryEngine("cuda", vram_budget="auto")          # or "8GiB", or bytes
    with engine.stage("dit", transformer, blocks=transformer.transformer_blocks,
                      profile=dit_profile(transformer.config, tv, ta, batch=2)) as st:
        for sigma in sigmas:
            ...transformer(video, audio)...                        # inputs on st.device

On entry everything of other stages leaves the device; the stage is then either **resident**
(whole model copied in, when weights + activation reserve fit the budget) or **streamed**
(non-block weights resident, blocks rotating through slots, some kept resident, as
``planner.plan_streaming`` decides); a model that does not fit either way is refused with an
``OutOfMemoryError`` that says what would. On exit (normal, error or interrupt) nothing of the
stage stays on the device, except a resident stage with ``keep_loaded``, which stays parked until
another stage needs the room or ``release()``. A ``torch.OutOfMemoryError`` inside the stage is
re-raised as our ``OutOfMemoryError`` with advice, after the device was cleared.

``device="cpu"``: weights stay where they are (placement is bookkeeping, no budget).
``device="cpu", virtual=True``: host memory plays a separate device with a numeric budget; every
copy, slot and rotation really happens, so tests exercise all paths except the CUDA stream.
"""

from __future__ import annotations

import logging
import math
import re
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError, OutOfMemoryError
from ..model.transformer import TransformerConfig
from ..progress import check_interrupted
from .devices import GiB, MiB, ComputeDevice, copy_queue_for, host_ram_available
from .estimates import GEMMA3_12B, DecoderShape, fp8_upcast_bytes
from .host import BlockLayout, PackedHost, StagedHost, packed_bytes, packed_total
from .ledger import DeviceLedger, gib
from .placement import PlacedTensors, module_tensors, tensor_bytes
from .precheck import RunEstimate, RunRequest, StageWeights, precheck
from .planner import DeviceSpeed, StageProfile, StreamPlan, measure_speed, plan_streaming
from .streaming import BlockStreamer, StreamStats

log = logging.getLogger("ltx2_nodes")

DEFAULT_RESERVE = 512 * MiB  # left free on the device for the driver, other programs, fragmentation
DEFAULT_RAM_RESERVE = 4 * GiB  # left free in RAM when deciding whether streamed blocks may be packed
FIT_ADVICE = ("Lower the resolution or the number of frames, use fp8 weights (half the bytes per block), or give "
              "the run more VRAM (close other GPU programs, raise the budget).")

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def parse_size(value: int | float | str | None) -> int | None:
    """Bytes from ``8GiB`` / ``8GB`` / ``8g`` / ``512MiB`` / an int; ``auto`` or None -> None (binary units).
    Anything else (negative, not finite, unknown unit) raises ``InputError`` saying how to write a size."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise InputError(f"memory size must be a finite number of bytes >= 0, got {value}")
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        negative = str(value).strip().startswith("-")
        raise InputError(f"cannot read memory size {value!r}" + (" (sizes cannot be negative)" if negative else "")
                         + "; write e.g. '8GiB', '12GB', '512MiB' or 'auto'")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()[:1]])


@dataclass
class StageHandle:
    """What a running stage got: where to put inputs, how its weights are placed."""

    name: str
    device: torch.device
    mode: str  # "resident" | "streamed" | "host" (plain CPU: nothing moves)
    budget: int | None
    plan: StreamPlan | None = None
    host: str | None = None  # "packed" | "staged" for streamed stages
    stats: StreamStats | None = None


class _Active:
    def __init__(self, handle: StageHandle, model: nn.Module):
        self.handle = handle
        self.model = model
        self.activation_owner: str | None = None
        self.activation_bytes = 0
        self.placed: PlacedTensors | None = None
        self.streamer: BlockStreamer | None = None
        self.host: PackedHost | StagedHost | None = None
        self.hooks: list = []


def _check_interrupted(stage: str) -> None:
    """The cancellation check point (``progress.check_interrupted``) at stage entry and between blocks;
    what it raises leaves through ``MemoryEngine.stage``'s cleanup, so the message can promise it."""
    check_interrupted(f"during the {stage} stage; nothing was left on the compute device")


class MemoryEngine:
    def __init__(self, device: str | torch.device = "auto", *, vram_budget: int | str | None = "auto",
                 ram_budget: int | str | None = "auto", reserve: int = DEFAULT_RESERVE,
                 ram_reserve: int = DEFAULT_RAM_RESERVE, virtual: bool = False, keep_loaded: bool = False,
                 minimal: bool = False, pin_memory: bool = True, host_mode: str = "auto",
                 make_room: Callable[[int], None] | None = None,
                 speed: DeviceSpeed | None = None):
        """
        vram_budget: bytes the engine may occupy on the device ("auto": free memory minus ``reserve``).
        ram_budget: bytes of RAM streamed blocks may be packed (pinned) into, all models together ("auto":
            available RAM minus ``ram_reserve``); beyond it blocks are read in place (memory-mapped) through
            two staging buffers. Packed memory lives as long as its model.
        keep_loaded: a resident stage stays on the device after it ends, until the room is needed.
        minimal: stream every block-streamed stage with two slots and nothing resident (``--novram``).
        host_mode: "auto" | "packed" | "staged" for streamed blocks.
        make_room: called with the bytes a stage would like before the budget is measured
            (ComfyUI: evict its own models).
        speed: compute and copy speed for the streaming planner (measured on first need if None).
        """
        self.device = ComputeDevice.resolve(device, virtual)
        self.vram_budget = parse_size(vram_budget)
        self.ram_budget = parse_size(ram_budget)
        if self.device.virtual and self.vram_budget is None:
            raise ValueError("a virtual device has no free memory to measure; give vram_budget in bytes")
        if host_mode not in ("auto", "packed", "staged"):
            raise ValueError(f"host_mode must be 'auto', 'packed' or 'staged', got {host_mode!r}")
        self.reserve = reserve
        self.ram_reserve = ram_reserve
        self.keep_loaded = keep_loaded
        self.minimal = minimal
        self.pin_memory = pin_memory
        self.host_mode = host_mode
        self.make_room = make_room
        self.speed = speed
        self.ledger = DeviceLedger()
        self.copies = copy_queue_for(self.device)
        self._parked: dict[nn.Module, PlacedTensors] = {}
        self._current: str | None = None  # the stage running now

    # -- public ----------------------------------------------------------------------------------

    @contextmanager
    def stage(self, name: str, model: nn.Module, *, blocks: nn.ModuleList | None = None,
              profile: StageProfile | None = None, keep_on_host: Sequence[nn.Module] = (),
              release_pages: Callable[[torch.Tensor], None] | None = None) -> Iterator[StageHandle]:
        """Run ``model`` on the compute device for the duration of the ``with`` block (see module doc).

        ``blocks``: the model's repeated blocks, streamed when the whole model does not fit;
        ``profile``: activation reserve and per-block FLOPs (``dit_profile``, ``decoder_profile``);
        ``keep_on_host``: submodules the model uses where they are (e.g. Gemma's 2 GB embedding table,
        looked up on the CPU), never placed;
        ``release_pages``: the loader's ``release_pages`` (``LTX2Checkpoint``, Gemma files), called on a
        block's memory-mapped tensors after they were read, so streaming from the file keeps RSS flat.
        """
        active = None
        try:
            active = self._enter(name, model, blocks, profile or StageProfile(), list(keep_on_host), release_pages)
            yield active.handle
        except torch.OutOfMemoryError as err:
            detail = str(err).split("\n")[0]
            state = self.ledger.describe()
            traceback.clear_frames(err.__traceback__)  # drop references to activations held by the failed frames
            del err
            self._leave(active, park=False)
            raise OutOfMemoryError(self._oom_message(name, state, detail)) from None
        except BaseException:
            self._leave(active, park=False)
            raise
        else:
            self._leave(active, park=True)


    def worker_settings(self) -> dict:
        """The keyword arguments of this engine's twin in a sampler worker process (``worker_pool``), which adds
        its own device (its rank's GPU). Budgets, reserves and streaming options carry over; ``keep_loaded`` does
        not: a worker's stage leaves its GPU when it ends, so the nodes after the sampler find the room they would
        have had. ``make_room`` (ComfyUI's eviction) and the measured speed stay in this process."""
        return dict(vram_budget=self.vram_budget, ram_budget=self.ram_budget, reserve=self.reserve,
                    ram_reserve=self.ram_reserve, minimal=self.minimal, pin_memory=self.pin_memory,
                    host_mode=self.host_mode)

    def release(self) -> None:
        """Evict every parked model (``keep_loaded``) and give cached device memory back."""
        if self._parked:
            for placed in self._parked.values():
                placed.restore()
            self._parked.clear()
            self.device.empty_cache()

    def budget(self) -> int | None:
        """The device budget now: the user's number, capped by what is free (None: unlimited host device)."""
        if not self.device.separate:
            return None
        if self.device.virtual:
            return self.vram_budget
        available = max(0, self.device.free_bytes() + self.ledger.used - self.reserve)
        if self.vram_budget is not None and self.vram_budget > available:
            log.info("VRAM budget %s capped to the %s actually free", gib(self.vram_budget), gib(available))
        return available if self.vram_budget is None else min(self.vram_budget, available)

    def precheck(self, weights: Mapping[str, StageWeights], request: RunRequest, *,
                 dit_config: TransformerConfig | None = None, text_shape: DecoderShape = GEMMA3_12B,
                 what: str = "", decoder_config=None) -> RunEstimate:
        """``precheck.precheck`` with this engine's budgets: raises ``OutOfMemoryError`` saying what would fit
        (``what``: the part checked, for the message; ``decoder_config``: the loaded video decoder's, see
        ``precheck.estimate_run``).

        VRAM: the user's budget, else what the device could give (its total minus the reserve when a
        memory manager frees other models on request, as in ComfyUI; else what is free now). RAM:
        available memory minus ``ram_reserve``. On a plain CPU device everything lives in RAM.
        """
        ram = host_ram_available() - self.ram_reserve
        if not self.device.separate:
            vram = ram
        elif self.vram_budget is not None:
            vram = self.vram_budget
        elif self.make_room is not None:
            vram = self.device.total_bytes() - self.reserve
        else:
            vram = self.budget()
        return precheck(weights, request, vram_budget=vram, ram_budget=ram, dit_config=dit_config,
                        text_shape=text_shape, minimal=self.minimal, what=what, decoder_config=decoder_config)

    @property
    def parked_bytes(self) -> int:
        """Device bytes of models kept loaded after their stage (``keep_loaded``)."""
        return sum(placed.nbytes for placed in self._parked.values())

    @property
    def device_bytes(self) -> int:
        """Bytes this engine holds on the compute device now (weights, slots, activation reserve)."""
        return self.ledger.used

    # -- entering a stage ------------------------------------------------------------------------

    def _enter(self, name: str, model: nn.Module, blocks: nn.ModuleList | None, profile: StageProfile,
               keep_on_host: list[nn.Module], release_pages) -> _Active:
        if self._current is not None:
            raise RuntimeError(f"stage {name!r} entered while stage {self._current!r} runs; stages run one at a time")
        _check_interrupted(name)
        parked = self._parked.pop(model, None)
        self.release()
        nonblock = module_tensors(model, skip=keep_on_host + ([blocks] if blocks is not None else []))
        # a block's size in a slot (aligned tensors), an upper bound of its resident size too
        block_bytes = [BlockLayout(b).nbytes for b in blocks] if blocks is not None else []
        model_bytes = tensor_bytes(nonblock) + sum(block_bytes)
        act = profile.activation_bytes + fp8_upcast_bytes(model)
        if self.make_room is not None and self.device.separate:
            self.make_room(model_bytes + act - (parked.nbytes if parked else 0))
        budget = self.budget()
        self.ledger.budget = budget
        active = _Active(StageHandle(name, self.device.device, "host", budget), model)
        try:
            active.activation_owner = f"{name}:activations"
            if act:
                self.ledger.charge(active.activation_owner, act, FIT_ADVICE)
                active.activation_bytes = act
            if parked is not None and parked.intact():
                active.placed, active.handle.mode = parked, "resident"
                self._check_between(active, blocks)
                return active
            if parked is not None:
                parked.restore()
            fits = budget is None or model_bytes + act <= budget
            if not self.device.separate or (fits and not (self.minimal and block_bytes)):
                active.handle.mode = "resident" if self.device.separate else "host"
                active.placed = PlacedTensors(name, module_tensors(model, skip=keep_on_host), self.device,
                                              self.ledger)
                active.placed.place(FIT_ADVICE)
                self._check_between(active, blocks)
            elif block_bytes:
                self._stream(active, blocks, nonblock, block_bytes, profile, budget, release_pages)
            else:
                raise OutOfMemoryError(
                    f"The {name} stage does not fit the {gib(budget)} VRAM budget: it needs {gib(model_bytes)} of "
                    f"weights plus {gib(act)} of activations and cannot be streamed block by block. {FIT_ADVICE}")
        except BaseException:
            self._leave(active, park=False)
            raise
        self._current = name
        return active

    def _check_between(self, active: _Active, blocks: nn.ModuleList | None) -> None:
        """A resident model with blocks still honours interrupts between them."""
        name = active.handle.name
        for block in blocks if blocks is not None else ():
            active.hooks.append(block.register_forward_pre_hook(lambda *_: _check_interrupted(name)))

    def _stream(self, active: _Active, blocks: nn.ModuleList, nonblock: list[torch.Tensor], block_bytes: list[int],
                profile: StageProfile, budget: int, release_pages) -> None:
        name = active.handle.name
        room = budget - active.activation_bytes - tensor_bytes(nonblock)
        compute_s = None
        if profile.block_flops and not self.minimal:
            self.speed = self.speed or measure_speed(self.device)
            compute_s = profile.block_seconds(len(blocks), self.speed.flops_per_s)
        plan = plan_streaming(block_bytes, room, compute_s=compute_s, minimal=self.minimal,
                              copy_bytes_per_s=self.speed.copy_bytes_per_s if self.speed else None)
        if plan is None:
            need = tensor_bytes(nonblock) + active.activation_bytes + 2 * max(block_bytes)
            raise OutOfMemoryError(
                f"The {name} stage does not fit the {gib(budget)} VRAM budget even when streamed: it needs at least "
                f"{gib(need)} ({gib(tensor_bytes(nonblock))} of non-block weights, {gib(active.activation_bytes)} of "
                f"activations, two block slots of {gib(max(block_bytes))}). {FIT_ADVICE}")
        active.placed = PlacedTensors(f"{name}:resident", nonblock, self.device, self.ledger)
        active.placed.place(FIT_ADVICE)
        streamed = {i: blocks[i] for i in range(len(blocks)) if i not in plan.resident}
        host_mode = self.host_mode
        if host_mode == "auto":
            unpacked = sum(block_bytes[i] for i, b in streamed.items() if not packed_bytes(b))
            host_mode = "packed" if unpacked <= self._ram_room() else "staged"
        pinned = self.device.is_cuda and self.pin_memory
        host_cls = PackedHost if host_mode == "packed" else StagedHost
        active.host = host_cls(streamed, self.copies, pinned, release_pages)
        active.streamer = BlockStreamer(blocks, self.device, self.ledger, self.copies, active.host, plan, owner=name,
                                        between_blocks=lambda: _check_interrupted(name)).attach(FIT_ADVICE)
        active.handle.mode, active.handle.plan, active.handle.host = "streamed", plan, host_mode
        active.handle.stats = active.streamer.stats
        log.info("%s: streaming %d of %d blocks through %d slots (%s host), %d resident", name,
                 len(streamed), len(blocks), plan.slots, host_mode, len(plan.resident))

    def _ram_room(self) -> int:
        if self.ram_budget is not None:
            return self.ram_budget - packed_total()
        return host_ram_available() - self.ram_reserve

    # -- leaving a stage -------------------------------------------------------------------------

    def _leave(self, active: _Active | None, park: bool) -> None:
        if active is None:
            return
        self._current = None
        for hook in active.hooks:
            hook.remove()
        active.hooks.clear()
        if active.streamer is not None:
            active.streamer.detach()
            active.streamer = None
        if active.host is not None:
            active.host.close()
            active.host = None
        if active.activation_bytes:
            self.ledger.credit(active.activation_owner, active.activation_bytes)
            active.activation_bytes = 0
        if active.placed is not None:
            if park and self.keep_loaded and active.handle.mode == "resident":
                self._parked[active.model] = active.placed
            else:
                active.placed.restore()
                self.device.empty_cache()
            active.placed = None

    def _oom_message(self, name: str, state: str, detail: str) -> str:
        return (f"Out of memory on {self.device.describe()} during the {name} stage ({detail}). The engine held "
                f"{state} within a {gib(self.ledger.budget or 0)} budget. {FIT_ADVICE} If other programs use the "
                "GPU, a smaller VRAM budget makes more of the model stream. Nothing from this run was left on the "
                "device.")
