"""Every relative link of the documentation leads somewhere: README.md, docs/*.md and the examples' READMEs.

A link `[text](path)` or `![alt](path)` must name a file or folder of the repository (relative to the page's
folder), and a `#anchor` — alone or after a `.md` path — a heading of that page, by GitHub's slugs. Links
inside code blocks and code spans are text, not links; http(s) and mailto links are not followed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)   # http:, https:, mailto:, …
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).*?\1")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("examples/*/README.md"))]


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if match and fence is None:
            fence = match.group(1)
        elif match and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            yield number, line


def links(line: str) -> list[str]:
    """The targets of a line's links; a code span is text, not a link."""
    return LINK.findall(CODE_SPAN.sub("", line))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower case, punctuation dropped, spaces → '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path, root: Path = ROOT) -> Iterator[str]:
    """`page:line target (why)` for each relative link of `page` that leads nowhere."""
    text = page.read_text(encoding="utf-8")
    for number, line in prose_lines(text):
        for target in links(line):
            if EXTERNAL.match(target):
                continue
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)}:{number} {target}"
            if not destination.exists():
                yield f"{where} (no such file)"
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                yield f"{where} (no heading #{anchor} in {destination.relative_to(root)})"


def test_every_relative_link_of_the_documentation_leads_to_a_file_and_heading():
    assert (ROOT / "docs").is_dir()
    broken = [problem for page in pages() for problem in broken_links(page)]
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)


def test_the_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {target.partition("#")[0] for _, line in prose_lines(readme) for target in links(line)}
    docs = [f"docs/{page.name}" for page in sorted((ROOT / "docs").glob("*.md"))]
    missing = [page for page in docs if page not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Deleting, archiving, and retrying a submission safely", "deleting-archiving-and-retrying-a-submission-safely"),
    ("From a notebook: `idlab.client`", "from-a-notebook-idlabclient"),
    ("d_int90: the estimator, its interval, and the flags", "d_int90-the-estimator-its-interval-and-the-flags"),
    ("Lam & Lee 2020: linear vs power vs RFF (`lam-lee`)", "lam--lee-2020-linear-vs-power-vs-rff-lam-lee"),
    ("A model: [`ModelPlugin`](x.md)", "a-model-modelplugin"),
])
def test_anchors_are_githubs_slugs(heading, anchor):
    assert slug(heading) == anchor


def test_the_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Same\n\n## Same: `code`\n\n## Same\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n"
                    "[ok](other.md) [ok](other.md#same-1) [ok](other.md#same-code) [ok](#page) ![ok](other.md) [ok](https://example.org/x.md)\n"
                    "[gone](missing.md) and [no such heading](other.md#same-2) and [here](#nowhere)\n"
                    "`[in a code span](missing.md)`\n\n```md\n[in a code block](missing.md)\n```\n", encoding="utf-8")
    assert list(broken_links(page, root=tmp_path)) == [
        "page.md:4 missing.md (no such file)",
        "page.md:4 other.md#same-2 (no heading #same-2 in other.md)",
        "page.md:4 #nowhere (no heading #nowhere in page.md)",
    ]
