"""mkdocs hook: formulas that render offline, and a check that nothing loads from
the network.

KaTeX is bundled with the site at build time from the npm registry's tarball of a
pinned release (verified by its SHA-256, cached after the first build), so the built
site renders every formula with no network at all, as a researcher reading the docs
on a laptop on a train expects. After each build the HTML is checked: a script or
stylesheet from `http(s)://`, or math delimiters left as literal text (a display
equation that Markdown did not recognise, e.g. one without a blank line before
`$$`), fails the build.

Why KaTeX rather than MathJax: one 280 kB script and its fonts instead of MathJax's
component tree, and arithmatex's generic output (`\\(...\\)`, `\\[...\\]` in
`span/div.arithmatex`) is exactly what KaTeX's auto-render reads.
"""

import hashlib
import html
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

from mkdocs.exceptions import PluginError


KATEX_VERSION = "0.19.1"
KATEX_URL = f"https://registry.npmjs.org/katex/-/katex-{KATEX_VERSION}.tgz"
KATEX_SHA256 = "24da5a599eb2fcede2e270b99a6ff48bca816beecc95feeb84e8cccbd1bb34fd"
#: Where the site expects the bundle (see `extra_javascript` in mkdocs.yml).
BUNDLE = Path("_static") / "katex"
#: What the site needs from the package's `dist/`.
_WANTED = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "fonts/")


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("SPECTRAL_DIFFUSION_DOCS_CACHE", Path(root) / "spectral_diffusion"))


def katex_tarball() -> bytes:
    """The pinned KaTeX release, from the cache or the npm registry, verified."""
    path = _cache_dir() / f"katex-{KATEX_VERSION}.tgz"
    if path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == KATEX_SHA256:
            return data
    try:
        with urllib.request.urlopen(KATEX_URL, timeout=60) as response:
            data = response.read()
    except OSError as error:
        raise PluginError(
            f"KaTeX {KATEX_VERSION} is not cached at {path} and could not be fetched from "
            f"{KATEX_URL} ({error}). Build once with access to the npm registry, or put "
            "the tarball at that path."
        ) from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != KATEX_SHA256:
        raise PluginError(f"{KATEX_URL} has SHA-256 {digest}, expected {KATEX_SHA256}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return data


def unpack_katex(site_dir: Path) -> list[Path]:
    """Copy KaTeX's script, stylesheet, auto-render and fonts into the site."""
    written = []
    with tarfile.open(fileobj=io.BytesIO(katex_tarball()), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/dist/")
            if not member.isfile() or name == member.name or not name.startswith(_WANTED):
                continue
            target = site_dir / BUNDLE / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
            written.append(target)
    return written


class _PageScan(HTMLParser):
    """Remote scripts/stylesheets, and text outside math, code and scripts."""

    _SKIP = {"script", "style", "code", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.remote: list[str] = []
        self.text: list[str] = []
        self._stack: list[bool] = []  # per open element: inside skipped content?

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        source = attrs.get("src") if tag == "script" else None
        if tag == "link" and "stylesheet" in (attrs.get("rel") or ""):
            source = attrs.get("href")
        if source and source.startswith(("http://", "https://", "//")):
            self.remote.append(f"<{tag}> {source}")
        if tag in ("link", "meta", "img", "br", "hr", "input", "source"):
            return  # void elements
        inside = bool(self._stack and self._stack[-1])
        math = "arithmatex" in (attrs.get("class") or "").split()
        self._stack.append(inside or math or tag in self._SKIP)

    def handle_endtag(self, tag):
        if self._stack and tag not in ("link", "meta", "img", "br", "hr", "input", "source"):
            self._stack.pop()

    def handle_data(self, data):
        if not (self._stack and self._stack[-1]):
            self.text.append(data)


#: Delimiters that mean a formula was left unrendered when they appear as text.
STRAY_MATH = ("$$", "\\(", "\\)", "\\[", "\\]")


def page_problems(html: str) -> list[str]:
    """What is wrong with one built page: remote scripts or stylesheets, and math
    delimiters outside math spans (in text, not in code)."""
    scan = _PageScan()
    scan.feed(html)
    problems = [f"loads {item} from the network" for item in scan.remote]
    text = "".join(scan.text)
    for delimiter in STRAY_MATH:
        at = text.find(delimiter)
        if at >= 0:
            context = " ".join(text[max(0, at - 40) : at + 40].split())
            problems.append(f"stray {delimiter!r} outside math: ...{context}...")
    return problems


def site_problems(site_dir: Path) -> list[str]:
    problems = []
    for page in sorted(Path(site_dir).rglob("*.html")):
        for problem in page_problems(page.read_text(encoding="utf-8")):
            problems.append(f"{page.relative_to(site_dir)}: {problem}")
    return problems


#: The rewrite `docs/_static/katex.js` applies before rendering (a JS regex source).
OPERATOR_SCRIPT = r"([_^])\\(max|min|cos|sin|log|exp|sup|inf)(?![a-zA-Z])"

_FORMULA_CHECK = r"""
const katex = require(process.argv[2]);
const formulas = JSON.parse(require("fs").readFileSync(0, "utf8"));
const script = new RegExp(process.argv[3], "g");
const failed = [];
for (const [page, tex, display] of formulas) {
  try {
    const options = {throwOnError: true, displayMode: display};
    katex.renderToString(tex.replace(script, "$1{\\$2}"), options);
  } catch (error) {
    failed.push(page + ": " + error.message.split("\n")[0] + " in: " + tex.slice(0, 80));
  }
}
process.stdout.write(JSON.stringify(failed));
"""
_FORMULA = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)


def formulas(site_dir: Path) -> list[tuple[str, str, bool]]:
    """Every formula of the built site: (page, TeX, display?)."""
    found = []
    for page in sorted(Path(site_dir).rglob("*.html")):
        for _, body in _FORMULA.findall(page.read_text(encoding="utf-8")):
            tex = html.unescape(body).strip()
            display = tex.startswith("\\[")
            found.append((str(page.relative_to(site_dir)), tex[2:-2], display))
    return found


def formula_problems(site_dir: Path) -> list[str]:
    """Formulas KaTeX cannot render, checked with Node.js where it is installed (as
    on CI); without Node the check is reported as not run."""
    node = shutil.which("node")
    if node is None:
        logging.getLogger("mkdocs").warning("Node.js not found: formulas not checked with KaTeX.")
        return []
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(fileobj=io.BytesIO(katex_tarball()), mode="r:gz") as archive:
            script = archive.extractfile("package/dist/katex.js").read()
        (Path(folder) / "katex.js").write_bytes(script)
        (Path(folder) / "check.js").write_text(_FORMULA_CHECK)
        result = subprocess.run(
            [node, str(Path(folder) / "check.js"), str(Path(folder) / "katex.js"), OPERATOR_SCRIPT],
            input=json.dumps(formulas(site_dir)),
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        return [f"the KaTeX formula check failed to run: {result.stderr.strip()[:300]}"]
    return json.loads(result.stdout)


def on_post_build(config, **kwargs):
    site_dir = Path(config["site_dir"])
    unpack_katex(site_dir)
    problems = site_problems(site_dir) + formula_problems(site_dir)
    if problems:
        raise PluginError("The built site is not self-contained:\n" + "\n".join(problems))
