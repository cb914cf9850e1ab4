"""A flame graph from a run folder, reduced to what our renderer draws before the report inlines it.

The SVG is inlined (not an <img>) so that each frame's <title> shows as a tooltip; inlined markup from a
file is as trusted as the file, and a run folder travels (CI artifacts, shared reports). So it is parsed
and rebuilt from an allow-list: the elements and attributes bench.server_time.flamegraph writes, values that
are numbers, colours or plain words; any script, event handler, link, style or reference is dropped, and a
file that does not parse is not shown.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from xml.etree.ElementTree import Element

from markupsafe import Markup, escape

SVG_NS = "http://www.w3.org/2000/svg"
ELEMENTS = {"svg", "g", "title", "rect", "text"}
ATTRIBUTES = {"class", "width", "height", "viewBox", "font-family", "font-size", "x", "y", "rx", "fill",
              "text-anchor"}
SAFE_VALUE = re.compile(r"[#%.\w\s,-]*")  # numbers, colours, words: no url(), no quotes, no colon


def safe_svg(text: str) -> Markup | None:
    """The SVG rebuilt from the allow-list, or None when it is not one."""
    start = text.find("<svg")
    try:
        root = ElementTree.fromstring(text[start:] if start >= 0 else text)
    except ElementTree.ParseError:
        return None
    if _tag(root) != "svg":
        return None
    return Markup(_rebuild(root, top=True))


def _tag(element: Element) -> str:
    return element.tag.removeprefix(f"{{{SVG_NS}}}") if isinstance(element.tag, str) else ""


def _rebuild(element: Element, top: bool = False) -> str:
    tag = _tag(element)
    if tag not in ELEMENTS:
        return ""
    attributes = "".join(f' {name}="{escape(value)}"' for name, value in element.attrib.items()
                         if name in ATTRIBUTES and SAFE_VALUE.fullmatch(value))
    if top:
        attributes = f' xmlns="{SVG_NS}"' + attributes
    inner = str(escape(element.text or "")) + "".join(_rebuild(child) + str(escape(child.tail or ""))
                                                     for child in element)
    return f"<{tag}{attributes}>{inner}</{tag}>"
