"""The dashboard as files the backend serves: mounted at /, plotly.js from the installed package,
nothing from another host. No browser needed (see test_browser.py for that)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.api.frontend import FRONTEND_DIR, mount_frontend, plotly_js_path

#: Anything that would make a page load ask another host: absolute URLs, protocol-relative ones, CSS imports.
FOREIGN = re.compile(r"""(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*["']?(https?:|//)""", re.I)


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()

    @app.get("/api/ping")
    def ping() -> dict:
        return {"ok": True}

    assert mount_frontend(app)
    return TestClient(app)


def test_the_ui_is_served_at_the_root(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/js/app.js">' in page.text
    script = client.get("/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/api/ping").json() == {"ok": True}, "routes added before the mount still answer"


def test_plotly_comes_from_the_installed_package(client):
    path = plotly_js_path()
    assert path is not None and path.name == "plotly.min.js", "pip install plotly"
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert len(response.content) == path.stat().st_size
    assert client.head("/vendor/plotly.min.js").status_code == 200


def test_no_file_of_the_ui_refers_to_another_host():
    offenders = []
    for path in sorted(FRONTEND_DIR.rglob("*")):
        if path.suffix in (".html", ".js", ".css"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if FOREIGN.search(line):
                    offenders.append(f"{path.relative_to(FRONTEND_DIR)}:{number}: {line.strip()}")
    assert not offenders, "the UI must load nothing from another host (no CDN, no web fonts):\n" + "\n".join(offenders)


def test_nothing_is_mounted_without_an_index(tmp_path):
    app = FastAPI()
    assert mount_frontend(app, tmp_path) is False
    assert all(getattr(route, "path", "") != "/vendor/plotly.min.js" for route in app.routes)


# ---- the size of the dashboard's functions ----------------------------------------------------------

#: The longest a function of the dashboard may be, in lines: a page composes panels, each of one job.
MAX_FUNCTION_LINES = 120
#: Where a function starts: a declaration, an arrow function assigned to a const/let, or a class method.
#: Matched on code with strings, comments and regular expressions blanked, so none of those counts.
FUNCTION_START = re.compile(
    r"(?:\bfunction\s*\*?\s*(?P<declared>[\w$]+)\s*\("
    r"|\b(?:const|let|var)\s+(?P<assigned>[\w$]+)\s*=\s*(?:async\s+)?(?:\([^()]*(?:\([^()]*\)[^()]*)*\)|[\w$]+)\s*=>\s*(?=\{)"
    r"|^[ \t]*(?:static\s+)?(?:async\s+)?(?:get\s+|set\s+)?"
    r"(?P<method>[\w$]+)\s*\([^()]*(?:\([^()]*\)[^()]*)*\)\s*(?=\{))",
    re.M)
NOT_METHODS = {"if", "for", "while", "switch", "catch", "function", "return", "with"}
#: After one of these (or at the start), a "/" begins a regular expression, not a division.
REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^") | {""}


def blank_non_code(source: str) -> str:
    """`source` with the insides of strings, template literals, comments and regular expressions replaced
    by spaces (newlines kept), so that braces and keywords left are the code's own."""
    out = list(source)
    i, n = 0, len(source)
    stack: list[str] = ["code"]          # "code", or "template" while inside `…` (a ${ pushes "code" again)
    depth: list[int] = [0]               # braces open in each code level (a template's ${ … } ends at 0)
    last = ""                             # the last significant code character, for regex detection

    def blank(start: int, end: int) -> None:
        for j in range(start, end):
            if out[j] != "\n":
                out[j] = " "

    while i < n:
        c = source[i]
        if stack[-1] == "template":
            if c == "\\":
                blank(i, min(i + 2, n)); i += 2; continue
            if c == "`":
                stack.pop(); i += 1; last = "`"; continue
            if source.startswith("${", i):
                stack.append("code"); depth.append(0); blank(i, i + 2); i += 2; last = "{"; continue
            blank(i, i + 1); i += 1; continue
        if source.startswith("//", i):
            end = source.find("\n", i); end = n if end < 0 else end
            blank(i, end); i = end; continue
        if source.startswith("/*", i):
            end = source.find("*/", i + 2); end = n if end < 0 else end + 2
            blank(i, end); i = end; continue
        if c in "'\"":
            j = i + 1
            while j < n and source[j] != c and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            blank(i + 1, j); i = j + 1; last = c; continue
        if c == "`":
            stack.append("template"); i += 1; continue
        if c == "/" and (last in REGEX_BEFORE
                         or re.search(r"\b(return|typeof|case|of|in)\s*$", source[max(0, i - 12):i])):
            j, in_class = i + 1, False
            while j < n and source[j] != "\n" and (in_class or source[j] != "/"):
                if source[j] == "\\":
                    j += 1
                elif source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                j += 1
            blank(i + 1, j); i = j + 1; last = "/"; continue
        if c == "{":
            depth[-1] += 1
        elif c == "}":
            if depth[-1] == 0 and len(stack) > 1:       # the end of a template's ${ … }
                stack.pop(); depth.pop(); blank(i, i + 1); i += 1; continue
            depth[-1] -= 1
        if not c.isspace():
            last = c if not (c.isalnum() or c in "_$") else "a"
        i += 1
    return "".join(out)


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """(name, first line, length in lines) of every function of `source` longer than `limit` lines."""
    code = blank_non_code(source)
    found = []
    for match in FUNCTION_START.finditer(code):
        name = match.group("declared") or match.group("assigned") or match.group("method")
        if match.group("method") and name in NOT_METHODS:
            continue
        opening = code.find("{", match.end() - 1 if code[match.end() - 1] == "{" else match.end())
        if match.group("declared"):                 # the body's brace comes after the parameters
            level, j = 0, code.index("(", match.start())
            while True:
                level += {"(": 1, ")": -1}.get(code[j], 0)
                if level == 0:
                    break
                j += 1
            opening = code.find("{", j)
        level, j = 0, opening
        while j < len(code):
            level += {"{": 1, "}": -1}.get(code[j], 0)
            if level == 0:
                break
            j += 1
        first, last = code.count("\n", 0, match.start()) + 1, code.count("\n", 0, j) + 1
        if last - first + 1 > limit:
            found.append((name, first, last - first + 1))
    return found


def test_the_scan_finds_long_functions_and_nothing_else():
    def body(lines: int) -> str:
        return "\n".join(f"  const x{i} = `a {{ ${{{{ b: '}}' }}.b}} /* {{ */`; // }} {{" for i in range(lines - 2))

    for head in ("function page(root, { id } = {}) {", "export async function page(a, b) {",
                 "const page = async (root, q) => {", "  page(a, b = () => 1) {", "  async page() {"):
        tail = "}" if not head.startswith("const") else "};"
        assert long_functions(f"{head}\n{body(120)}\n{tail}\n") == [], head
        assert long_functions(f"{head}\n{body(121)}\n{tail}\n") == [("page", 1, 121)], head
    tricky = "const re = /[{}]/g;\nconst s = \"}}}\";\nfunction f() {\n  if (a / b > 1 / 2) return `${'{'}`;\n}\n"
    assert blank_non_code(tricky).count("{") == blank_non_code(tricky).count("}") == 1
    assert long_functions(tricky, limit=2) == [("f", 3, 3)]


def test_no_function_of_the_dashboard_is_longer_than_the_limit():
    offenders = []
    for path in sorted((FRONTEND_DIR / "js").rglob("*.js")):
        for name, line, length in long_functions(path.read_text()):
            offenders.append(f"{path.relative_to(FRONTEND_DIR)}:{line}: {name} is {length} lines")
    assert not offenders, (f"functions over {MAX_FUNCTION_LINES} lines (split them into panels and helpers "
                           "of one job each):\n" + "\n".join(offenders))
