"""A flame graph as a self-contained SVG drawn from collapsed stacks: no script, no external reference, each
frame a rectangle coloured by its category with a <title> tooltip, so it can be inlined in the report under
its Content-Security-Policy or opened on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from bench.server_time.rules import Classifier
from bench.server_time.stacks import Frame, Stack

WIDTH = 1000.0
ROW = 16
FONT = 11
CHAR_PX = 6.6  # an 11 px sans-serif character, on average
MIN_PX = 0.5  # narrower frames are left out (their samples stay in their parent's width)
COLOURS = {"model": "#4e9a5b", "serialisation": "#d9a441", "http": "#5b8fd0", "framework": "#c8623f",
           "other": "#9a86c2", None: "#b8b8b8"}


@dataclass
class Node:
    frame: Frame
    count: int = 0
    children: dict[Frame, Node] = field(default_factory=dict)


def tree(stacks: list[Stack]) -> Node:
    root = Node(Frame("all"))
    for stack in stacks:
        root.count += stack.count
        node = root
        for frame in stack.frames:
            node = node.children.setdefault(frame, Node(frame))
            node.count += stack.count
    return root


def _depth(node: Node, px_per_sample: float) -> int:
    wide = [child for child in node.children.values() if child.count * px_per_sample >= MIN_PX]
    return 1 + max((_depth(child, px_per_sample) for child in wide), default=0)


def _fitted(text: str, width: float) -> str:
    room = int((width - 6) / CHAR_PX)
    if room < 3:
        return ""
    return text if len(text) <= room else text[:room - 2] + ".."


def render_svg(stacks: list[Stack], classifier: Classifier, title: str = "") -> str:
    """The flame graph (root at the bottom), frames coloured by the category their own samples fall in."""
    root = tree(stacks)
    total = max(root.count, 1)
    px = WIDTH / total
    depth = _depth(root, px)
    top = 24 if title else 4
    height = top + depth * ROW + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="flamegraph" width="{WIDTH:.0f}" height="{height}" '
             f'viewBox="0 0 {WIDTH:.0f} {height}" font-family="sans-serif" font-size="{FONT}">',
             '<rect width="100%" height="100%" fill="#ffffff"/>']
    if title:
        parts.append(f'<text x="{WIDTH / 2:.0f}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>')

    def draw(node: Node, x: float, level: int, category: str | None) -> None:
        width = node.count * px
        y = height - 4 - (level + 1) * ROW
        own = classifier.frame(node.frame) if level else None
        category = own or category
        label = "all samples" if not level else node.frame.label
        share = 100.0 * node.count / total
        tip = escape(f"{label}: {node.count} samples ({share:.1f}%), {category or 'unclassified'}")
        parts.append(f'<g><title>{tip}</title><rect x="{x:.2f}" y="{y}" width="{max(width - 0.3, 0.1):.2f}" '
                     f'height="{ROW - 1}" fill="{COLOURS.get(category, COLOURS[None])}" rx="1"/>')
        text = _fitted(label if level else f"all ({node.count} samples)", width)
        if text:
            parts.append(f'<text x="{x + 3:.2f}" y="{y + ROW - 4}">{escape(text)}</text>')
        parts.append("</g>")
        for child in sorted(node.children.values(), key=lambda n: n.frame.label):
            if child.count * px >= MIN_PX:
                draw(child, x, level + 1, category)
            x += child.count * px

    draw(root, 0.0, 0, None)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
