import assert from "node:assert/strict";
import test from "node:test";

import { playerCaption, playerHeight, sameFile, videoFromOutput, viewRoute, viewURL } from "../../js/lib/media.js";

const entry = { filename: "LTX2_00001_.mp4", subfolder: "", type: "output" };

test("the node's payload gives the file and whether it has sound", () => {
  const output = { ltx2_video: [entry], has_audio: [true], images: [entry], animated: [true] };
  assert.deepEqual(videoFromOutput(output), { file: entry, hasAudio: true });
  assert.equal(videoFromOutput({ ...output, has_audio: [false] }).hasAudio, false);
  assert.equal(videoFromOutput({ ltx2_video: [entry] }).hasAudio, null);
});

test("core-style payloads with a video in images are accepted; images and empty payloads are not", () => {
  const video = { filename: "clip.webm", subfolder: "a/b", type: "temp" };
  assert.deepEqual(videoFromOutput({ images: [{ filename: "x.png", subfolder: "", type: "output" }, video],
    animated: [true] }), { file: video, hasAudio: null });
  assert.equal(videoFromOutput({ images: [{ filename: "x.png", subfolder: "", type: "output" }] }), null);
  assert.equal(videoFromOutput({}), null);
  assert.equal(videoFromOutput(undefined), null);
  assert.deepEqual(videoFromOutput({ ltx2_video: [{ filename: "v.mp4" }] }).file,
    { filename: "v.mp4", subfolder: "", type: "output" });
});

test("view route is /view with filename, subfolder and type, URL-encoded", () => {
  assert.equal(viewRoute(entry), "/view?filename=LTX2_00001_.mp4&subfolder=&type=output");
  assert.equal(viewRoute({ filename: "a b&c=d é.mp4", subfolder: "x/y", type: "output" }, { rand: 0.5 }),
    "/view?filename=a%20b%26c%3Dd%20%C3%A9.mp4&subfolder=x%2Fy&type=output&rand=0.5");
});

test("view URL goes through the frontend's apiURL", () => {
  const apiURL = (route) => `/base/api${route}`;
  assert.equal(viewURL(entry, apiURL), "/base/api/view?filename=LTX2_00001_.mp4&subfolder=&type=output");
});

test("same file", () => {
  assert.ok(sameFile(entry, { ...entry }));
  assert.ok(!sameFile(entry, { ...entry, filename: "LTX2_00002_.mp4" }));
  assert.ok(!sameFile(null, entry));
});

test("player height follows the video's aspect at the node's width", () => {
  assert.equal(playerHeight(320, 512 / 768), 200); // (320 - 20) * 2/3
  assert.equal(playerHeight(320, 0), Math.round(300 * 9 / 16)); // before metadata: 16:9
  assert.equal(playerHeight(100, 0.1), 64); // min
  assert.equal(playerHeight(2000, 2), 1024); // max
});

test("caption names the file and the sound track", () => {
  assert.equal(playerCaption(entry, true), "LTX2_00001_.mp4 · with sound");
  assert.equal(playerCaption({ ...entry, subfolder: "runs" }, false), "runs/LTX2_00001_.mp4 · no audio track");
  assert.equal(playerCaption(entry, null), "LTX2_00001_.mp4");
  assert.equal(playerCaption(entry, true, "the audio is cut"), "⚠ the audio is cut · LTX2_00001_.mp4 · with sound");
  assert.equal(videoFromOutput({ ltx2_video: [entry], ltx2_warning: ["cut"] }).warning, "cut");
});
