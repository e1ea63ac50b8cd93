"""Figures written to files, on matplotlib's Agg backend (no display needed)."""
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def saved_figure(path: Path, *grid: int, dpi: int = 110, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(figure, axes)`` of ``matplotlib.pyplot.subplots(*grid, **subplots)``; when the block ends without an
    error the figure is laid out (``tight_layout``, unless ``layout`` is given) and written to ``path`` (folders
    created) at ``dpi``; it is closed either way. matplotlib (the ``study`` extra) is imported only here."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(*grid, **subplots)
    try:
        yield figure, axes
        if "layout" not in subplots:
            figure.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=dpi)
    finally:
        plt.close(figure)
