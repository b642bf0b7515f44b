"""The docs render offline: the build-time check over the HTML (docs_hooks) catches
remote scripts and unrendered math, and the Markdown keeps its tables whole."""

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("offline_math", ROOT / "docs_hooks/offline_math.py")
offline_math = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(offline_math)


GOOD = """<html><head>
<link rel="stylesheet" href="../_static/katex/katex.min.css">
<script src="../_static/katex/katex.min.js"></script>
</head><body>
<p>Bounds <span class="arithmatex">\\(\\lambda_\\max\\)</span> and</p>
<div class="arithmatex">\\[e^{\\lambda} = 1\\]</div>
<pre><code>x = f"$$" + "\\(" </code></pre>
</body></html>"""


def test_a_self_contained_page_passes():
    assert offline_math.page_problems(GOOD) == []


@pytest.mark.parametrize(
    "bad, found",
    [
        ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex.js"></script>', "network"),
        ('<link rel="stylesheet" href="https://fonts.googleapis.com/css?f=Roboto">', "network"),
        ('<script src="//cdn.example.org/x.js"></script>', "network"),
        # A display equation without a blank line before `$$` stays literal text.
        ("<p>changes nothing:\n$$e^{\\lambda} = 1$$</p>", "stray '$$'"),
        ("<p>the bound \\(\\lambda\\) unrendered</p>", "stray '\\\\('"),
    ],
)
def test_the_check_catches(bad, found):
    problems = offline_math.page_problems(GOOD.replace("</body>", bad + "</body>"))
    assert any(found in p for p in problems), problems


def test_the_bundle_is_pinned_and_verified(tmp_path, monkeypatch):
    # A tarball whose hash is wrong is never used: the cache is checked, then the
    # download (here: refused) is tried, and the error says what to do.
    monkeypatch.setenv("SPECTRAL_DIFFUSION_DOCS_CACHE", str(tmp_path))
    (tmp_path / f"katex-{offline_math.KATEX_VERSION}.tgz").write_bytes(b"tampered")
    assert hashlib.sha256(b"tampered").hexdigest() != offline_math.KATEX_SHA256

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(offline_math.urllib.request, "urlopen", offline)
    with pytest.raises(offline_math.PluginError, match="could not be fetched"):
        offline_math.katex_tarball()


def test_mkdocs_loads_math_from_the_site_only():
    config = (ROOT / "mkdocs.yml").read_text()
    assert "docs_hooks/offline_math.py" in config
    assert not re.search(r"^\s*-\s*https?://", config, re.M), "a remote asset in mkdocs.yml"
    assert re.search(r"^\s*font: false", config, re.M), "the theme would load Google Fonts"


def _split_tables(text: str) -> list[int]:
    """Lines where a Markdown table is interrupted by a blank line and goes on."""
    lines = text.splitlines()
    splits = []
    for i in range(1, len(lines) - 1):
        if lines[i].strip() or not lines[i - 1].startswith("|"):
            continue
        if not lines[i + 1].startswith("|"):
            continue
        following = lines[i + 2].strip() if i + 2 < len(lines) else ""
        if not re.match(r"^\|[\s:|-]+\|$", following):  # not the header of a new table
            splits.append(i + 1)
    return splits


def test_markdown_tables_are_not_split():
    assert _split_tables("| a |\n|---|\n| 1 |\n\n| 2 |\n") == [4]
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = {str(p.relative_to(ROOT)): _split_tables(p.read_text()) for p in pages}
    assert not {k: v for k, v in broken.items() if v}


def test_display_equations_start_a_paragraph():
    # Python-Markdown only sees `$$` display math at the start of a block.
    for page in sorted((ROOT / "docs").rglob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines[1:], start=1):
            if (
                line.startswith("$$")
                and lines[i - 1].strip()
                and not lines[i - 1].rstrip().endswith("$$")
            ):
                pytest.fail(f"{page.name}:{i + 1}: `$$` without a blank line before it")


def test_the_browser_and_the_build_check_rewrite_formulas_alike():
    script = (ROOT / "docs/_static/katex.js").read_text()
    assert f"/{offline_math.OPERATOR_SCRIPT.replace('//', '/')}/g" in script


def test_formulas_katex_cannot_render_fail_the_build(tmp_path):
    # Node.js is on every machine of this project's kind (and on CI): the check runs.
    page = tmp_path / "page.html"
    page.write_text(
        '<p><span class="arithmatex">\\(\\lambda_\\max + \\tfrac12\\)</span>'
        '<span class="arithmatex">\\(\\frac{1}{\\)</span></p>'
    )
    assert len(offline_math.formulas(tmp_path)) == 2
    problems = offline_math.formula_problems(tmp_path)
    assert len(problems) == 1 and "\\frac{1}{" in problems[0], problems
