"""The Markdown report as one self-contained HTML file (images inlined), to mail or attach."""

from __future__ import annotations

import base64
import html as html_lib
import re
from pathlib import Path

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3}code{background:#f6f6f6;padding:0 .2em}pre{background:#f6f6f6;padding:1em;overflow:auto}
img{max-width:100%}"""


def html(markdown_text: str, folder: Path, title: str) -> str:
    """The Markdown report as one HTML file: images inlined as data URIs, so it can be mailed or attached."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text)

    def inline(match: re.Match) -> str:
        path = folder / html_lib.unescape(match.group(1))
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html_lib.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n{body}</body></html>\n"
    )
