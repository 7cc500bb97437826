"""Draws docs/architecture.svg: the parts (process, runtime, plugin manager, connector, broker) and the
messages between them when a connector is loaded, a Listen acknowledges after the process accepted, and
a Send reports one result per document. The picture is made from this file:

    python docs/architecture.py          # rewrites docs/architecture.svg

tests/test_architecture.py fails when the committed SVG is not what this draws.
"""

from __future__ import annotations

import sys
from html import escape
from pathlib import Path

#: The columns, left to right: (title, what it is, in this project).
PARTS = [
    ("Process", "stdout, a sink, a runtime's step", "JSON lines, --results"),
    ("Runtime", "the harness: CLI, Runtime", "connector/harness"),
    ("Plugin manager", "the SDK: hooks, manifests,", "schemas, retry (connector/sdk)"),
    ("Connector", "hooks: send, listen, check", "connector/mqtt (paho-mqtt)"),
    ("Broker", "Mosquitto, NATS, RabbitMQ,", "the embedded amqtt broker"),
]
#: The messages, one a line: "FROM TO LABEL" (column numbers; "FROM..TO" for an answer, drawn dashed), or
#: "# TITLE" for a section.
STEPS = """
# Loading: by id, through the entry point group connector_sdk.connectors
1 2 load connector 'mqtt'
2 3 connector_manifest(), hooks
2..1 manifest: schemas give flags, checks
# Listen: acknowledge after accept
4 3 1  PUBLISH (QoS 1 or 2)
3 1 2  listener.submit(document)
1 0 3  write the JSON line, flushed
0..1 4  accepted (or failed: retry, dead letter)
1..3 5  SUCCESS
3 4 6  PUBACK / PUBREC: only now
# Send: one result per document
0 1 document (a line, a file)
1 3 connector_send(documents)
3 4 PUBLISH (QoS 1 or 2)
4..3 PUBACK / PUBCOMP
3..1 SUCCESS, APPLICATION_ERROR or FAILURE
1..0 result line, exit code
"""
COLUMN, LEFT, TOP, BOX_W, BOX_H, ROW, TITLE_ROW = 200, 20, 20, 176, 62, 34, 36
FONT = "font-family='Helvetica, Arial, sans-serif'"


def _x(column: int) -> int:
    return LEFT + column * COLUMN + BOX_W // 2


def _text(x: float, y: float, text: str, size: int = 13, anchor: str = "middle", weight: str = "normal",
          fill: str = "#222") -> str:
    return (f"<text x='{x:g}' y='{y:g}' {FONT} font-size='{size}' text-anchor='{anchor}' "
            f"font-weight='{weight}' fill='{fill}'>{escape(text)}</text>")


def _boxes(bottom: int) -> list[str]:
    out = []
    for column, (title, line1, line2) in enumerate(PARTS):
        x = LEFT + column * COLUMN
        out.append(f"<line x1='{_x(column)}' y1='{TOP + BOX_H}' x2='{_x(column)}' y2='{bottom}' stroke='#999' "
                   "stroke-dasharray='4 4'/>")
        out.append(f"<rect x='{x}' y='{TOP}' width='{BOX_W}' height='{BOX_H}' rx='8' fill='#eef3fb' "
                   "stroke='#35608f' stroke-width='1.5'/>")
        out.append(_text(_x(column), TOP + 20, title, 15, weight="bold"))
        out.append(_text(_x(column), TOP + 38, line1, 11, fill="#444"))
        out.append(_text(_x(column), TOP + 53, line2, 11, fill="#444"))
    return out


def _arrow(y: int, start: int, end: int, label: str, dashed: bool) -> list[str]:
    x1, x2 = _x(start), _x(end)
    tip = x2 - 8 if x2 > x1 else x2 + 8
    dash = " stroke-dasharray='6 4'" if dashed else ""
    colour = "#8a4b08" if dashed else "#1d4f91"
    return [f"<line x1='{x1}' y1='{y}' x2='{tip}' y2='{y}' stroke='{colour}' stroke-width='1.6'{dash}/>",
            f"<polygon points='{x2},{y} {tip},{y - 5} {tip},{y + 5}' fill='{colour}'/>",
            _text((x1 + x2) / 2, y - 6, label, 12)]


def draw() -> str:
    body: list[str] = []
    y = TOP + BOX_H + 14
    for step in STEPS.strip().splitlines():
        if step.startswith("# "):
            y += TITLE_ROW - ROW // 2
            body.append(_text(LEFT, y, step[2:], 13, anchor="start", weight="bold", fill="#35608f"))
            y += ROW // 2
            continue
        y += ROW
        if ".." in step.split(" ", 1)[0]:  # an answer
            ends, label = step.split(" ", 1)
            start, end = ends.split("..")
            body += _arrow(y, int(start), int(end), label, True)
        else:
            start, end, label = step.split(" ", 2)
            body += _arrow(y, int(start), int(end), label, False)
    height = y + 24
    width = LEFT * 2 + COLUMN * (len(PARTS) - 1) + BOX_W
    head = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'>")
    title = "<title>mqtt-connector: the parts and the acknowledge-after-accept flow</title>"
    background = f"<rect width='{width}' height='{height}' fill='white'/>"
    return "\n".join([head, title, background, *_boxes(height - 10), *body, "</svg>"]) + "\n"


SVG = Path(__file__).with_suffix(".svg")

if __name__ == "__main__":
    SVG.write_text(draw(), encoding="utf-8")
    sys.stdout.write(f"wrote {SVG}\n")
