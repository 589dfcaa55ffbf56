"""Errors the pack raises on bad input.

Every message says what was found, what was expected and how to fix it, so a ComfyUI user
sees something actionable in the node's red box instead of a stack trace from deep inside
PyTorch.
"""


class LTX2Error(Exception):
    """Base class for all errors raised deliberately by ltx2_nodes."""


class CheckpointError(LTX2Error):
    """A model file is missing, unreadable, truncated, foreign or does not match its config."""


class UnsupportedModelError(CheckpointError):
    """The file is a recognised model family or version that this pack does not run."""


class InputError(LTX2Error, ValueError):
    """A user-supplied value (size, frame count, prompt, media file, ...) is not acceptable."""


class ModelNotFoundError(LTX2Error, FileNotFoundError):
    """A model file or folder named by the user does not exist where it was looked for."""


class OutOfMemoryError(LTX2Error, MemoryError):
    """A run would not fit (or did not fit) in the device or host memory budget."""


class RunInterrupted(LTX2Error):
    """The user cancelled a run; nothing was left on the compute device."""


class OutputWriteError(LTX2Error, OSError):
    """An output file could not be written (folder not writable, disk full); nothing partial is left behind."""

    exit_code = 1  # the run failed (the CLI's ExitCode.FAILED), not its arguments


class NonFiniteError(LTX2Error):
    """A stage produced NaN or Inf values (corrupt weights, an overflowing dtype); the message names the stage
    and the model file, and nothing was written. A run that fails this way did run: exit code 1."""

    exit_code = 1


class RankFailedError(LTX2Error):
    """Another process of a multi-process (torchrun) run failed or stopped answering: this one stopped as well,
    and nothing was written. The failing process printed its own error."""

    exit_code = 1
