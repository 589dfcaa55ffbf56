import assert from "node:assert/strict";
import test from "node:test";

import { describeLatent, ditActivationBytes, ditVram, formatBytes, GiB, LTX2_19B } from "../../js/lib/estimates.js";

test("activation estimate matches the figures documented in memory/estimates.py", () => {
  // "768x512x121 (Tv = 6144, Ta = 126): 0.78 GiB; 1280x704x121 (Tv = 14080): 1.73 GiB"
  assert.equal(formatBytes(ditActivationBytes(6144, 126)), "0.78 GiB");
  assert.equal(formatBytes(ditActivationBytes(14080, 126)), "1.73 GiB");
});

test("activations scale with the batch and drop the audio stream when audio is off", () => {
  const one = ditActivationBytes(6144, 126);
  assert.equal(ditActivationBytes(6144, 126, { batch: 4 }), 4 * one);
  const videoOnly = ditActivationBytes(6144, 0);
  // no audio tokens and no audio text context (1024 x (2048 + 3840) bf16 elements)
  assert.ok(videoOnly < one);
  assert.equal(one - videoOnly,
    2 * (126 * (2 * 2048 + 2048) + 1024 * (2048 + 3840)) + 126 * 1536);
  assert.ok(ditActivationBytes(6144, 126, { perTokenTimesteps: false }) < one);
});

test("VRAM: streamed = non-block weights + activations + two slots; resident = all weights + activations", () => {
  const tv = 6144, ta = 126;
  const act = ditActivationBytes(tv, ta);
  const bf16 = ditVram(tv, ta, { weights: "bf16" });
  assert.equal(bf16.activations, act);
  assert.equal(bf16.streamed, LTX2_19B.fixedBytes + act + 2 * LTX2_19B.blockBytes.bf16);
  assert.equal(bf16.resident, LTX2_19B.fixedBytes + 48 * LTX2_19B.blockBytes.bf16 + act);
  const fp8 = ditVram(tv, ta, { weights: "fp8" });
  assert.equal(fp8.activations - act, 256 * 2 ** 20); // the dequantised feed-forward weight, twice, in bf16
  assert.ok(fp8.resident < bf16.resident / 1.8);
  // the 19B: ~37.8 GB of bf16 weights, ~18.9 GB fp8 (comfyui-anchors §4.3)
  assert.ok(Math.abs((bf16.resident - act) / 1e9 - 37.75) < 0.1);
});

test("formatBytes uses the ledger's units", () => {
  assert.equal(formatBytes(GiB), "1.00 GiB");
  assert.equal(formatBytes(5 * 2 ** 20), "5.0 MiB");
  assert.equal(formatBytes(2048), "2.0 KiB");
});

test("the read-out states duration, size advice, tokens and memory in short lines", () => {
  const { lines, tooltip } = describeLatent({ width: 768, height: 512, frames: 121, fps: 24, batch_size: 1, audio: true });
  assert.deepEqual(lines, [
    "121 frames · 5.04 s @ 24 fps",
    "768×512 ×64 ✓ two-stage ready",
    "video 16×16×24 = 6144 tokens",
    "audio 126 tokens",
    "DiT activations 0.78 GiB",
    "VRAM GiB  streamed  resident",
    "  fp8       ≥ 2.39     18.94",
    "  bf16      ≥ 2.86     35.94",
    "×2 upscale: 24576 tok · act 2.99 GiB",
  ]);
  assert.match(tooltip, /streamed/);
  assert.match(tooltip, /resident/);
  assert.match(tooltip, /fp8/);
});

test("the read-out flags sizes that are not two-stage ready, batches and missing audio", () => {
  const { lines } = describeLatent({ width: 768, height: 480, frames: 97, fps: 23.976, batch_size: 2, audio: false });
  assert.equal(lines[0], "97 frames · 4.05 s @ 23.976 fps");
  assert.equal(lines[1], "768×480 ×32 ✓ (×64 for two-stage)");
  assert.equal(lines[2], "video 13×15×24 = 4680 tokens");
  assert.equal(lines[3], "audio off");
  assert.equal(lines[4], `DiT activations ${formatBytes(ditActivationBytes(4680, 0, { batch: 2 }))} (batch 2)`);
  const fp8 = ditVram(4680, 0, { weights: "fp8", batch: 2 });
  assert.equal(lines[6], `  fp8       ≥ ${(fp8.streamed / GiB).toFixed(2)}     ${(fp8.resident / GiB).toFixed(2)}`);
});

test("read-out lines stay short across the widget ranges", () => {
  for (const values of [{ width: 4096, height: 4096, frames: 1025, fps: 120, batch_size: 16, audio: true },
    { width: 64, height: 64, frames: 1, fps: 1, batch_size: 1, audio: true },
    { width: 992, height: 544, frames: 241, fps: 23.976, batch_size: 2, audio: false }]) {
    for (const line of describeLatent(values).lines) assert.ok(line.length <= 42, line);
  }
});
