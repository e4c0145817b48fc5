"""Sphinx extension of the course book: a "JupyterLab" entry in every notebook page's launch menu.

sphinx-book-theme builds the Binder and Colab links; this adds, first in the same menu, a link that
opens the page's notebook in the learner's own JupyterLab (``make lab`` serves ``course/`` on port
8888). It only adds a link: nothing is fetched at build time.
"""

from __future__ import annotations

LAB_URL = "http://localhost:8888/lab/tree/{path}"


def add_jupyterlab_button(app, pagename, templatename, context, doctree):
    parts = pagename.split("/")
    if len(parts) != 3 or parts[0] not in ("course", "solutions"):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"].insert(0, {
                "type": "link",
                "text": "JupyterLab",
                "tooltip": "Open in your JupyterLab (start it with make lab)",
                "icon": "_static/images/logo_jupyterhub.svg",
                "url": LAB_URL.format(path=f"{parts[1]}/{parts[2]}.ipynb"),
            })


def setup(app):
    # After sphinx-book-theme's launch buttons (priority 501), before the page is rendered.
    app.connect("html-page-context", add_jupyterlab_button, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
