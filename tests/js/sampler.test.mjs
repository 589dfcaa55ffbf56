import assert from "node:assert/strict";
import test from "node:test";

import {
  audioCfgFor, cfgRatio, CUSTOM, DEV_CFG_RATIO, matchPreset, normalizeBlocks, PRESET_CHOICES, PRESETS, samplerEdit,
  videoCfgFor,
} from "../../js/lib/sampler.js";

const NODE_DEFAULTS = { // LTX2Sampler widget defaults (node schema)
  steps: 40, schedule: "ltx2", sigmas: "", sampler: "euler", video_cfg: 3.0, audio_cfg: 7.0, modality_scale: 3.0,
  stg_scale: 1.0, stg_blocks: "29", rescale: 0.7, start_sigma: 1.0, guidance_passes: "sequential",
  audio_rescale: -1.0,
};

test("preset choices", () => {
  assert.deepEqual(PRESET_CHOICES, ["custom", "distilled", "distilled 2.5", "dev", "stage 2 refine", "hq", "hq stage 2"]);
});

test("the node's defaults are the dev preset", () => {
  assert.equal(matchPreset(NODE_DEFAULTS), "dev");
});

test("applying a preset changes only the widgets that differ, and the result matches the preset", () => {
  for (const name of Object.keys(PRESETS)) {
    const { changes } = samplerEdit({ ...NODE_DEFAULTS, preset: name }, "preset");
    const after = { ...NODE_DEFAULTS, ...changes };
    assert.equal(matchPreset(after), name);
    for (const [key, value] of Object.entries(changes)) assert.notEqual(NODE_DEFAULTS[key], value, key);
  }
  const { changes } = samplerEdit({ ...NODE_DEFAULTS, preset: "distilled" }, "preset");
  assert.deepEqual(changes, { schedule: "distilled", video_cfg: 1, audio_cfg: 1, modality_scale: 1, stg_scale: 0,
    rescale: 0 });
  const hq = samplerEdit({ ...NODE_DEFAULTS, preset: "hq" }, "preset").changes;
  assert.deepEqual(hq, { schedule: "ltx2 by tokens", steps: 15, sampler: "res_2s", stg_scale: 0, rescale: 0.45,
    audio_rescale: 1 });
  const refine = samplerEdit({ ...NODE_DEFAULTS, preset: "stage 2 refine" }, "preset").changes;
  assert.equal(refine.schedule, "distilled stage 2");
  assert.equal(refine.start_sigma, 0.909375);
  assert.deepEqual(samplerEdit({ ...NODE_DEFAULTS, preset: CUSTOM }, "preset").changes, {});
});

test("any difference makes it custom; steps do not matter for distilled; blocks are compared as lists", () => {
  assert.equal(matchPreset({ ...NODE_DEFAULTS, video_cfg: 3.5 }), CUSTOM);
  const distilled = { ...NODE_DEFAULTS, ...PRESETS.distilled };
  assert.equal(matchPreset({ ...distilled, steps: 3 }), "distilled");
  assert.equal(matchPreset({ ...distilled, sampler: "euler_ancestral" }), "distilled 2.5");
  assert.equal(matchPreset({ ...distilled, sampler: "res_2s" }), CUSTOM);
  assert.equal(matchPreset({ ...NODE_DEFAULTS, stg_blocks: " 29, " }), "dev");
  assert.equal(matchPreset({ ...NODE_DEFAULTS, stg_blocks: "28, 29" }), CUSTOM);
  assert.equal(normalizeBlocks("28 29,30"), "28,29,30");
});

test("link ratio is taken on guidance strengths (cfg - 1)", () => {
  assert.equal(DEV_CFG_RATIO, 3);
  assert.equal(cfgRatio(3, 7), 3);
  assert.equal(cfgRatio(2, 2), 1);
  assert.equal(cfgRatio(1, 1, 2.5), 2.5); // guidance off: no ratio to read, keep the stored one
  assert.equal(cfgRatio(3, 1, 2.5), 2.5);
  assert.equal(cfgRatio(0.5, 7, 2.5), 2.5); // opposite directions
});

test("linked values keep the ratio, are rounded to 0.01 and clamped to the widget range", () => {
  assert.equal(audioCfgFor(4, 3), 10);
  assert.equal(audioCfgFor(1, 3), 1); // video guidance off -> audio off
  assert.equal(videoCfgFor(7, 3), 3);
  assert.equal(videoCfgFor(8, 3), 3.33);
  assert.equal(audioCfgFor(12, 3, { min: 0, max: 30 }), 30);
  assert.equal(audioCfgFor(0, 3, { min: 0, max: 30 }), 0);
});

test("sampler edits: linked cfg follows, unlinked does not", () => {
  const linked = { ...NODE_DEFAULTS, link_cfg: true };
  assert.deepEqual(samplerEdit({ ...linked, video_cfg: 4 }, "video_cfg", 3).changes, { audio_cfg: 10 });
  assert.deepEqual(samplerEdit({ ...linked, audio_cfg: 4 }, "audio_cfg", 3).changes, { video_cfg: 2 });
  assert.deepEqual(samplerEdit({ ...NODE_DEFAULTS, video_cfg: 4 }, "video_cfg", 3).changes, {});
  assert.deepEqual(samplerEdit({ ...linked, steps: 20 }, "steps", 3).changes, {});
});

test("linking captures the current ratio; presets re-capture it when linked", () => {
  assert.equal(samplerEdit({ ...NODE_DEFAULTS, video_cfg: 2, audio_cfg: 3, link_cfg: true }, "link_cfg", 3).ratio, 2);
  assert.equal(samplerEdit({ ...NODE_DEFAULTS, video_cfg: 2, audio_cfg: 3, link_cfg: false }, "link_cfg", 3).ratio, 3);
  const custom = { ...NODE_DEFAULTS, video_cfg: 2, audio_cfg: 2, link_cfg: true };
  assert.equal(samplerEdit({ ...custom, preset: "dev" }, "preset", 1).ratio, 3);
  assert.equal(samplerEdit({ ...custom, preset: "distilled" }, "preset", 1.5).ratio, 1.5); // off: kept
});
