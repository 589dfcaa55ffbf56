// Canvas helpers for the LTX-2 nodes (ComfyUI frontend extension; this folder is the pack's WEB_DIRECTORY).
//
// ComfyUI serves this folder at /extensions/<pack folder>/ and imports every .js file in it, so this
// file is /extensions/<pack>/ltx2_nodes.js and the frontend's module shims are two levels up. The
// files in lib/ are plain modules without side effects (importing them on their own does nothing);
// all the logic lives there and is unit-tested with Node (tests/js/).
//
// * LTX2EmptyAVLatent: frames <-> seconds, sizes snapped to 32, a read-out of duration, tokens and
//   DiT memory.
// * LTX2Sampler: a preset selector (distilled / dev / stage 2 refine) and a video/audio CFG link.
// * LTX2AVCombine: an inline player with sound for the saved MP4.
//
// Widgets added here are never serialized (neither into the workflow's widgets_values nor into the
// API prompt) and are appended after the node's own widgets: LiteGraph writes widgets_values by
// widget index but reads them back in order, so a non-serialized widget before a real one would
// shift the saved values. The sampler's link state lives in node.properties instead.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { describeLatent } from "./lib/estimates.js";
import { playerCaption, playerHeight, sameFile, videoFromOutput, viewURL } from "./lib/media.js";
import { CUSTOM, DEV_CFG_RATIO, matchPreset, PRESET_CHOICES, samplerEdit } from "./lib/sampler.js";
import { latentEdit } from "./lib/shape.js";

const LATENT_WIDGETS = ["width", "height", "frames", "seconds", "fps", "batch_size", "audio"];
const SAMPLER_WIDGETS = ["steps", "schedule", "sampler", "video_cfg", "audio_cfg", "modality_scale", "stg_scale",
  "stg_blocks", "rescale", "start_sigma", "audio_rescale"];
const READOUT_LINE_PX = 15;
const READOUT_PAD_PX = 8;
const READOUT_CHAR_PX = 6.7; // 11px monospace advance (0.6 em) plus a little for fallback glyphs
const DOM_MARGIN_PX = 10; // ComfyUI insets a DOM widget's element by this on each side
const CAPTION_PX = 18;

// ------------------------------------------------------------------------------------------------
// Small widget helpers

const findWidget = (node, name) => node.widgets?.find((w) => w.name === name);

function widgetValues(node, names) {
  const values = {};
  for (const name of names) {
    const w = findWidget(node, name);
    if (w) values[name] = w.value;
  }
  return values;
}

function applyChanges(node, changes) {
  for (const [name, value] of Object.entries(changes)) {
    const w = findWidget(node, name);
    if (w) w.value = value;
  }
  node.setDirtyCanvas?.(true, true);
}

/** Call `after()` whenever the user edits widget `name`, after the widget's own callback. */
function onWidgetChange(node, name, after) {
  const w = findWidget(node, name);
  if (!w) return;
  const original = w.callback;
  w.callback = function (...args) {
    const result = original?.apply(this, args);
    after();
    return result;
  };
}

function chainMethod(prototype, name, fn) {
  const original = prototype[name];
  prototype[name] = function (...args) {
    const result = original?.apply(this, args);
    fn.apply(this, args);
    return result;
  };
}

function notSerialized(widget) {
  widget.serialize = false; // workflow widgets_values
  widget.options ??= {};
  widget.options.serialize = false; // API prompt (graphToPrompt)
  return widget;
}

/** Grow the node (never shrink it) so every widget gets at least its minimum size. */
function fitNode(node, minWidth = 0) {
  const [width, height] = node.computeSize();
  node.setSize([Math.max(node.size[0], width, minWidth), Math.max(node.size[1], height)]);
  node.setDirtyCanvas?.(true, true);
}

// ------------------------------------------------------------------------------------------------
// LTX2EmptyAVLatent

