"""Fake ComfyUI V1 node classes for the CLI tests (loaded with ``--nodes tests/cli_fake_nodes.py`` or directly).

Every call appends ``(class, detail)`` to ``CALLS``; with ``$FAKE_NODES_LOG`` set, saves also append a line to
that file, so a test can count side effects across processes. ``FakeSaveText`` kills its own process when it
is about to save the text in ``$FAKE_NODES_KILL_ON`` and the file ``$FAKE_NODES_KILL_MARKER`` does not exist
yet (it creates the marker first, so the resumed run gets through). ``FakeSteps`` raises ``KeyboardInterrupt``
for a text containing ``$FAKE_NODES_INTERRUPT_ON`` and sends its process SIGTERM for ``$FAKE_NODES_SIGTERM_ON``.
"""

from __future__ import annotations

import os
import signal
import time

from ltx2_nodes import paths, progress

CALLS: list[tuple[str, object]] = []


class FakeConstant:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 3, "min": 0, "max": 100})},
                "optional": {"scale": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 10.0, "step": 0.5})}}

    RETURN_TYPES = ("NUMBER",)
    FUNCTION = "make"

    def make(self, value, scale=1.0):
        CALLS.append(("FakeConstant", (value, scale)))
        return (value * scale,)


class FakeAdd:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("NUMBER",), "b": ("NUMBER",)}}

    RETURN_TYPES = ("NUMBER",)
    FUNCTION = "add"

    def add(self, a, b):
        CALLS.append(("FakeAdd", (a, b)))
        return (a + b,)


class FakeText:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True, "default": ""}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 32})},
                "optional": {"mode": (["keep", "upper", "lower"],)}}

    RETURN_TYPES = ("TEXT",)
    FUNCTION = "make"

    def make(self, text, seed, mode="keep"):
        CALLS.append(("FakeText", (text, seed, mode)))
        text = {"upper": text.upper(), "lower": text.lower()}.get(mode, text)
        return (f"{text}#{seed}",)


class FakeSteps:
    """Reports ``steps`` progress updates through ltx2_nodes.progress."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("TEXT",), "steps": ("INT", {"default": 4, "min": 1, "max": 1000})},
                "optional": {"delay": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0})}}

    RETURN_TYPES = ("TEXT",)
    FUNCTION = "run"

    def run(self, text, steps, delay=0.0):
        CALLS.append(("FakeSteps", (text, steps)))
        if os.environ.get("FAKE_NODES_INTERRUPT_ON") and os.environ["FAKE_NODES_INTERRUPT_ON"] in text:
            raise KeyboardInterrupt
        if os.environ.get("FAKE_NODES_SIGTERM_ON") and os.environ["FAKE_NODES_SIGTERM_ON"] in text:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would, while this node runs
            time.sleep(5)  # the handler interrupts the sleep
        bar = progress.ProgressBar(steps)
        for _ in range(steps):
            time.sleep(delay)
            bar.update(1)
        return (text,)


class FakeSaveText:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("TEXT",), "filename_prefix": ("STRING", {"default": "fake/out"})},
                "optional": {"number": ("NUMBER",)},
                "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    def save(self, text, filename_prefix, number=None, prompt=None, unique_id=None, extra_pnginfo=None):
        CALLS.append(("FakeSaveText", {"text": text, "number": number, "unique_id": unique_id,
                                       "prompt_nodes": sorted(prompt), "extra_pnginfo": extra_pnginfo}))
        kill_on, marker = os.environ.get("FAKE_NODES_KILL_ON"), os.environ.get("FAKE_NODES_KILL_MARKER")
        if kill_on and kill_on in text and marker and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        if "fail" in text:
            raise ValueError(f"cannot save {text!r}\nsecond line")
        out = paths.next_output_file(filename_prefix, "txt")
        out.path.write_text(text if number is None else f"{text} {number}")
        if os.environ.get("FAKE_NODES_LOG"):
            with open(os.environ["FAKE_NODES_LOG"], "a") as log:
                log.write(f"saved {text}\n")
        return {"ui": {"texts": [out.ui_entry()]}}


class FakeListSource:
    OUTPUT_IS_LIST = (True,)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 1, "max": 10})}}

    RETURN_TYPES = ("NUMBER",)
    FUNCTION = "make"

    def make(self, count):
        return (list(range(count)),)


class FakeListSum:
    INPUT_IS_LIST = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"numbers": ("NUMBER",)}}

    RETURN_TYPES = ("NUMBER",)
    FUNCTION = "total"

    def total(self, numbers):
        CALLS.append(("FakeListSum", list(numbers)))
        return (sum(numbers),)


class FakeCollect:
    """Output node that returns both ``ui`` and ``result``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"number": ("NUMBER",)}}

    RETURN_TYPES = ("NUMBER",)
    OUTPUT_NODE = True
    FUNCTION = "collect"

    def collect(self, number):
        CALLS.append(("FakeCollect", number))
        return {"ui": {"numbers": [number]}, "result": (number,)}


class FakeChecked:
    """VALIDATE_INPUTS takes ``path``, so the executor must skip its own combo/range checks for it."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": (["a.txt", "b.txt"],), "value": ("NUMBER",)}}

    RETURN_TYPES = ("NUMBER",)
    FUNCTION = "run"

    @classmethod
    def VALIDATE_INPUTS(cls, path):
        return True if path.endswith(".txt") else f"{path} is not a .txt file"

    def run(self, path, value):
        return (value,)


class FakeVolatile:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1})}}

    RETURN_TYPES = ("NUMBER",)
    FUNCTION = "make"

    @classmethod
    def IS_CHANGED(cls, value):
        return float("nan")

    def make(self, value):
        CALLS.append(("FakeVolatile", value))
        return (value,)


class FakeBadReturn:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"number": ("NUMBER",)}}

    RETURN_TYPES = ("NUMBER", "NUMBER")
    FUNCTION = "run"

    def run(self, number):
        return (number,)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (
    FakeConstant, FakeAdd, FakeText, FakeSteps, FakeSaveText, FakeListSource, FakeListSum, FakeCollect,
    FakeChecked, FakeVolatile, FakeBadReturn)}
