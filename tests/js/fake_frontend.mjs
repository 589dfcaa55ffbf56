// A stand-in for the ComfyUI frontend, just enough to load js/ the way the browser does and drive
// the extension's hooks: the served URL layout (/scripts/app.js, /extensions/<pack>/...), the
// registerExtension API, LiteGraph-like nodes and widgets, and a few DOM elements.

import { cpSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const JS_DIR = fileURLToPath(new URL("../../js/", import.meta.url));

/** Every .js file under `dir`, as ComfyUI's GET /extensions lists them (recursive glob). */
export function listScripts(dir) {
  return readdirSync(dir, { recursive: true }).filter((f) => f.endsWith(".js")).map((f) => f.replaceAll("\\", "/"))
    .sort();
}

/**
 * Lay out a web root like the server's: <root>/scripts/{app,api}.js (shims reading globalThis, as the
 * real ones read window.comfyAPI) and <root>/extensions/<pack>/ holding a copy of js/.
 * Returns the file URL of every extension script, in GET /extensions order.
 */
export function serveWebRoot(pack = "ltx2_nodes") {
  const root = mkdtempSync(join(tmpdir(), "ltx2-web-"));
  mkdirSync(join(root, "scripts"));
  writeFileSync(join(root, "scripts", "app.js"), "export const app = globalThis.comfyAPI.app;\n");
  writeFileSync(join(root, "scripts", "api.js"), "export const api = globalThis.comfyAPI.api;\n");
  const packDir = join(root, "extensions", pack);
  cpSync(JS_DIR, packDir, { recursive: true });
  return listScripts(packDir).map((f) => pathToFileURL(join(packDir, f)).href);
}

class FakeElement {
  constructor(tagName) {
    this.tagName = tagName.toUpperCase();
    this.style = {};
    this.children = [];
    this.listeners = {};
    this.textContent = "";
    this.title = "";
  }

  append(...children) {
    this.children.push(...children);
  }

  addEventListener(type, listener) {
    (this.listeners[type] ??= []).push(listener);
  }

  dispatch(type) {
    for (const listener of this.listeners[type] ?? []) listener({ type, target: this });
  }
}

export const fakeDocument = { createElement: (tag) => new FakeElement(tag) };

/** The frontend objects the extension imports; `extensions` collects what it registers. */
export function fakeComfy() {
  const extensions = [];
  return {
    extensions,
    app: { registerExtension: (ext) => extensions.push(ext), nodeOutputs: {} },
    api: { apiURL: (route) => `/base/api${route}` },
  };
}

const WIDGET_HEIGHT = 20;

/** A LiteGraph-like node: widgets in creation order, size, properties, serialization rules. */
export class FakeNode {
  constructor() {
    this.id = 7;
    this.size = [300, 100];
    this.properties = {};
    this.widgets = [];
  }

  addWidget(type, name, value, callback, options = {}) {
    const widget = { type, name, value, callback, options };
    this.widgets.push(widget);
    return widget;
  }

  addDOMWidget(name, type, element, options = {}) {
    const widget = { type, name, element, options: { hideOnZoom: true, ...options }, value: undefined };
    this.widgets.push(widget);
    return widget;
  }

  computeSize() {
    const height = this.widgets.reduce((sum, w) => sum + (w.options?.getMinHeight?.() ?? WIDGET_HEIGHT), 30);
    return [200, height];
  }

  setSize(size) {
    this.size = size;
  }

  setDirtyCanvas() {}

  /** LiteGraph's LGraphNode.serialize: widgets_values written by widget index. */
  serializeWidgets() {
    const values = [];
    for (const [i, w] of this.widgets.entries()) if (w.serialize !== false) values[i] = w.value;
    return JSON.parse(JSON.stringify(values));
  }

  /** LiteGraph's LGraphNode.configure: widgets_values read back in order, skipping non-serialized widgets. */
  configure({ widgets_values: values, properties }) {
    Object.assign(this.properties, properties);
    let i = 0;
    for (const w of this.widgets) if (w.serialize !== false && i < values.length) w.value = values[i++];
    this.onConfigure?.({ widgets_values: values });
  }

  /** graphToPrompt: the API prompt's widget inputs. */
  promptInputs() {
    return Object.fromEntries(this.widgets.filter((w) => w.options?.serialize !== false).map((w) => [w.name, w.value]));
  }

  /** What the canvas does when the user sets a widget: value, then its callback. */
  edit(name, value) {
    const widget = this.widgets.find((w) => w.name === name);
    widget.value = value;
    widget.callback?.call(widget, value);
  }

  value(name) {
    return this.widgets.find((w) => w.name === name)?.value;
  }
}

/** A node class for `spec` = [[type, name, value, options], ...] (the widgets ComfyUI builds from the node def). */
export function nodeClass(spec) {
  return class extends FakeNode {
    constructor() {
      super();
      for (const [type, name, value, options] of spec) this.addWidget(type, name, value, undefined, options);
    }
  };
}
