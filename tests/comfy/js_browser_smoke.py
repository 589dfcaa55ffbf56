"""Browser smoke check of the js/ canvas extension in a real ComfyUI (not collected by pytest).

Needs a running ComfyUI with this pack in custom_nodes (the pack's nodes registered), headless
Chromium (Debian: ``apt-get install chromium``) and aiohttp (ComfyUI's venv has it):

    python tests/comfy/js_browser_smoke.py --url http://127.0.0.1:8188 [--screenshot out.png]

It starts Chromium by itself (own profile, remote debugging on a free loopback port), opens the
page and checks, through the DevTools protocol: the extension is listed by GET /extensions and
registers; the empty-latent read-out, the seconds -> frames and size snapping; the sampler presets
and the linked CFG; that none of the added widgets is saved into widgets_values or the API prompt;
then it runs EmptyImage + EmptyAudio -> LTX2AVCombine and checks the inline player loads the MP4
and decodes its sound, with a single <video> on the node; and no page exception or console error
other than 404s of optional files. Prints a JSON report; exit status 1 when a check fails. Chromium
is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

EXTENSION = "ltx2_nodes.canvas"
OPTIONAL_404 = ("user.css", "favicon.ico", "/api/userdata")

BUILD = r"""(async () => {
  const app = window.comfyAPI.app.app, L = window.LiteGraph;
  app.graph.clear();
  const add = (type, pos) => { const n = L.createNode(type); n.pos = pos; app.graph.add(n); return n; };
  const lat = add("LTX2EmptyAVLatent", [90, 90]), smp = add("LTX2Sampler", [470, 90]);
  const img = add("EmptyImage", [90, 520]), snd = add("EmptyAudio", [90, 720]), cmb = add("LTX2AVCombine", [880, 90]);
  const set = (n, name, v) => { const w = n.widgets.find(w => w.name === name);
    w.setValue ? w.setValue(v, {node: n, canvas: app.canvas}) : (w.value = v, w.callback?.(v)); };
  Object.entries({width: 128, height: 96, batch_size: 24, color: 0x3366cc}).forEach(([k, v]) => set(img, k, v));
  Object.entries({duration: 1.0, sample_rate: 24000, channels: 2}).forEach(([k, v]) => set(snd, k, v));
  set(cmb, "fps", 24);
  img.connect(0, cmb, cmb.findInputSlot("images"));
  snd.connect(0, cmb, cmb.findInputSlot("audio"));
  window._ltx = {lat, smp, cmb, set, val: (n, name) => n.widgets.find(w => w.name === name).value};
  const readout = lat.widgets.at(-1);
  const r = {latWidgets: lat.widgets.map(w => w.name), smpWidgets: smp.widgets.map(w => w.name),
             readout: readout.element?.textContent ?? "", tooltip: readout.element?.title ?? "",
             initialPreset: window._ltx.val(smp, "ltx2_preset")};
  const {set: s, val} = window._ltx;
  s(lat, "seconds", 10); r.framesFor10s = val(lat, "frames");
  s(lat, "width", 1000); r.snappedWidth = val(lat, "width");
  s(lat, "frames", 100); r.snappedFrames = val(lat, "frames"); r.secondsAfterFrames = val(lat, "seconds");
  r.readoutAfter = readout.element.textContent;
  s(smp, "ltx2_preset", "distilled");
  r.distilled = [val(smp, "schedule"), val(smp, "video_cfg"), val(smp, "stg_scale")];
  s(smp, "ltx2_preset", "stage 2 refine"); r.refine = [val(smp, "schedule"), val(smp, "start_sigma")];
  s(smp, "ltx2_preset", "dev"); r.dev = [val(smp, "schedule"), val(smp, "steps"), val(smp, "audio_cfg")];
  s(smp, "ltx2_link_cfg", true); s(smp, "video_cfg", 4); r.linkedAudio = val(smp, "audio_cfg");
  r.presetAfterEdit = val(smp, "ltx2_preset");
  const wf = app.graph.serialize();
  r.savedValues = Object.fromEntries(wf.nodes.map(n => [n.type, n.widgets_values]));
  r.ownWidgetCounts = Object.fromEntries([lat, smp, cmb].map(
    n => [n.type, n.widgets.filter(w => w.serialize !== false).length]));
  const prompt = await app.graphToPrompt();
  r.promptInputs = Object.fromEntries(Object.values(prompt.output).map(n => [n.class_type, Object.keys(n.inputs)]));
  await app.loadGraphData(JSON.parse(JSON.stringify(wf)));
  const again = (t) => app.graph._nodes.find(n => n.type === t);
  r.reloadedValues = Object.fromEntries(app.graph.serialize().nodes.map(n => [n.type, n.widgets_values]));
  r.reloadedLink = val(again("LTX2Sampler"), "ltx2_link_cfg");
  window._ltx.cmb = again("LTX2AVCombine");
  return r;
})()"""

PLAY = r"""(async () => {
  const node = window._ltx.cmb, v = node.ltx2Player?.video;
  if (!v) return null;
  v.muted = false; let played = "ok";
  try { await v.play(); } catch (e) { played = String(e); }
  await new Promise(r => setTimeout(r, 1500)); v.pause();
  return {src: v.src, readyState: v.readyState, duration: v.duration, controls: v.controls, muted: v.muted, played,
          audioBytes: v.webkitAudioDecodedByteCount, caption: node.ltx2Player.caption.textContent,
          videosOnNode: node.widgets.filter(
            w => w.element?.querySelector?.("video") || w.element?.tagName === "VIDEO").length,
          videosInPage: document.querySelectorAll("video").length};
})()"""


class Page:
    """A minimal DevTools-protocol client for one page target."""

    def __init__(self, ws):
        self.ws, self.n, self.pending, self.events = ws, 0, {}, []

    async def read(self):
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                self.pending.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def call(self, method, **params):
        self.n += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.n] = future
        await self.ws.send_str(json.dumps({"id": self.n, "method": method, "params": params}))
        result = await asyncio.wait_for(future, 120)
        if "error" in result:
            raise RuntimeError(f"{method}: {result['error']}")
        return result["result"]

    async def js(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:2000])
        return result["result"].get("value")

    async def wait_for(self, expression, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.js(expression):
                    return True
            except RuntimeError:
                pass
            await asyncio.sleep(0.5)
        return False

    def problems(self):
        found = []
        for e in self.events:
            method, params = e["method"], e["params"]
            if method == "Runtime.exceptionThrown":
                exception = params["exceptionDetails"].get("exception", {})
                found.append("exception: " + exception.get("description", "")[:500])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))[:300]
                                                          for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                text = f"{params['entry'].get('text', '')} {params['entry'].get('url', '')}"
                if not ("404" in text and any(s in text for s in OPTIONAL_404)):
                    found.append("log: " + text[:300])
        return found


def check(report, name, ok, detail=None):
    report["checks"].append({"check": name, "ok": bool(ok), **({"detail": detail} if detail is not None else {})})


async def drive(url, cdp, screenshot, report):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/extensions") as r:
            listed = [e for e in await r.json() if e.endswith("/ltx2_nodes.js")]
        check(report, "GET /extensions lists ltx2_nodes.js", listed, listed)
        async with session.put(f"{cdp}/json/new?about:blank") as r:
            target = await r.json()
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            reader = asyncio.create_task(page.read())
            for domain in ("Runtime", "Log", "Page"):
                await page.call(f"{domain}.enable")
            await page.call("Emulation.setDeviceMetricsOverride", width=1500, height=900, deviceScaleFactor=1,
                            mobile=False)
            await page.call("Page.navigate", url=url + "/")
            ready = await page.wait_for("!!(window.comfyAPI?.app?.app?.graph && window.LiteGraph && "
                                        "document.querySelector('canvas'))", 90)
            check(report, "ComfyUI page loaded", ready)
            await asyncio.sleep(2)
            registered = await page.js(f"window.comfyAPI.app.app.extensions?.some(e => e.name === '{EXTENSION}')")
            check(report, "extension registered", registered)
            r = await page.js(BUILD)
            report["ui"] = r
            check(report, "read-out widget last on LTX2EmptyAVLatent", r["latWidgets"][-1] == "ltx2_readout")
            check(report, "read-out text", r["readout"].startswith("121 frames · 5.04 s @ 24 fps\n768×512 ×64"),
                  r["readout"])
            check(report, "read-out tooltip names the assumptions",
                  "streamed" in r["tooltip"] and "fp8" in r["tooltip"])
            check(report, "seconds 10 -> 241 frames", r["framesFor10s"] == 241)
            check(report, "width 1000 -> 992", r["snappedWidth"] == 992)
            check(report, "frames 100 -> 97 and seconds 0", [r["snappedFrames"], r["secondsAfterFrames"]] == [97, 0])
            check(report, "sampler widgets last", r["smpWidgets"][-2:] == ["ltx2_preset", "ltx2_link_cfg"])
            check(report, "defaults show the dev preset", r["initialPreset"] == "dev")
            check(report, "distilled preset", r["distilled"] == ["distilled", 1, 0], r["distilled"])
            check(report, "stage 2 refine preset", r["refine"] == ["distilled stage 2", 0.909375], r["refine"])
            check(report, "dev preset", r["dev"] == ["ltx2", 40, 7], r["dev"])
            check(report, "linked CFG: video 4 -> audio 10", r["linkedAudio"] == 10, r["linkedAudio"])
            check(report, "edited values show custom", r["presetAfterEdit"] == "custom")
            counts = {t: len(v) for t, v in r["savedValues"].items() if t in r["ownWidgetCounts"]}
            check(report, "added widgets not in widgets_values", counts == r["ownWidgetCounts"], counts)
            leaked = [k for inputs in r["promptInputs"].values() for k in inputs if k.startswith("ltx2_")]
            check(report, "added widgets not in the API prompt", not leaked, leaked)
            check(report, "workflow reloads with the same values", r["reloadedValues"] == r["savedValues"])
            check(report, "link state survives reload", r["reloadedLink"] is True)

            await page.js("window.comfyAPI.app.app.queuePrompt(0, 1).then(() => true)")
            loaded = await page.wait_for("(window._ltx.cmb.ltx2Player?.video.readyState ?? 0) >= 2", 120)
            check(report, "LTX2AVCombine output loaded in the inline player", loaded)
            player = await page.js(PLAY) if loaded else None
            report["player"] = player
            if player:
                check(report, "player has controls and is not muted", player["controls"] and not player["muted"])
                check(report, "player URL goes through /api/view", "/api/view?filename=" in player["src"],
                      player["src"])
                check(report, "sound decodes", player["audioBytes"] > 0, player["audioBytes"])
                check(report, "one <video> on the node (core's preview replaced)", player["videosOnNode"] == 1
                      and player["videosInPage"] == 1, [player["videosOnNode"], player["videosInPage"]])
            await page.js("window.comfyAPI.app.app.graph.setDirtyCanvas(true, true); true")
            await asyncio.sleep(1)
            if screenshot:
                shot = await page.call("Page.captureScreenshot", format="png")
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
            problems = page.problems()
            check(report, "no page exception or console error", not problems, problems)
            reader.cancel()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="a running ComfyUI with this pack, e.g. http://127.0.0.1:8188")
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    p.add_argument("--screenshot", help="write a PNG of the canvas after the checks")
    args = p.parse_args()
    port = free_port()
    profile = tempfile.mkdtemp(prefix="ltx2-chromium-")
    browser = subprocess.Popen([args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                                f"--remote-debugging-port={port}", "--remote-allow-origins=*",
                                "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    report = {"url": args.url, "checks": []}
    try:
        cdp = f"http://127.0.0.1:{port}"
        for _ in range(60):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        asyncio.run(drive(args.url.rstrip("/"), cdp, args.screenshot, report))
    finally:
        browser.send_signal(signal.SIGTERM)
        try:
            browser.wait(15)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)
    failed = [c["check"] for c in report["checks"] if not c["ok"]]
    report["passed"], report["failed"] = len(report["checks"]) - len(failed), failed
    print(json.dumps(report, indent=1, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