function addReadout(node) {
  const element = document.createElement("div");
  Object.assign(element.style, {
    font: "11px monospace", lineHeight: `${READOUT_LINE_PX}px`, whiteSpace: "pre", overflow: "hidden",
    padding: `${READOUT_PAD_PX / 2}px 6px`, boxSizing: "border-box", borderRadius: "4px",
    color: "var(--input-text, #ddd)", background: "var(--comfy-input-bg, #222)",
  });
  let lineCount = 0;
  let width = 0;
  const height = () => lineCount * READOUT_LINE_PX + READOUT_PAD_PX + 2 * DOM_MARGIN_PX;
  notSerialized(node.addDOMWidget("ltx2_readout", "ltx2_readout", element, {
    serialize: false, hideOnZoom: true, getMinHeight: height, getMaxHeight: height,
  }));
  return ({ lines, tooltip }) => {
    const needed = Math.ceil(Math.max(...lines.map((l) => l.length)) * READOUT_CHAR_PX) + 12 + 2 * DOM_MARGIN_PX;
    const grew = lines.length > lineCount || needed > width;
    lineCount = lines.length;
    width = Math.max(width, needed);
    element.textContent = lines.join("\n");
    element.title = tooltip;
    if (grew) fitNode(node, width);
  };
}

function setupEmptyLatent(node) {
  const render = addReadout(node);
  const refresh = () => render(describeLatent(widgetValues(node, LATENT_WIDGETS)));
  for (const name of ["width", "height", "frames", "seconds", "fps"]) {
    onWidgetChange(node, name, () => {
      applyChanges(node, latentEdit(widgetValues(node, LATENT_WIDGETS), name));
      refresh();
    });
  }
  onWidgetChange(node, "batch_size", refresh);
  onWidgetChange(node, "audio", refresh);
  node.ltx2Refresh = refresh;
  refresh();
}

// ------------------------------------------------------------------------------------------------
// LTX2Sampler

function cfgRanges(node) {
  const range = (name) => {
    const options = findWidget(node, name)?.options ?? {};
    return { min: options.min ?? 0, max: options.max ?? 30 };
  };
  return { video_cfg: range("video_cfg"), audio_cfg: range("audio_cfg") };
}

function setupSampler(node) {
  node.properties ??= {};
  const presetWidget = notSerialized(node.addWidget("combo", "ltx2_preset", CUSTOM,
    (value) => edit("preset", { preset: value }), { values: [...PRESET_CHOICES], serialize: false }));
  presetWidget.label = "preset";
  presetWidget.tooltip = "Sets schedule, steps, start sigma, sampler and guidance: distilled (8 fixed steps, euler, " +
    "guidance off), distilled 2.5 (the same with euler_ancestral, LTX-2.5's stage 1), " +
    "dev (40 steps, video CFG 3, audio CFG 7, modality 3, STG 1 on block 29, rescale 0.7), stage 2 refine " +
    "(distilled stage-2 list from sigma 0.909375, guidance off), hq / hq stage 2 (the reference's HQ two-stage " +
    "recipe on the dev model: res_2s, 15 token-shifted steps, CFG 3 / 7, STG off, rescale 0.45 / audio 1.0; " +
    "stage 2 res_2s from 0.909375; put the distilled LoRA at 0.25 / 0.5 before each). Shows 'custom' once a " +
    "value differs.";
  const linkWidget = notSerialized(node.addWidget("toggle", "ltx2_link_cfg", Boolean(node.properties.ltx2_link_cfg),
    (value) => {
      node.properties.ltx2_link_cfg = Boolean(value);
      edit("link_cfg");
    }, { on: "linked", off: "independent", serialize: false }));
  linkWidget.label = "link video/audio cfg";
  linkWidget.tooltip = "Linked: changing video_cfg or audio_cfg moves the other so that the guidance strengths " +
    "keep their ratio, (audio_cfg - 1) = r x (video_cfg - 1), r taken when linking (3 for the dev pair 3 / 7). " +
    "CFG 1 (guidance off) on one side turns the other off too.";

  function edit(changed, extra = {}) {
    const values = { ...widgetValues(node, SAMPLER_WIDGETS), link_cfg: Boolean(node.properties.ltx2_link_cfg), ...extra };
    const { changes, ratio } = samplerEdit(values, changed, node.properties.ltx2_cfg_ratio ?? DEV_CFG_RATIO,
      cfgRanges(node));
    node.properties.ltx2_cfg_ratio = ratio;
    applyChanges(node, changes);
    presetWidget.value = matchPreset(widgetValues(node, SAMPLER_WIDGETS));
  }

  for (const name of SAMPLER_WIDGETS) onWidgetChange(node, name, () => edit(name));
  node.ltx2Sync = () => {
    linkWidget.value = Boolean(node.properties.ltx2_link_cfg);
    presetWidget.value = matchPreset(widgetValues(node, SAMPLER_WIDGETS));
  };
  node.ltx2Sync();
}

