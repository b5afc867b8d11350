"""One document, two renderings: a report is a list of blocks rendered to Markdown and to a
self-contained HTML page (images embedded). All text goes through html.escape in HTML,
so dataset-derived strings (model names, error messages, prompts) render as text.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
from pathlib import Path
from urllib.parse import quote

# blocks: ("h1"|"h2"|"p"|"note", text) | ("table", headers, rows) | ("img", path, alt); a "p" and a
# table cell may also be a list of pieces, text and Links


@dataclasses.dataclass(frozen=True)
class Link:
    """Another page of the same set: `target` is its path without the suffix, relative to this page;
    the Markdown links its .md, the HTML its .html."""

    text: str
    target: str


def _md(content) -> str:
    pieces = content if isinstance(content, list) else [content]
    return "".join(f"[{p.text}]({quote(p.target)}.md)" if isinstance(p, Link) else str(p) for p in pieces)


def _html(content) -> str:
    pieces = content if isinstance(content, list) else [content]
    e = html.escape
    return "".join(
        f'<a href="{e(quote(p.target))}.html">{e(p.text)}</a>' if isinstance(p, Link) else e(str(p)) for p in pieces
    )


def fmt(value, digits: int = 0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return text + unit


def model_text(model: str | None) -> str:
    """A model as a report names it: a local checkpoint by its folder's name (the machine's path
    stays in capacity.json), a hub id as it is."""
    if not model:
        return "–"
    local = Path(model).is_absolute() or model.startswith(".")  # a hub id is org/name, never ./ or /
    return f"{Path(model).name} (a local checkpoint)" if local else model


def gib(value) -> str:
    """Memory in GiB; MiB below 0.1 GiB so a small model does not read as zero."""
    if value is None:
        return "–"
    return f"{value:,.2f} GiB" if value >= 0.1 else f"{value * 1024:,.1f} MiB"


def usd(value) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if value >= 0.1 else f"${value:,.4f}"


def pct(value, digits: int = 0, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:{'+' if signed else ''}.{digits}f} %"


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append(f"# {block[1]}\n")
        elif kind == "h2":
            out.append(f"## {block[1]}\n")
        elif kind == "p":
            out.append(_md(block[1]) + "\n")
        elif kind == "note":
            out.append("> " + block[1] + "\n")
        elif kind == "table":
            headers, rows = block[1], block[2]
            out.append("| " + " | ".join(headers) + " |")
            out.append("|" + "|".join("---" for _ in headers) + "|")
            for row in rows:
                out.append("| " + " | ".join(_md(c).replace("|", "\\|") for c in row) + " |")
            out.append("")
        elif kind == "img":
            out.append(f"![{block[2]}]({Path(block[1]).name})\n")
    return "\n".join(out)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#1b1f24}table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #d0d7de;padding:.3em .6em;
text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}blockquote{color:#57606a;
border-left:3px solid #d0d7de;margin:0;padding-left:1em}img{max-width:100%}h1{font-size:1.6em}h2{font-size:1.25em;
border-bottom:1px solid #d0d7de;padding-bottom:.2em}"""


def to_html(blocks: list[tuple], title: str) -> str:
    e = html.escape
    out = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>"
        f"<style>{CSS}</style></head><body>"
    ]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_html(block[1])}</p>")
        elif kind == "note":
            out.append(f"<blockquote>{e(block[1])}</blockquote>")
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in block[1]) + "</tr>")
            for row in block[2]:
                out.append("<tr>" + "".join(f"<td>{_html(c)}</td>" for c in row) + "</tr>")
            out.append("</table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode()
            out.append(f'<p><img alt="{e(block[2])}" src="data:image/png;base64,{data}"></p>')
    out.append("</body></html>")
    return "\n".join(out)


def write(blocks: list[tuple], directory: Path, stem: str, title: str) -> tuple[Path, Path]:
    md = directory / f"{stem}.md"
    page = directory / f"{stem}.html"
    md.write_text(to_markdown(blocks))
    page.write_text(to_html(blocks, title))
    return md, page
