// Loads js/ exactly as the ComfyUI frontend does (every listed .js file, from the served URL
// layout, so the relative imports of the frontend shims are checked too) and drives the hooks.

import assert from "node:assert/strict";
import { before, test } from "node:test";

import { fakeComfy, fakeDocument, nodeClass, serveWebRoot } from "./fake_frontend.mjs";

let comfy;
let extension;

before(async () => {
  comfy = fakeComfy();
  globalThis.comfyAPI = comfy;
  globalThis.document = fakeDocument;
  for (const url of serveWebRoot()) await import(url);
  assert.equal(comfy.extensions.length, 1, "exactly one extension registers");
  [extension] = comfy.extensions;
});

async function register(name, spec, prototype = {}) {
  const NodeType = nodeClass(spec);
  Object.assign(NodeType.prototype, prototype);
  await extension.beforeRegisterNodeDef(NodeType, { name }, comfy.app);
  return NodeType;
}

/** LiteGraph.createNode: constructor (node-def widgets), then onNodeCreated. */
function create(NodeType) {
  const node = new NodeType();
  node.onNodeCreated?.();
  return node;
}

const LATENT = [
  ["number", "width", 768, { min: 64, max: 4096, step2: 32 }],
  ["number", "height", 512, { min: 64, max: 4096, step2: 32 }],
  ["number", "frames", 121, { min: 1, max: 1025, step2: 8 }],
  ["number", "seconds", 0, { min: 0, max: 60 }],
  ["number", "fps", 24, { min: 1, max: 120 }],
  ["number", "batch_size", 1, { min: 1, max: 16 }],
  ["toggle", "audio", true, {}],
];

const SAMPLER = [
  ["number", "seed", 10, {}],
  ["combo", "control_after_generate", "fixed", {}],
  ["number", "steps", 40, {}],
  ["combo", "schedule", "ltx2", { values: ["ltx2", "distilled", "distilled stage 2", "custom", "ltx2 by tokens"] }],
  ["text", "sigmas", "", {}],
  ["combo", "sampler", "euler", { values: ["euler", "euler_ancestral", "res_2s"] }],
  ["number", "video_cfg", 3.0, { min: 0, max: 30 }],
  ["number", "audio_cfg", 7.0, { min: 0, max: 30 }],
  ["number", "modality_scale", 3.0, {}],
  ["number", "stg_scale", 1.0, {}],
  ["text", "stg_blocks", "29", {}],
  ["number", "rescale", 0.7, { min: 0, max: 1 }],
  ["number", "start_sigma", 1.0, { min: 0, max: 1 }],
  ["combo", "guidance_passes", "sequential", { values: ["sequential", "batched"] }],
  ["number", "audio_rescale", -1.0, { min: -1, max: 1 }],
];

test("the extension is named and leaves other nodes alone", async () => {
  assert.equal(extension.name, "ltx2_nodes.canvas");
  const Other = await register("KSampler", [["number", "steps", 20, {}]]);
  assert.equal(Other.prototype.onNodeCreated, undefined);
  assert.equal(create(Other).widgets.length, 1);
});

test("empty latent: read-out widget after the node's widgets, never serialized", async () => {
  const node = create(await register("LTX2EmptyAVLatent", LATENT));
  const readout = node.widgets.at(-1);
  assert.equal(readout.name, "ltx2_readout");
  assert.equal(readout.serialize, false);
  assert.equal(readout.options.serialize, false);
  assert.match(readout.element.textContent, /^121 frames · 5\.04 s @ 24 fps\n/);
  assert.match(readout.element.textContent, /\nvideo 16×16×24 = 6144 tokens\naudio 126 tokens\n/);
  assert.match(readout.element.title, /streamed/);
  assert.equal(readout.options.getMinHeight(), 9 * 15 + 8 + 20);
  assert.ok(node.size[1] >= node.computeSize()[1], "node grown to fit the read-out");
  assert.ok(node.size[0] >= 36 * 6.7 + 32, "node widened to the longest line");
  assert.deepEqual(Object.keys(node.promptInputs()), LATENT.map(([, name]) => name));
  assert.deepEqual(node.serializeWidgets(), [768, 512, 121, 0, 24, 1, true]);
});

