// DiT memory estimate for the empty-latent read-out: a port of the DiT part of
// ltx2_nodes/memory/estimates.py (dit_activation_bytes) and of the "dit" stage of
// ltx2_nodes/memory/precheck.py (estimate_run: least = streamed with two block slots, full = resident).
// tests/test_js.py checks that both sides give identical byte counts.

import { audioTokens, secondsForFrames, TWO_STAGE_MULTIPLE, videoLatentGrid, videoTokens } from "./shape.js";

/**
 * The released LTX-2 19B DiT: widths from TransformerConfig's defaults; weight bytes as the memory
 * engine lays them out (memory.precheck.module_weights of the meta-built model, bf16; "fp8" = block
 * Linear weights as float8 + a float32 scale each, everything outside the blocks stays bf16).
 */
export const LTX2_19B = Object.freeze({
  videoWidth: 4096, // inner_dim = 32 heads x 128
  audioWidth: 2048, // audio_inner_dim = 32 heads x 64
  crossModalWidth: 2048, // audio_cross_attention_dim (a2v/v2a rotary width)
  captionChannels: 3840,
  textTokens: 1024, // padded Gemma length
  blocks: 48,
  fixedBytes: 689185280, // outside the 48 blocks (patchify, AdaLN, caption projections, ...)
  blockBytes: Object.freeze({ bf16: 772149248, fp8: 386280448 }),
  largestLinear: 16384 * 4096, // feed-forward weight: the fp8 dequantisation transient's size
});

const DIT_TRANSIENT_UNITS = 10; // FF input, modulated input, 2 x 4D of GELU in/out
const ADALN_GATHER_UNITS = 3; // per-token shift/scale/gate rows (sigma varies per token)
const TEXT_KV_UNITS = 2; // keys and values of the text context (LTX-2; LTX-2.3 adds its prompt modulation)
const IO_BYTES_PER_TOKEN = 3 * 128 * 4; // float32 latent, velocity, denoised
const BF16_BYTES = 2;
export const GiB = 2 ** 30;
const MiB = 2 ** 20;

/**
 * Peak activation bytes of one DiT forward (estimates.dit_activation_bytes):
 *   persistent = s*B*[Tv*(2D+Dx) + Ta*(2Da+Dx) + L*(D*[Tv>0] + Da*[Ta>0] + C*streams)]
 *   transient  = s*B*[max(Tv*D, Ta*Da) * (10 + 3 per-token sigma) + L*max(D*[Tv>0], Da*[Ta>0]) * 2]
 *   io         = B*(Tv+Ta)*1536
 */
export function ditActivationBytes(videoTok, audioTok, { batch = 1, bytesPerElement = BF16_BYTES,
  perTokenTimesteps = true, model = LTX2_19B } = {}) {
  const s = bytesPerElement;
  const b = batch;
  const { videoWidth: d, audioWidth: da, crossModalWidth: dx } = model;
  const streams = (videoTok > 0) + (audioTok > 0);
  const text = model.textTokens * (d * (videoTok > 0) + da * (audioTok > 0) + model.captionChannels * streams);
  const persistent = s * b * (videoTok * (2 * d + dx) + audioTok * (2 * da + dx) + text);
  const units = DIT_TRANSIENT_UNITS + (perTokenTimesteps ? ADALN_GATHER_UNITS : 0);
  const widest = Math.max(videoTok > 0 ? d : 0, audioTok > 0 ? da : 0);
  const transient = s * b * (Math.max(videoTok * d, audioTok * da) * units + model.textTokens * widest * TEXT_KV_UNITS);
  return persistent + transient + b * (videoTok + audioTok) * IO_BYTES_PER_TOKEN;
}

/**
 * VRAM of the DiT stage (precheck.estimate_run): activations (+ the fp8 dequantisation transient,
 * 2 x the largest Linear in bf16), then
 *   streamed = non-block weights + activations + two block slots (the least the engine can run in),
 *   resident = all weights + activations.
 */
export function ditVram(videoTok, audioTok, { weights = "fp8", batch = 1, model = LTX2_19B } = {}) {
  const upcast = weights === "fp8" ? 2 * model.largestLinear * BF16_BYTES : 0;
  const activations = ditActivationBytes(videoTok, audioTok, { batch, model }) + upcast;
  const block = model.blockBytes[weights];
  const resident = model.fixedBytes + model.blocks * block + activations;
  const streamed = Math.min(model.fixedBytes + activations + 2 * block, resident);
  return { activations, streamed, resident };
}

/** Same format as ltx2_nodes.memory.ledger.gib. */
export function formatBytes(bytes) {
  if (Math.abs(bytes) >= GiB / 10) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (Math.abs(bytes) >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

export const LATENT_TOOLTIP = [
  "Tokens: video = ((frames-1)/8+1) x (height/32) x (width/32); audio = round(25 x frames / fps).",
  "DiT activations: peak of one forward in bf16 at batch = batch_size, sigma per token (the memory",
  "engine's estimate, within 1.0-1.35x of measured). Multiply by the guidance passes (up to 4 with dev",
  "guidance) when the sampler's guidance_passes is 'batched'; 'sequential' needs the figure shown.",
  "VRAM fp8: an -fp8 checkpoint or 'cast bf16 to fp8' (block Linears 1 byte/weight, the rest bf16; adds",
  "the 256 MiB dequantisation transient). VRAM bf16: bf16 weights.",
  "'streamed' = the least the memory engine runs in: weights outside the blocks + activations + two",
  "block slots, the other blocks streamed from RAM each step (slower). 'resident' = every weight on",
  "the GPU. Not included: the CUDA context, the engine's 0.5 GiB reserve, and the text encoder and",
  "VAEs (they run at other times).",
].join("\n");

/**
 * The empty-latent read-out for {width, height, frames, fps, batch_size, audio}: short lines (about
 * 40 characters at most; the extension widens the node to the longest).
 */
export function describeLatent({ width, height, frames, fps, batch_size: batch = 1, audio = true }) {
  const [f, h, w] = videoLatentGrid(width, height, frames);
  const tv = videoTokens(width, height, frames);
  const ta = audio ? audioTokens(frames, fps) : 0;
  const duration = secondsForFrames(frames, fps).toFixed(2);
  const twoStage = width % TWO_STAGE_MULTIPLE === 0 && height % TWO_STAGE_MULTIPLE === 0;
  const gib = (bytes) => (bytes / GiB).toFixed(2);
  const vram = (weights) => {
    const { streamed, resident } = ditVram(tv, ta, { weights, batch });
    return `  ${weights}`.padEnd(8) + `≥ ${gib(streamed)}`.padStart(10) + gib(resident).padStart(10);
  };
  const tv2 = videoTokens(2 * width, 2 * height, frames);
  const perBatch = batch > 1 ? ` (batch ${batch})` : "";
  const lines = [
    `${frames} frames · ${duration} s @ ${+fps.toFixed(3)} fps`,
    `${width}×${height} ` + (twoStage ? "×64 ✓ two-stage ready" : "×32 ✓ (×64 for two-stage)"),
    `video ${f}×${h}×${w} = ${tv} tokens`,
    audio ? `audio ${ta} tokens` : "audio off",
    `DiT activations ${formatBytes(ditActivationBytes(tv, ta, { batch }))}${perBatch}`,
    "VRAM GiB" + "streamed".padStart(10) + "resident".padStart(10),
    vram("fp8"),
    vram("bf16"),
    `×2 upscale: ${tv2} tok · act ${formatBytes(ditActivationBytes(tv2, ta, { batch }))}`,
  ];
  return { lines, tooltip: LATENT_TOOLTIP };
}
