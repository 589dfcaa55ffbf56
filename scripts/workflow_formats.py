"""The two file formats of a shipped workflow (``scripts/build_workflows.py``): ComfyUI's API format (``api_format``)
and its UI format (``ui_format``: nodes, links, the shared PrimitiveNodes and the Note nodes). Widget order, socket
types and output types are read from the node classes themselves."""

from __future__ import annotations

from workflow_graph import Link, Model, Node, Shared, Size, Workflow

from ltx2_nodes.cli.core_nodes import CORE_NODE_CLASSES
from ltx2_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
CLASSES = {**CORE_NODE_CLASSES, **NODE_CLASS_MAPPINGS}


def _value(value, names: dict, size: dict, shared: dict):
    if isinstance(value, Model):
        return names[value.key]
    if isinstance(value, Shared):
        return shared[value.name][1]
    if isinstance(value, Size):
        return size[value.key]
    return value


def _declared(node_type: str) -> list[tuple[str, object, dict, str]]:
    """(name, type, options, section) of a class's inputs in serialisation order (required, optional)."""
    declared = CLASSES[node_type].INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, info in (declared.get(section) or {}).items():
            info = info if isinstance(info, (tuple, list)) else (info,)
            out.append((name, info[0], info[1] if len(info) > 1 and isinstance(info[1], dict) else {}, section))
    return out


def is_widget(kind, options: dict) -> bool:
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def output_types(node_type: str) -> tuple:
    return tuple(CLASSES[node_type].RETURN_TYPES)


def output_names(node_type: str) -> tuple:
    cls = CLASSES[node_type]
    return tuple(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES)


def title_of(node: Node) -> str:
    return node.title or NODE_DISPLAY_NAME_MAPPINGS.get(node.type, node.type)


def api_format(workflow: Workflow, names: dict, size: dict) -> dict:
    prompt = {}
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        inputs = {}
        for name, value in node.inputs.items():
            inputs[name] = [str(value.node), value.slot] if isinstance(value, Link) else \
                _value(value, names, size, workflow.shared)
        prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": title_of(node)}}
    return prompt


def _order(workflow: Workflow) -> dict[int, int]:
    """Execution order index per node (the UI's ``order``)."""
    deps = {n.id: {v.node for v in n.inputs.values() if isinstance(v, Link)} for n in workflow.nodes}
    order, done = {}, set()
    while len(done) < len(deps):
        ready = sorted(n for n in deps if n not in done and deps[n] <= done)
        for n in ready:
            order[n] = len(order)
            done.add(n)
    return order


def _size(widgets: int, sockets: int, wide: bool = False) -> list[int]:
    return [400 if wide else 320, 46 + 24 * max(widgets, 0) + 22 * max(sockets, 0)]


def ui_format(workflow: Workflow, names: dict, size: dict) -> dict:
    links, nodes = [], []
    primitives = {name: 100 + i for i, name in enumerate(workflow.shared)}
    primitive_links: dict[str, list[int]] = {name: [] for name in workflow.shared}
    outgoing: dict[tuple[int, int], list[int]] = {}
    order = _order(workflow)
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        declared = _declared(node.type)
        inputs, widgets = [], []
        for name, kind, options, section in declared:
            value = node.inputs.get(name)
            if is_widget(kind, options):
                widgets.append(_value(value, names, size, workflow.shared) if value is not None
                               else options.get("default", kind[0] if isinstance(kind, list) and kind else None))
                if options.get("control_after_generate"):
                    widgets.append("fixed")
                if isinstance(value, Shared):
                    link_id = len(links) + 1
                    inputs.append({"name": name, "type": kind, "widget": {"name": name}, "link": link_id})
                    links.append([link_id, primitives[value.name], 0, node.id, len(inputs) - 1, kind])
                    primitive_links[value.name].append(link_id)
                continue
            entry = {"name": name, "type": kind, "link": None}
            if section == "optional":
                entry["shape"] = 7  # the frontend draws optional sockets hollow
            if isinstance(value, Link):
                link_id = len(links) + 1
                entry["link"] = link_id
                source = next(n for n in workflow.nodes if n.id == value.node)
                links.append([link_id, value.node, value.slot, node.id, len(inputs),
                              output_types(source.type)[value.slot]])
                outgoing.setdefault((value.node, value.slot), []).append(link_id)
            inputs.append(entry)
        if node.type == "LoadImage":
            widgets.append("image")  # the upload button's value, as the frontend saves it
        nodes.append({"id": node.id, "type": node.type, "pos": list(node.pos),
                      "size": _size(len(widgets), len(inputs), node.type in ("LTX2GemmaEncode", "LTX2Sampler")),
                      "flags": {}, "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": [],
                      "properties": {"Node name for S&R": node.type}, "widgets_values": widgets,
                      **({"title": node.title} if node.title else {})})
    for entry, node in zip(nodes, sorted(workflow.nodes, key=lambda n: n.id)):
        entry["outputs"] = [{"name": name, "type": kind, "links": outgoing.get((node.id, slot), []), "slot_index": slot}
                            for slot, (name, kind) in enumerate(zip(output_names(node.type), output_types(node.type)))]
    for i, (name, (kind, value)) in enumerate(workflow.shared.items()):
        widgets = [value, "fixed"] if name == "seed" else [value]
        nodes.append({"id": primitives[name], "type": "PrimitiveNode", "pos": [40, 1400 + 120 * i], "size": [260, 82],
                      "flags": {}, "order": len(order) + i, "mode": 0, "inputs": [],
                      "outputs": [{"name": kind, "type": kind, "links": primitive_links[name], "slot_index": 0,
                                   "widget": {"name": name}}],
                      "title": name, "properties": {"Run widget replace on values": False}, "widgets_values": widgets})
    for i, (text, pos, box) in enumerate(workflow.notes):
        nodes.append({"id": 200 + i, "type": "Note", "pos": list(pos), "size": list(box), "flags": {},
                      "order": len(order) + len(workflow.shared) + i, "mode": 0, "inputs": [], "outputs": [],
                      "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#653"})
    nodes.sort(key=lambda n: n["id"])
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [0, 0]},
                                                 "ltx2_nodes": {"workflow": workflow.name,
                                                                "description": workflow.description}},
            "version": 0.4}