test("empty latent: seconds drive frames, frames switch seconds off, sizes snap", async () => {
  const node = create(await register("LTX2EmptyAVLatent", LATENT));
  const text = () => node.widgets.at(-1).element.textContent;
  node.edit("seconds", 10);
  assert.equal(node.value("frames"), 241);
  assert.match(text(), /^241 frames · 10\.04 s @ 24 fps/);
  node.edit("fps", 25);
  assert.equal(node.value("frames"), 249);
  node.edit("frames", 100);
  assert.equal(node.value("frames"), 97);
  assert.equal(node.value("seconds"), 0);
  assert.match(text(), /^97 frames · 3\.88 s @ 25 fps/);
  node.edit("width", 1000);
  assert.equal(node.value("width"), 992);
  assert.match(text(), /\n992×512 ×32 ✓ \(×64 for two-stage\)\n/);
  node.edit("audio", false);
  assert.match(text(), /\naudio off\n/);
});

test("empty latent: a saved workflow loads back into the same widgets and refreshes the read-out", async () => {
  const NodeType = await register("LTX2EmptyAVLatent", LATENT);
  const saved = create(NodeType);
  saved.edit("height", 704);
  saved.edit("width", 1280);
  const values = saved.serializeWidgets();
  const loaded = create(NodeType);
  loaded.configure({ widgets_values: values, properties: {} });
  assert.deepEqual(loaded.serializeWidgets(), values);
  assert.match(loaded.widgets.at(-1).element.textContent, /video 16×22×40 = 14080 tokens/);
});

test("sampler: preset and link widgets come last, are not serialized, and show the matching preset", async () => {
  const node = create(await register("LTX2Sampler", SAMPLER));
  const [preset, link] = node.widgets.slice(-2);
  assert.deepEqual([preset.name, link.name], ["ltx2_preset", "ltx2_link_cfg"]);
  assert.equal(preset.label, "preset");
  assert.deepEqual(preset.options.values, ["custom", "distilled", "distilled 2.5", "dev", "stage 2 refine", "hq", "hq stage 2"]);
  assert.equal(preset.value, "dev");
  assert.equal(link.value, false);
  for (const w of [preset, link]) assert.equal(w.serialize, false);
  assert.deepEqual(Object.keys(node.promptInputs()), SAMPLER.map(([, name]) => name));
  assert.equal(node.serializeWidgets().length, SAMPLER.length);
});

test("sampler: choosing a preset sets the widgets; editing one shows custom", async () => {
  const node = create(await register("LTX2Sampler", SAMPLER));
  node.edit("ltx2_preset", "stage 2 refine");
  assert.equal(node.value("schedule"), "distilled stage 2");
  assert.equal(node.value("start_sigma"), 0.909375);
  assert.deepEqual(["video_cfg", "audio_cfg", "modality_scale", "stg_scale", "rescale"].map((n) => node.value(n)),
    [1, 1, 1, 0, 0]);
  assert.equal(node.value("ltx2_preset"), "stage 2 refine");
  node.edit("start_sigma", 0.85);
  assert.equal(node.value("ltx2_preset"), "custom");
  node.edit("ltx2_preset", "dev");
  assert.equal(node.value("steps"), 40);
  assert.equal(node.value("audio_cfg"), 7);
  assert.equal(node.value("ltx2_preset"), "dev");
});

