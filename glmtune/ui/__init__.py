"""``glmtune ui``: a browser app over the same Python API as the CLI (needs the ``ui`` extra: Gradio).

Each page calls the function its CLI command calls (``check_file``, ``prepare_run``, ``evaluate``,
``export_model``, ...); training runs as ``python -m glmtune train CONFIG`` in its own process. The page modules
(``glmtune.ui.*_page``, ``runs``, ``progress``) hold plain, testable handlers; ``glmtune.ui.app`` wires them to
Gradio components. Importing this package does not import Gradio.
"""

from __future__ import annotations

from glmtune.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_WORKDIR = "glmtune-ui"
INSTALL_HINT = "the web UI needs Gradio: pip install 'glmtune[ui]'"


def launch(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, auth: tuple[str, str] | None = None,
           workdir: str = DEFAULT_WORKDIR, block: bool = True) -> object:
    """Start the web UI on ``host:port`` (optionally behind ``auth``) with its files under ``workdir``."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no analytics or version check over the network
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    from glmtune.ui.app import serve

    return serve(host=host, port=port, auth=auth, workdir=workdir, block=block)
