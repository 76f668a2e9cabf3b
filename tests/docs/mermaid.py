"""Finding the Mermaid blocks of a markdown file and rendering them with mermaid-cli.

mermaid-cli (`mmdc`) is installed by `npm ci` in tools/mermaid (PUPPETEER_SKIP_DOWNLOAD=1, so
puppeteer fetches no browser of its own) and drives Debian's Chromium through
tools/mermaid/puppeteer-config.json. Given a markdown file, mmdc renders its blocks in order and
stops at the first one that does not parse, so `render_errors` puts every block into one file
and one call, names the failed block by the SVGs written before it, and calls again with the
blocks after it: one call when all parse, one more per broken block.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "mermaid"
PUPPETEER_CONFIG = TOOLS / "puppeteer-config.json"
CHROMIUM = Path("/usr/bin/chromium")

_FENCE_OPEN = re.compile(r"^(\s*)```mermaid\s*$")
_FENCE_CLOSE = re.compile(r"^\s*```\s*$")
# Rendered first in every call: if even this fails, mmdc or the browser is broken, not a block.
_SENTINEL = "flowchart LR\n    sentinel --> ok"
# `a --> b: label`: the label is everything after the first colon.
_STATE_EDGE = re.compile(r"^\s*\S+\s*-->\s*\S+?\s*:(?P<label>.*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # line number of the opening fence, 1-based
    text: str

    def where(self, offset: int = 0) -> str:
        """`file:line`, the line of the block's `offset`-th line (1 = its first)."""
        name = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{name}:{self.line + offset}"


def mermaid_blocks(path: Path) -> list[Block]:
    """The ```mermaid blocks of a markdown file, dedented to their fence."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        indent = len(opened.group(1))
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _FENCE_CLOSE.match(lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}:{i + 1}: a mermaid block is never closed")
        blocks.append(Block(path, i + 1, "\n".join(body)))
        i = j + 1
    return blocks


def portability_errors(blocks: list[Block]) -> list[str]:
    """What Mermaid 11 accepts but older renderers (still used by some viewers) reject: a state
    diagram transition whose label holds a second colon (`a --> b: text: more`)."""
    errors: list[str] = []
    for block in blocks:
        lines = block.text.splitlines()
        if not lines or not lines[0].strip().startswith("stateDiagram"):
            continue
        for n, line in enumerate(lines, start=1):
            edge = _STATE_EDGE.match(line)
            if edge and ":" in edge.group("label"):
                errors.append(f"{block.where(n)}: a second colon in a state transition's label "
                              f"(older Mermaid renderers reject it): {line.strip()}")
    return errors


def mmdc_path() -> Path | None:
    local = TOOLS / "node_modules" / ".bin" / "mmdc"
    if local.exists():
        return local
    found = shutil.which("mmdc")
    return Path(found) if found else None


class RendererBroken(RuntimeError):
    """mmdc could not render even the sentinel diagram: the tool, not a block, is at fault."""


def _first_error(stderr: str) -> tuple[str, int | None]:
    """The error's text (a few lines) and the line in the block it names, if any."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "rror" in line), 0)
    text = "\n".join(line[:300] for line in lines[start:start + 4])
    found = re.search(r"on line (\d+)", text)
    return text, int(found.group(1)) if found else None


def render_errors(blocks: list[Block], *, mmdc: Path, timeout: float = 120.0) -> list[str]:
    """Render every block with mmdc; one message per block that fails, naming its line."""
    errors: list[str] = []
    remaining = list(blocks)
    while remaining:
        with tempfile.TemporaryDirectory(prefix="mermaid-") as tmp:
            source = Path(tmp) / "blocks.md"
            source.write_text("".join(f"```mermaid\n{text}\n```\n\n" for text in
                                      [_SENTINEL, *(b.text for b in remaining)]),
                              encoding="utf-8")
            done = subprocess.run(
                # --jobs 1: in order, so the error printed is the first missing SVG's.
            [str(mmdc), "--quiet", "--jobs", "1", "--puppeteerConfigFile", str(PUPPETEER_CONFIG),
                 "--input", str(source), "--output", str(Path(tmp) / "out.md")],
                capture_output=True, text=True, timeout=timeout, cwd=tmp)
            # out-1.svg is the sentinel, out-(k+2).svg is remaining[k]. mmdc stops at the first
            # failure, though a block after it may still be written while it shuts down.
            written = {int(svg.stem.removeprefix("out-")) for svg in Path(tmp).glob("out-*.svg")}
        first_missing = next(n for n in range(1, len(remaining) + 3) if n not in written)
        if done.returncode == 0 and first_missing == len(remaining) + 2:
            break
        if first_missing == 1:
            raise RendererBroken(f"mmdc failed on a trivial diagram (exit {done.returncode}):\n"
                                 f"{done.stdout}{done.stderr}")
        if first_missing == len(remaining) + 2:  # every SVG written, yet a failure
            raise RendererBroken(f"mmdc exited {done.returncode}:\n{done.stdout}{done.stderr}")
        failed = remaining[first_missing - 2]
        message, line = _first_error(done.stderr or done.stdout)
        # A parser that ran off the end (an unclosed bracket) names a line past the block.
        where = failed.where(min(line, len(failed.text.splitlines()))) if line else failed.where()
        errors.append(f"{where} (block at line {failed.line}): {message}")
        remaining = remaining[first_missing - 1:]
    return errors
