// The LTX2AVCombine output as a playable URL. Plain ES module (no DOM, no ComfyUI).
//
// The node's UI payload (what `onExecuted` receives):
//   {"ltx2_video": [{"filename", "subfolder", "type"}], "has_audio": [bool],
//    "images": [same entry], "animated": [true], optional "ltx2_warning": [text]}
// "images"/"animated" are core's keys (history, queue panel); "ltx2_video" marks the entry as ours.

const VIDEO_EXTENSIONS = /\.(mp4|webm|mov|mkv)$/i;

const first = (value) => (Array.isArray(value) ? value[0] : value);

/** {file, hasAudio} from an executed-message output, or null when it holds no video file. */
export function videoFromOutput(output) {
  if (!output || typeof output !== "object") return null;
  let file = first(output.ltx2_video);
  if (!file) file = (output.images ?? []).find((entry) => VIDEO_EXTENSIONS.test(entry?.filename ?? ""));
  if (!file?.filename) return null;
  const hasAudio = first(output.has_audio);
  const warning = first(output.ltx2_warning);
  return {
    file: { filename: String(file.filename), subfolder: String(file.subfolder ?? ""), type: String(file.type ?? "output") },
    hasAudio: typeof hasAudio === "boolean" ? hasAudio : null,
    ...(warning ? { warning: String(warning) } : {}),
  };
}

/** The server route for a file: "/view?filename=..&subfolder=..&type=.." (pass it through api.apiURL). */
export function viewRoute(file, extra = {}) {
  const params = { filename: file.filename, subfolder: file.subfolder ?? "", type: file.type ?? "output", ...extra };
  const query = Object.entries(params)
    .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`)
    .join("&");
  return `/view?${query}`;
}

/** Full URL through the frontend's `api.apiURL` (adds the base path and "/api"). */
export function viewURL(file, apiURL, extra = {}) {
  return apiURL(viewRoute(file, extra));
}

/** Same file? (decides whether the player needs a new source). */
export function sameFile(a, b) {
  return Boolean(a && b) && a.filename === b.filename && a.subfolder === b.subfolder && a.type === b.type;
}

/** Player height for a node `width` px wide and a video of height/width `aspect`, within [min, max]. */
export function playerHeight(width, aspect, { margin = 10, min = 64, max = 1024 } = {}) {
  const inner = Math.max(width - 2 * margin, 1);
  const height = aspect > 0 && Number.isFinite(aspect) ? inner * aspect : inner * (9 / 16);
  return Math.round(Math.min(max, Math.max(min, height)));
}

/** The caption under the player; a warning of the node (e.g. the audio was cut to the video) comes first. */
export function playerCaption(file, hasAudio, warning = null) {
  const name = file.subfolder ? `${file.subfolder}/${file.filename}` : file.filename;
  const caption = hasAudio === false ? `${name} · no audio track` : hasAudio ? `${name} · with sound` : name;
  return warning ? `⚠ ${warning} · ${caption}` : caption;
}
