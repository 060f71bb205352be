"""Build the companion's static site: `make site` -> build/site/ (open build/site/index.html).

Offline, from the committed files: nothing is executed and nothing is downloaded.

1. Stage a Sphinx source tree in build/site-src/ with the repository's layout: README.md as index.md
   (the home page, with the navigation of toc.yml appended as hidden toctrees), the notebooks and
   reports of toc.yml as they are, conf.py and _static/ from this folder.
2. Follow the links of every staged page (markdown links, reference definitions and the src/href of
   inline HTML, outside code): a linked .md or .ipynb becomes a page too (an orphan, outside the
   navigation); README.md is index.md; a linked directory gets a generated listing page
   (`dir/index.md`); any other linked file (a figure, json, LICENSE) is copied to _extra/ under its
   repository path, which Sphinx copies into the output as it is, and its markdown links are written
   `site:<path>` (conf.py renders them as plain relative links). Since the output keeps the
   repository's layout, every repository-relative link and image resolves unchanged. A link to a
   missing file, or out of the repository, is an error.
3. sphinx-build -E -W: every page is read again on each build (about 10 s in all), so that a warning
   (an unresolved anchor, say) fails every build, not only the first one after a change.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

PAGE_SUFFIXES = (".md", ".ipynb")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# [text](target "title") with one level of nested brackets in the text; <target> form too.
_MD_LINK = re.compile(r"(!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\()\s*(<[^>\n]*>|[^)\s]+)((?:\s+\"[^\"]*\")?\s*\))")
_REF_DEF = re.compile(r"^( {0,3}\[[^\]]+\]:\s*)(\S+)", re.M)
_HTML_ATTR = re.compile(r"(<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*)([\"'])([^\"']*)\2", re.I)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)


class SiteError(Exception):
    pass


def _code_ranges(text: str) -> list[tuple[int, int]]:
    """Character ranges of fenced code blocks and inline code spans (links there are not links)."""
    ranges, pos, fence, start = [], 0, None, 0
    for line in text.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None and m:
            fence, start = m.group(1), pos
        elif fence is not None and m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
            ranges.append((start, pos + len(line)))
            fence = None
        pos += len(line)
    if fence is not None:
        ranges.append((start, pos))
    outside = _complement(ranges, len(text))
    for a, b in outside:
        for m in _CODE_SPAN.finditer(text, a, b):
            ranges.append(m.span())
    return sorted(ranges)


def _complement(ranges, n):
    out, pos = [], 0
    for a, b in sorted(ranges):
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < n:
        out.append((pos, n))
    return out


def _inside(ranges, i: int) -> bool:
    return any(a <= i < b for a, b in ranges)


class Stager:
    def __init__(self, src: Path, toc: dict):
        self.src = src
        self.toc = toc
        self.home = toc["home"]
        self.outputs: dict[str, bytes | Path] = {}  # staged path -> content or file to copy
        self.pages: dict[str, str] = {}  # repository path -> staged path
        self.queue: list[str] = []
        self.errors: list[str] = []
        self.nav: list[tuple[str, list[str]]] = []

    # -- pages ------------------------------------------------------------------------------
    def staged_path(self, repo_path: str) -> str:
        if repo_path == self.home:
            return "index.md"
        return repo_path

    def add_page(self, repo_path: str) -> str:
        if repo_path not in self.pages:
            self.pages[repo_path] = self.staged_path(repo_path)
            self.queue.append(repo_path)
        return self.pages[repo_path]

    def add_file(self, repo_path: str) -> None:
        self.outputs["_extra/" + repo_path] = REPO / repo_path

    def add_directory(self, repo_dir: str) -> str:
        """A generated page listing a linked directory's files; returns its staged path."""
        staged = posixpath.join(repo_dir, "index.md")
        if staged in self.outputs or (REPO / staged).exists():
            return staged
        entries = sorted(p for p in (REPO / repo_dir).iterdir() if not p.name.startswith("."))
        lines = ["---", "orphan: true", "---", "", f"# `{repo_dir}/`", ""]
        for p in entries:
            rel = posixpath.join(repo_dir, p.name)
            if p.is_dir():
                lines.append(f"- `{p.name}/`")
            elif p.suffix in PAGE_SUFFIXES:
                self.add_page(rel)
                target = posixpath.relpath(self.staged_path(rel), repo_dir)
                lines.append(f"- [`{p.name}`]({target})")
            else:
                self.add_file(rel)
                lines.append(f"- [`{p.name}`](site:{p.name})")
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    lines.append(f"\n  <img src=\"{p.name}\" alt=\"{p.name}\" width=\"640\">\n")
        self.outputs[staged] = ("\n".join(lines) + "\n").encode()
        return staged

    # -- links ------------------------------------------------------------------------------
    def rewrite_target(self, target: str, page: str, kind: str) -> str:
        """The link `target` of repository page `page`, as it must read in the staged source.

        kind: "md" (a markdown link or reference definition), "image" (a markdown image: Sphinx
        copies it from the staged sources into _images/) or "html" (an inline HTML attribute).
        """
        if kind != "html" and target.startswith("<") and target.endswith(">"):
            target = target[1:-1]
        if not target or target.startswith("#") or _SCHEME.match(target) or target.startswith("/"):
            if target.startswith("/"):
                self.errors.append(f"{page}: absolute path link {target!r}")
            return target
        path, _, fragment = target.partition("#")
        frag = "#" + fragment if fragment else ""
        base = posixpath.dirname(page)
        resolved = posixpath.normpath(posixpath.join(base, unquote(path)))
        if resolved.startswith("../") or resolved == "..":
            self.errors.append(f"{page}: link {target!r} leaves the repository")
            return target
        full = REPO / resolved
        if not full.exists():
            self.errors.append(f"{page}: link {target!r} to a missing file ({resolved})")
            return target
        here = posixpath.dirname(self.staged_path(page)) or "."
        if full.is_dir():
            if resolved == ".":
                self.errors.append(f"{page}: link {target!r} to the repository root")
                return target
            staged = self.add_directory(resolved)
            rel = posixpath.relpath(staged, here)
            return (rel if kind == "md" else rel[: -len(".md")] + ".html") + frag
        if full.suffix in PAGE_SUFFIXES:
            staged = self.add_page(resolved)
            rel = posixpath.relpath(staged, here)
            return (rel if kind == "md" else posixpath.splitext(rel)[0] + ".html") + frag
        rel = posixpath.relpath(resolved, here)
        if kind == "image":
            self.outputs[resolved] = full
            return rel
        self.add_file(resolved)
        return ("site:" + rel if kind == "md" else rel) + frag

    def rewrite_markdown(self, text: str, page: str) -> str:
        code = _code_ranges(text)
        out, pos = [], 0
        spans = []
        for m in _MD_LINK.finditer(text):
            if not _inside(code, m.start()):
                kind = "image" if m.group(1).startswith("!") else "md"
                spans.append((m.start(2), m.end(2), m.group(2), kind))
        for m in _REF_DEF.finditer(text):
            if not _inside(code, m.start()):
                spans.append((m.start(2), m.end(2), m.group(2), "md"))
        for m in _HTML_ATTR.finditer(text):
            if not _inside(code, m.start()):
                spans.append((m.start(3), m.end(3), m.group(3), "html"))
        for a, b, target, kind in sorted(spans):
            if a < pos:
                continue
            out.append(text[pos:a])
            out.append(self.rewrite_target(target, page, kind))
            pos = b
        out.append(text[pos:])
        return "".join(out)

    # -- staging ----------------------------------------------------------------------------
    def stage_page(self, repo_path: str, orphan: bool) -> None:
        staged = self.pages[repo_path]
        source = (REPO / repo_path).read_text(encoding="utf-8")
        if repo_path.endswith(".ipynb"):
            nb = json.loads(source)
            for cell in nb["cells"]:
                if cell["cell_type"] == "markdown":
                    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                    cell["source"] = self.rewrite_markdown(text, repo_path)
            # Stored ipywidgets state (tqdm bars) is never rendered here: conf.py loads no widget
            # JavaScript and shows the outputs' text fallback, so the state is dead weight.
            nb["metadata"].pop("widgets", None)
            if orphan:
                nb["metadata"]["orphan"] = True
            self.outputs[staged] = (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()
            return
        text = self.rewrite_markdown(source, repo_path)
        if staged == "index.md":
            text = text.rstrip("\n") + "\n" + self.toctrees()
        elif orphan:
            text = "---\norphan: true\n---\n\n" + text
        self.outputs[staged] = text.encode()

    def toctrees(self) -> str:
        blocks = []
        for caption, pages in self.nav:
            entries = "\n".join(posixpath.splitext(self.staged_path(p))[0] for p in pages)
            blocks.append(f"\n```{{toctree}}\n:hidden:\n:caption: {caption}\n\n{entries}\n```\n")
        return "".join(blocks)

    def collect(self) -> None:
        in_nav = set()
        for part in self.toc["parts"]:
            pages = []
            for pattern in part["pages"]:
                matches = sorted(
                    Path(p).relative_to(REPO).as_posix() for p in glob.glob(str(REPO / pattern))
                )
                if not matches:
                    self.errors.append(f"toc.yml: {pattern!r} matches no file")
                pages.extend(matches)
            self.nav.append((part["caption"], pages))
            in_nav.update(pages)
        self.add_page(self.home)
        for _, pages in self.nav:
            for p in pages:
                self.add_page(p)
        while self.queue:
            page = self.queue.pop(0)
            self.stage_page(page, orphan=page != self.home and page not in in_nav)
        self.outputs["conf.py"] = HERE / "conf.py"
        for p in sorted((HERE / "_static").rglob("*")):
            if p.is_file():
                self.outputs["_static/" + p.relative_to(HERE / "_static").as_posix()] = p

    def write(self) -> int:
        """Write the staged tree (files whose bytes are unchanged are left alone); remove stale files."""
        changed = 0
        for rel, content in self.outputs.items():
            dest = self.src / rel
            data = content.read_bytes() if isinstance(content, Path) else content
            if dest.is_file() and dest.read_bytes() == data:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            changed += 1
        keep = {str(self.src / rel) for rel in self.outputs}
        for root, dirs, files in os.walk(self.src, topdown=False):
            for f in files:
                path = os.path.join(root, f)
                if path not in keep:
                    os.remove(path)
                    changed += 1
            if root != str(self.src) and not os.listdir(root):
                os.rmdir(root)
        return changed


def stage(src: Path) -> Stager:
    toc = yaml.safe_load((HERE / "toc.yml").read_text())
    stager = Stager(src, toc)
    stager.collect()
    if stager.errors:
        raise SiteError("broken links or pages:\n  " + "\n  ".join(stager.errors))
    stager.write()
    return stager


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "build" / "site"), help="HTML output folder")
    ap.add_argument("--src", default=str(REPO / "build" / "site-src"), help="staged source folder")
    ap.add_argument("--fresh", action="store_true",
                    help="start from nothing: remove the output, staged sources and Sphinx's cache first")
    args = ap.parse_args(argv)
    out, src = Path(args.out), Path(args.src)
    doctrees = src.parent / (src.name + "-doctrees")
    if args.fresh:
        for d in (out, src, doctrees):
            shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        stager = stage(src)
    except SiteError as e:
        print(f"site: {e}", file=sys.stderr)
        return 1
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-W", "--keep-going", "-q",
           "-d", str(doctrees), str(src), str(out)]
    rc = subprocess.call(cmd, cwd=src)
    if rc == 0:
        print(f"site: {len(stager.pages)} pages in {out} ({time.perf_counter() - t0:.0f} s); "
              f"open {out / 'index.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
