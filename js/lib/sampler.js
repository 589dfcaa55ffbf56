// LTX2Sampler presets and video/audio CFG linking. Plain ES module (no DOM, no ComfyUI).
// The preset values mirror Python: ltx2_nodes/sampling/recipe.py (the dev, distilled and refine
// presets of the default family, the LTX-2.5 distilled preset, the HQ recipe's two stages, as nodes/sampler.py
// preset_widgets sets the sampler's widgets); tests/test_js.py checks they are equal.

// audio_rescale -1: the audio takes the rescale widget's value (every preset but HQ stage 1).
const GUIDANCE_OFF = {
  video_cfg: 1.0, audio_cfg: 1.0, modality_scale: 1.0, stg_scale: 0.0, rescale: 0.0, audio_rescale: -1.0,
};

/** Widget values each preset sets (by LTX2Sampler widget name); widgets not listed are left alone. */
export const PRESETS = Object.freeze({
  // Distilled model: its fixed 8-step list from pure noise, Euler, no guidance (steps are ignored).
  distilled: Object.freeze({ schedule: "distilled", start_sigma: 1.0, sampler: "euler", ...GUIDANCE_OFF }),
  // LTX-2.5 distilled model: the same list, sampled Euler ancestral (the reference's stage 1 from 2.5 on).
  "distilled 2.5": Object.freeze({
    schedule: "distilled", start_sigma: 1.0, sampler: "euler_ancestral", ...GUIDANCE_OFF,
  }),
  // Dev model: the reference's defaults (40 shifted steps, modality CFG, STG on block 29, rescale).
  dev: Object.freeze({
    schedule: "ltx2", steps: 40, start_sigma: 1.0, video_cfg: 3.0, audio_cfg: 7.0, modality_scale: 3.0,
    stg_scale: 1.0, stg_blocks: "29", rescale: 0.7, audio_rescale: -1.0,
  }),
  // Stage 2 of a two-stage run: re-noise the x2-upscaled latent to 0.909375, 3 distilled steps, no guidance.
  "stage 2 refine": Object.freeze({
    schedule: "distilled stage 2", start_sigma: 0.909375, sampler: "euler", ...GUIDANCE_OFF,
  }),
  // The reference's HQ pipeline, stage 1 (dev model + the distilled LoRA at 0.25): res_2s, 15 steps of the
  // schedule shifted by the latent's token count, CFG 3 / 7, modality 3, STG off, rescale 0.45 video / 1.0 audio.
  hq: Object.freeze({
    schedule: "ltx2 by tokens", steps: 15, start_sigma: 1.0, sampler: "res_2s", video_cfg: 3.0, audio_cfg: 7.0,
    modality_scale: 3.0, stg_scale: 0.0, rescale: 0.45, audio_rescale: 1.0,
  }),
  // HQ stage 2 (the LoRA at 0.5): the stage-2 list from 0.909375 with res_2s, guidance off.
  "hq stage 2": Object.freeze({
    schedule: "distilled stage 2", start_sigma: 0.909375, sampler: "res_2s", ...GUIDANCE_OFF,
  }),
});

export const CUSTOM = "custom";
export const PRESET_CHOICES = Object.freeze([CUSTOM, ...Object.keys(PRESETS)]);

const EPS = 1e-6;

function sameValue(name, a, b) {
  if (name === "stg_blocks") return normalizeBlocks(a) === normalizeBlocks(b);
  if (typeof b === "number") return Math.abs(Number(a) - b) <= EPS;
  return a === b;
}

/** "29", " 29 ,", "29 30" -> canonical "29" / "29,30" (the node parses commas and/or spaces). */
export function normalizeBlocks(text) {
  return String(text).split(/[\s,]+/).filter(Boolean).map(Number).join(",");
}

/** The preset whose every value the widgets currently hold, else "custom". */
export function matchPreset(values) {
  for (const [name, preset] of Object.entries(PRESETS)) {
    if (Object.entries(preset).every(([key, v]) => sameValue(key, values[key], v))) return name;
  }
  return CUSTOM;
}

// ----------------------------------------------------------------------------------------------
// CFG linking. CFG 1 means "no guidance", so the link keeps the ratio of the guidance strengths
// (cfg - 1) rather than of the raw values: audio = 1 + r * (video - 1). Switching video guidance
// off (1.0) then switches audio guidance off too, and the reference pair 3 / 7 is r = 3.

export const DEV_CFG_RATIO = (PRESETS.dev.audio_cfg - 1) / (PRESETS.dev.video_cfg - 1);
const CFG_RANGE = { min: 0, max: 30 };

/** r = (audio - 1) / (video - 1) when both guide in the same direction, else `fallback`. */
export function cfgRatio(video, audio, fallback = DEV_CFG_RATIO) {
  const r = (audio - 1) / (video - 1);
  return Number.isFinite(r) && r > 0 ? r : fallback;
}

const round2 = (x) => Math.round(x * 100) / 100;
const clamp = (x, { min, max }) => Math.min(max, Math.max(min, x));

export function audioCfgFor(video, ratio, range = CFG_RANGE) {
  return clamp(round2(1 + ratio * (video - 1)), range);
}

export function videoCfgFor(audio, ratio, range = CFG_RANGE) {
  return clamp(round2(1 + (audio - 1) / ratio), range);
}

/**
 * What editing one sampler widget does. `values`: current widget values (after the edit);
 * `changed`: "preset" (with values.preset the chosen name), "link_cfg" (values.link_cfg the new
 * state), or a widget name. `state`: {ratio}, the stored link ratio. `ranges`: {video_cfg, audio_cfg}
 * widget ranges. Returns {changes, ratio}: the widgets to update and the ratio to store.
 */
export function samplerEdit(values, changed, ratio = DEV_CFG_RATIO, ranges = {}) {
  const changes = {};
  if (changed === "preset") {
    for (const [key, v] of Object.entries(PRESETS[values.preset] ?? {})) {
      if (!sameValue(key, values[key], v)) changes[key] = v;
    }
  }
  const linked = Boolean(values.link_cfg);
  const after = { ...values, ...changes };
  if (linked && (changed === "preset" || changed === "link_cfg")) {
    ratio = cfgRatio(after.video_cfg, after.audio_cfg, ratio);
  } else if (linked && changed === "video_cfg") {
    changes.audio_cfg = audioCfgFor(values.video_cfg, ratio, ranges.audio_cfg ?? CFG_RANGE);
  } else if (linked && changed === "audio_cfg") {
    changes.video_cfg = videoCfgFor(values.audio_cfg, ratio, ranges.video_cfg ?? CFG_RANGE);
  }
  return { changes, ratio };
}