// ------------------------------------------------------------------------------------------------
// LTX2AVCombine

function ensurePlayer(node) {
  if (node.ltx2Player) return node.ltx2Player;
  const container = document.createElement("div");
  Object.assign(container.style, { display: "flex", flexDirection: "column", width: "100%", height: "100%" });
  const video = document.createElement("video");
  Object.assign(video, { controls: true, loop: true, playsInline: true, preload: "metadata" });
  Object.assign(video.style, { width: "100%", flex: "1 1 auto", minHeight: "0", objectFit: "contain",
    background: "#000" });
  const caption = document.createElement("div");
  Object.assign(caption.style, { font: "11px sans-serif", height: `${CAPTION_PX}px`, lineHeight: `${CAPTION_PX}px`,
    opacity: "0.8", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis", padding: "0 4px" });
  container.append(video, caption);
  const player = { video, caption, aspect: 0, file: null, hasAudio: null };
  notSerialized(node.addDOMWidget("ltx2_player", "video", container, {
    serialize: false, hideOnZoom: false,
    getMinHeight: () => playerHeight(node.size[0], player.aspect, { margin: DOM_MARGIN_PX }) + CAPTION_PX +
      2 * DOM_MARGIN_PX,
  }));
  video.addEventListener("loadedmetadata", () => {
    player.aspect = video.videoHeight / video.videoWidth;
    fitNode(node);
  });
  node.ltx2Player = player;
  fitNode(node);
  return player;
}

/** Point the player at the node's output video; false when the output holds none. */
function showVideo(node, output) {
  const found = videoFromOutput(output);
  if (!found) return false;
  const player = ensurePlayer(node);
  const newFile = !sameFile(player.file, found.file);
  if (newFile) {
    player.file = found.file;
    player.video.src = viewURL(found.file, (route) => api.apiURL(route), { rand: Math.random() });
  }
  if (newFile || player.hasAudio !== found.hasAudio || player.warning !== found.warning) {
    player.hasAudio = found.hasAudio;
    player.warning = found.warning;
    player.caption.textContent = playerCaption(found.file, found.hasAudio, found.warning);
    player.caption.title = found.warning ?? "";
  }
  return true;
}

function setupCombine(nodeType) {
  chainMethod(nodeType.prototype, "onExecuted", function (output) {
    showVideo(this, output);
  });
  // ComfyUI's own preview (a second <video> built from "images" + "animated") is replaced by ours:
  // outputs restored without an executed message (e.g. switching workflow tabs) go to our player too.
  const coreDraw = nodeType.prototype.onDrawBackground;
  nodeType.prototype.onDrawBackground = function (...args) {
    showVideo(this, app.nodeOutputs?.[String(this.id)]);
    if (this.ltx2Player?.file) return undefined;
    return coreDraw?.apply(this, args);
  };
}

// ------------------------------------------------------------------------------------------------

app.registerExtension({
  name: "ltx2_nodes.canvas",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const setup = { LTX2EmptyAVLatent: setupEmptyLatent, LTX2Sampler: setupSampler }[nodeData.name];
    if (setup) {
      chainMethod(nodeType.prototype, "onNodeCreated", function () {
        setup(this);
      });
      chainMethod(nodeType.prototype, "onConfigure", function () {
        this.ltx2Refresh?.();
        this.ltx2Sync?.();
      });
    }
    if (nodeData.name === "LTX2AVCombine") setupCombine(nodeType);
  },
});