test("sampler: linked CFG follows, the link survives save and load", async () => {
  const NodeType = await register("LTX2Sampler", SAMPLER);
  const node = create(NodeType);
  node.edit("video_cfg", 4);
  assert.equal(node.value("audio_cfg"), 7, "not linked yet");
  node.edit("video_cfg", 3);
  node.edit("ltx2_link_cfg", true);
  assert.equal(node.properties.ltx2_link_cfg, true);
  node.edit("video_cfg", 4);
  assert.equal(node.value("audio_cfg"), 10);
  node.edit("audio_cfg", 4);
  assert.equal(node.value("video_cfg"), 2);
  node.edit("video_cfg", 1);
  assert.equal(node.value("audio_cfg"), 1);

  const loaded = create(NodeType);
  loaded.configure({ widgets_values: node.serializeWidgets(), properties: JSON.parse(JSON.stringify(node.properties)) });
  assert.equal(loaded.value("ltx2_link_cfg"), true);
  assert.equal(loaded.value("ltx2_preset"), "custom");
  loaded.edit("video_cfg", 2);
  assert.equal(loaded.value("audio_cfg"), 4);
});

const ENTRY = { filename: "LTX2_00001_.mp4", subfolder: "", type: "output" };
const OUTPUT = { ltx2_video: [ENTRY], has_audio: [true], images: [ENTRY], animated: [true] };
const COMBINE = [["number", "fps", 24, {}], ["text", "filename_prefix", "LTX2", {}]];

test("combine: the executed output plays in an inline <video controls>", async () => {
  let coreDraws = 0;
  const NodeType = await register("LTX2AVCombine", COMBINE, { onDrawBackground() { coreDraws += 1; } });
  const node = create(NodeType);
  node.onDrawBackground();
  assert.equal(coreDraws, 1, "no output yet: core's drawing runs");
  node.onExecuted(OUTPUT);
  const player = node.widgets.at(-1);
  assert.equal(player.name, "ltx2_player");
  assert.equal(player.serialize, false);
  assert.equal(player.options.hideOnZoom, false);
  const [video, caption] = player.element.children;
  assert.equal(video.tagName, "VIDEO");
  assert.equal(video.controls, true);
  assert.notEqual(video.muted, true);
  assert.match(video.src, /^\/base\/api\/view\?filename=LTX2_00001_\.mp4&subfolder=&type=output&rand=/);
  assert.equal(caption.textContent, "LTX2_00001_.mp4 · with sound");
  assert.deepEqual(node.serializeWidgets(), [24, "LTX2"]);

  video.videoWidth = 768;
  video.videoHeight = 512;
  video.dispatch("loadedmetadata");
  assert.equal(player.options.getMinHeight(), Math.round((node.size[0] - 20) * 512 / 768) + 18 + 20);
  assert.ok(node.size[1] >= node.computeSize()[1]);

  const src = video.src;
  node.onExecuted(OUTPUT); // cached re-run: same file, no reload
  assert.equal(video.src, src);
  node.onExecuted({ ...OUTPUT, ltx2_video: [{ ...ENTRY, filename: "LTX2_00002_.mp4" }], has_audio: [false] });
  assert.match(video.src, /filename=LTX2_00002_\.mp4/);
  assert.equal(caption.textContent, "LTX2_00002_.mp4 · no audio track");
  node.onExecuted({ ...OUTPUT, ltx2_video: [{ ...ENTRY, filename: "LTX2_00003_.mp4" }], has_audio: [false] });
  assert.equal(caption.textContent, "LTX2_00003_.mp4 · no audio track");
  node.onDrawBackground();
  assert.equal(coreDraws, 1, "core's second preview is not built once ours plays");
  assert.equal(node.widgets.filter((w) => w.name === "ltx2_player").length, 1);
});

test("combine: outputs restored without an executed message reach the player", async () => {
  const node = create(await register("LTX2AVCombine", COMBINE));
  comfy.app.nodeOutputs[String(node.id)] = OUTPUT;
  node.onDrawBackground();
  assert.match(node.widgets.at(-1).element.children[0].src, /filename=LTX2_00001_\.mp4/);
  delete comfy.app.nodeOutputs[String(node.id)];
});
