// LTX-2 latent shape rules: frames <-> seconds, size snapping, token counts.
// Plain ES module (no DOM, no ComfyUI): imported by the canvas extension and by the Node unit tests.
// The rules mirror their one Python owner, ltx2_nodes/model/shapes.py (released VAE factors); tests/test_js.py
// checks the constants, the latent grid, the snapping and the token counts give the same numbers.

export const SPATIAL_STRIDE = 32; // VAE: one latent pixel per 32x32 pixels
export const TEMPORAL_STRIDE = 8; // VAE: first frame alone, then one latent frame per 8 frames
export const TWO_STAGE_MULTIPLE = 64; // a final size that halves to a 32-multiple stage-1 size
export const AUDIO_LATENTS_PER_SECOND = 25;

// Widget ranges of LTX2EmptyAVLatent (docs: node schema).
export const LIMITS = Object.freeze({
  size: { min: 64, max: 4096 },
  frames: { min: 1, max: 1025 },
  fps: { min: 1, max: 120 },
});

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

/** Python's round(): nearest integer, ties to even. */
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Nearest multiple of 32 (ties up) within the widget range. */
export function snapSize(value, { min, max } = LIMITS.size) {
  const snapped = Math.floor(Number(value) / SPATIAL_STRIDE + 0.5) * SPATIAL_STRIDE;
  return clamp(snapped, min, max);
}

/** Nearest 8k+1 frame count (ties up) within the widget range. */
export function snapFrames(value, { min, max } = LIMITS.frames) {
  const k = Math.floor((Number(value) - 1) / TEMPORAL_STRIDE + 0.5);
  return clamp(TEMPORAL_STRIDE * Math.max(k, 0) + 1, min, max);
}

/**
 * The 8k+1 frame count whose duration frames/fps is nearest to `seconds` (ties: the longer one).
 * Python equivalent (the node must compute exactly this, in float64):
 *     k = math.floor((seconds * fps - 1) / 8 + 0.5); frames = max(8 * max(k, 0) + 1, 1)
 * Above 1025 frames the canvas clamps the frames widget (visible); the node refuses the duration.
 */
export function framesForSeconds(seconds, fps, { min, max } = LIMITS.frames) {
  const k = Math.floor((seconds * fps - 1) / TEMPORAL_STRIDE + 0.5);
  return clamp(TEMPORAL_STRIDE * Math.max(k, 0) + 1, min, max);
}

/** Duration of a clip of `frames` at `fps` (the muxer trims the audio to exactly this). */
export function secondsForFrames(frames, fps) {
  return frames / fps;
}

/** [F', H', W'] of the video latent, as shapes.video_latent_size (floor division). */
export function videoLatentGrid(width, height, frames) {
  return [
    Math.floor((frames - 1) / TEMPORAL_STRIDE) + 1,
    Math.floor(height / SPATIAL_STRIDE),
    Math.floor(width / SPATIAL_STRIDE),
  ];
}

export function videoTokens(width, height, frames) {
  return videoLatentGrid(width, height, frames).reduce((a, b) => a * b, 1);
}

/** Audio latents for `frames` at `fps`: round(frames / fps * 25), ties to even, as the reference. */
export function audioTokens(frames, fps) {
  return roundHalfEven((frames / fps) * AUDIO_LATENTS_PER_SECOND);
}

/**
 * What editing one widget of the empty-latent node does to the others.
 * `values`: {width, height, frames, seconds, fps}; `changed`: the edited widget's name.
 * Returns only the widgets to update (including the edited one when it is snapped).
 * Rules: width/height snap to 32; frames snap to 8k+1 and switch `seconds` to 0 ("use frames"),
 * so the typed frame count is what runs; seconds (> 0) or fps (while seconds > 0) set frames.
 */
export function latentEdit(values, changed) {
  const changes = {};
  const set = (name, value) => {
    if (value !== values[name]) changes[name] = value;
  };
  if (changed === "width" || changed === "height") {
    set(changed, snapSize(values[changed]));
  } else if (changed === "frames") {
    set("frames", snapFrames(values.frames));
    if (values.seconds > 0) set("seconds", 0);
  } else if ((changed === "seconds" || changed === "fps") && values.seconds > 0 && values.fps > 0) {
    set("frames", framesForSeconds(values.seconds, values.fps));
  }
  return changes;
}
