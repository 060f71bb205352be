"""Sphinx configuration of the companion's static site (`make site` -> build/site/).

docs/site/build.py copies this file into the staged source tree (build/site-src/) beside the staged
README (as index.md), notebooks and reports, and runs sphinx-build there.

Builder: Sphinx with MyST-NB and the Jupyter Book theme (sphinx-book-theme), pinned in
requirements-site.txt. Why this one:
- it builds offline: MyST-NB renders each notebook's stored outputs (`nb_execution_mode = "off"`:
  nothing is executed, no kernel starts), and the theme ships its CSS, JavaScript and fonts as
  package data, so neither the build nor a reader's browser fetches anything from a CDN;
- it is what Jupyter Book 1 runs underneath (same parser, notebook reader and theme), without Jupyter
  Book 1's own configuration layer and its older Sphinx pins; Jupyter Book 2 is a Node application
  that downloads its site template at build time, so it does not build offline;
- MyST resolves the repository-relative links of the README and the reports (`notebooks/01_...ipynb`,
  `docs/findings.md#...`) to the built pages, and every package pinned supports Python >= 3.10.
"""

from pathlib import Path

project = "Convex Regularization behind Neural Reconstruction: a reproducible companion"
html_title = "Convex Regularization behind Neural Reconstruction"
author = "the companion's authors"
copyright = "the companion's authors; MIT License"

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_extra", "_build", "jupyter_execute", ".jupyter_cache", "conf.py"]

# The committed notebooks as they are: their stored outputs, never executed.
nb_execution_mode = "off"
nb_execution_raise_on_error = True
# Progress bars stored as ipywidgets: show their text fallback and load no widget JavaScript (the
# default loads require.js and the widget manager from a CDN).
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [
    ("html", "application/vnd.jupyter.widget-view+json", None),
    ("html", "application/vnd.jupyter.widget-state+json", None),
]
nb_merge_streams = True

# GitHub-style heading anchors, so `findings.md#theorem-1-where-it-applies` resolves as on GitHub.
myst_heading_anchors = 6
# Links to repository files that are not pages (figures, json, LICENSE) are staged by build.py under
# their repository path in the output and written `site:<path>`; they render as plain relative links.
myst_url_schemes = {
    "http": None,
    "https": None,
    "mailto": None,
    "ftp": None,
    "site": {"url": "{{path}}", "classes": ["site-file"]},
}

html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
# Linked repository files (figures, json, LICENSE), staged by build.py under their repository paths.
html_extra_path = ["_extra"] if (Path(__file__).parent / "_extra").is_dir() else []
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_use_index = False  # no index entries: the general index would be an empty page
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
