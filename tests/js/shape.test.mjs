import assert from "node:assert/strict";
import test from "node:test";

import {
  audioTokens, framesForSeconds, latentEdit, roundHalfEven, secondsForFrames, snapFrames, snapSize, videoLatentGrid,
  videoTokens,
} from "../../js/lib/shape.js";

test("roundHalfEven rounds ties to even like Python's round", () => {
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, 2.4999, 2.5001].map(roundHalfEven), [0, 2, 2, 4, 0, -2, 2, 3]);
});

test("sizes snap to the nearest multiple of 32 within 64..4096", () => {
  assert.equal(snapSize(768), 768);
  assert.equal(snapSize(770), 768);
  assert.equal(snapSize(783), 768);
  assert.equal(snapSize(784), 800); // tie: up
  assert.equal(snapSize(10), 64);
  assert.equal(snapSize(5000), 4096);
});

test("frames snap to the nearest 8k+1 within 1..1025", () => {
  assert.equal(snapFrames(121), 121);
  assert.equal(snapFrames(120), 121);
  assert.equal(snapFrames(124), 121);
  assert.equal(snapFrames(125), 129); // tie: up
  assert.equal(snapFrames(0), 1);
  assert.equal(snapFrames(4000), 1025);
});

test("seconds and fps give the 8k+1 frame count of nearest duration", () => {
  assert.equal(framesForSeconds(5, 24), 121); // 5.04 s
  assert.equal(framesForSeconds(10, 24), 241);
  assert.equal(framesForSeconds(4, 25), 97); // 3.88 s is nearer to 4 s than 105 frames (4.2 s)
  assert.equal(framesForSeconds(5, 25), 129); // 124/8 = 15.5: tie, the longer clip
  assert.equal(framesForSeconds(5, 23.976), 121);
  assert.equal(framesForSeconds(0.01, 24), 1);
  assert.equal(framesForSeconds(60, 120), 1025); // clamped to the widget's maximum
  for (const fps of [8, 24, 25, 30, 50, 60]) {
    for (let seconds = 0.5; seconds * fps <= 1021; seconds += 0.25) {
      const frames = framesForSeconds(seconds, fps);
      assert.equal((frames - 1) % 8, 0);
      // no other 8k+1 count is nearer to the asked duration
      assert.ok(Math.abs(frames - seconds * fps) <= 4 + 1e-9, `${seconds}s @${fps}: ${frames}`);
    }
  }
});

test("frames to seconds", () => {
  assert.equal(secondsForFrames(121, 24), 121 / 24);
  assert.equal(secondsForFrames(1, 25), 0.04);
});

test("token counts follow the VAE strides (and core's worked examples)", () => {
  assert.deepEqual(videoLatentGrid(768, 512, 121), [16, 16, 24]);
  assert.equal(videoTokens(768, 512, 121), 6144);
  assert.equal(videoTokens(1280, 704, 121), 14080);
  assert.equal(videoTokens(960, 544, 121), 8160);
  assert.equal(videoTokens(1920, 1088, 121), 32640);
  assert.equal(videoTokens(768, 512, 1), 384);
});

test("audio tokens are round(25 * frames / fps), ties to even", () => {
  assert.equal(audioTokens(121, 24), 126);
  assert.equal(audioTokens(241, 24), 251);
  assert.equal(audioTokens(1, 50), 0); // 0.5
  assert.equal(audioTokens(3, 50), 2); // 1.5
  assert.equal(audioTokens(5, 50), 2); // 2.5
});

const base = { width: 768, height: 512, frames: 121, seconds: 0, fps: 24, batch_size: 1, audio: true };

test("editing width or height snaps it", () => {
  assert.deepEqual(latentEdit({ ...base, width: 770 }, "width"), { width: 768 });
  assert.deepEqual(latentEdit({ ...base, height: 500 }, "height"), { height: 512 });
  assert.deepEqual(latentEdit(base, "width"), {});
});

test("editing frames snaps them and switches seconds to 'use frames'", () => {
  assert.deepEqual(latentEdit({ ...base, frames: 100 }, "frames"), { frames: 97 });
  assert.deepEqual(latentEdit({ ...base, frames: 129, seconds: 5 }, "frames"), { seconds: 0 });
});

test("seconds > 0, or fps while seconds > 0, set frames", () => {
  assert.deepEqual(latentEdit({ ...base, seconds: 10 }, "seconds"), { frames: 241 });
  assert.deepEqual(latentEdit({ ...base, seconds: 5, fps: 25 }, "fps"), { frames: 129 });
  assert.deepEqual(latentEdit({ ...base, fps: 30 }, "fps"), {}); // seconds 0: frames stay, duration changes
  assert.deepEqual(latentEdit({ ...base, seconds: 0 }, "seconds"), {});
});
