"""Seeded noise that does not depend on the device or the batch size.

Every batch item has its own CPU ``torch.Generator``; item ``i`` is seeded ``seed + i`` (mod 2**64,
so any integer is a valid seed). For each item the tensors of one request are drawn in the
order given -- the sampler asks for video tokens ``[T_v, C_v]`` first, then audio tokens
``[T_a, C_a]`` -- exactly the layout and order in which the reference pipelines draw their
initial noise from a single generator. Consequences:

* the same seed gives the same latents on CPU, CUDA or MPS (noise is made on the CPU, then moved);
* item ``i`` of a batch of any size equals a batch-1 run with seed ``seed + i``;
* with batch 1 on CPU the noise equals the reference's (its CPU bf16 ``randn`` draws the same
  stream as float32 ``randn`` cast to bf16).

The generators persist across calls, so stage 2 of a two-stage run continues the stage-1 stream,
as the reference does with its one generator. Where the two stages run in separate calls (two
sampler nodes), ``record()`` captures where the stream stands as an opaque :class:`NoiseRecord`
(the generators' states, nothing about what was drawn) and ``SeededNoise.resume`` continues it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_SEED_MOD = 2 ** 64


def item_seed(seed: int, index: int, offset: int = 0) -> int:
    """Seed of batch item ``index`` (wrapped to the generator's 64-bit range)."""
    return (int(seed) + int(offset) + int(index)) % _SEED_MOD


@dataclass(frozen=True)
class NoiseRecord:
    """Where a ``SeededNoise`` stream stood: its seed and one generator state per batch item (opaque)."""

    seed: int
    states: tuple[torch.Tensor, ...]

    @property
    def batch(self) -> int:
        return len(self.states)


class SeededNoise:
    """Per-item CPU generators; ``draw`` returns ``[B, *shape]`` tensors, one per requested shape."""

    def __init__(self, seed: int, batch: int, offset: int = 0):
        self.seed = int(seed)
        self.generators = [torch.Generator(device="cpu").manual_seed(item_seed(seed, i, offset))
                           for i in range(batch)]

    @property
    def batch(self) -> int:
        return len(self.generators)

    def draw(self, *shapes: tuple[int, ...], dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """Standard normal tensors ``[B, *shape]`` for each shape, drawn item by item in the given order."""
        per_item = [[torch.randn((1, *shape), generator=g, dtype=dtype) for shape in shapes]
                    for g in self.generators]
        return [torch.cat([item[k] for item in per_item], dim=0) for k in range(len(shapes))]

    def record(self) -> NoiseRecord:
        """The stream's current position; ``resume`` continues from exactly here."""
        return NoiseRecord(self.seed, tuple(g.get_state() for g in self.generators))

    @classmethod
    def resume(cls, record: NoiseRecord | None, seed: int, batch: int) -> "SeededNoise":
        """The stream of ``seed`` for ``batch`` items: continued from ``record`` when it is that stream's
        (same seed and batch), else fresh -- another seed or batch size starts its own stream."""
        noise = cls(seed, batch)
        if isinstance(record, NoiseRecord) and record.seed == noise.seed and record.batch == batch:
            for generator, state in zip(noise.generators, record.states):
                generator.set_state(state)
        return noise
