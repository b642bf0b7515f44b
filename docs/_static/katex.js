// Render the math that pymdownx.arithmatex (generic mode) leaves as \( \) and \[ \]
// in span/div.arithmatex, with the KaTeX bundled into the site (docs_hooks/offline_math.py).
// Material's instant navigation swaps pages without reloading: render on each.
//
// KaTeX, unlike MathJax, wants braces around an operator used as a sub- or
// superscript (`\lambda_\max`): add them. The build's formula check applies the same
// rewrite (OPERATOR_SCRIPT in docs_hooks/offline_math.py; a test keeps them equal).
const OPERATOR_SCRIPT = /([_^])\\(max|min|cos|sin|log|exp|sup|inf)(?![a-zA-Z])/g;

document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    preProcess: (math) => math.replace(OPERATOR_SCRIPT, "$1{\\$2}"),
    throwOnError: false,
  });
});
