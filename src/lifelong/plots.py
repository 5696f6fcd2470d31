"""PNG figures of lifelong runs, in the style of the DF-CNN paper (Lee et al., IJCAI 2019).

Every function draws one figure, writes it atomically (a reader never sees half a PNG),
closes it so that long sweeps do not leak figures, and returns the path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import matplotlib

# Headless: runs on servers without a display; must precede the pyplot import.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lifelong.history import History  # noqa: E402
from lifelong.io import atomic_write  # noqa: E402

__all__ = [
    "DPI", "plot_accuracy_over_time", "plot_forgetting_ratio", "plot_accuracy_panels",
    "plot_average_accuracy", "plot_bars_with_ci", "plot_grouped_bars", "plot_configurations",
    "plot_curves_over_tasks", "plot_curve_panels",
]

DPI = 100
_REF_GREYS = ("0.25", "0.6", "0.45", "0.75")  # dark then light grey, as in Fig. 4


def _task_color(j: int, num_tasks: int) -> tuple[float, float, float, float]:
    # tab10 is the most distinguishable; tab20 beyond 10 tasks; cycle beyond 20.
    cmap = matplotlib.colormaps["tab10" if num_tasks <= 10 else "tab20"]
    return cmap(j % cmap.N)


def _save(fig: Figure, path: str | Path) -> Path:
    try:
        # format= is required: the temporary file's ".tmp" suffix hides the type.
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=DPI))
    finally:
        plt.close(fig)


def _draw_accuracy(ax: Axes, h: History, reference: dict[str, float] | None) -> None:
    """One Figure-4 panel: thick while a task trains, thin in the same colour afterwards."""
    T = h.num_tasks
    x = np.asarray(h.epoch, dtype=np.float64)
    for j in range(T):
        color = _task_color(j, T)
        rows = h.rows_of_task(j)
        if rows.size == 0:
            continue
        ax.plot(x[rows], h.test[rows, j], color=color, linewidth=2.2)
        # Start the thin part at the phase's last row so the curve is continuous.
        later = np.concatenate([rows[-1:], np.flatnonzero(h.task > j)])
        if later.size > 1:
            ax.plot(x[later], h.test[later, j], color=color, linewidth=0.9)
    # Task switches halfway between the last row of one task and the first of the next.
    switch = np.flatnonzero(np.diff(h.task) != 0)
    for k in switch:
        ax.axvline((x[k] + x[k + 1]) / 2.0, color="0.6", linestyle="--", linewidth=0.8)
    for n, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color=_REF_GREYS[n % len(_REF_GREYS)], linestyle=":", linewidth=1.4,
                   label=label)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("epoch")
    ax.grid(axis="y", alpha=0.3)


def _task_handles(task_names: Sequence[str]) -> list[Line2D]:
    T = len(task_names)
    return [Line2D([], [], color=_task_color(j, T), linewidth=2.2, label=name)
            for j, name in enumerate(task_names)]


def _check_names(h: History, task_names: Sequence[str]) -> None:
    if len(task_names) != h.num_tasks:
        raise ValueError(f"{len(task_names)} task names for {h.num_tasks} tasks")


def plot_accuracy_over_time(h: History, task_names: list[str], path: str | Path,
                            title: str = "", reference: dict[str, float] | None = None) -> Path:
    """Test accuracy of every task against global epoch (DF-CNN paper, Figure 4).

    Args:
        h: The run's history.
        task_names: One name per task, in presentation order.
        path: Destination PNG.
        title: Figure title.
        reference: Optional horizontal dotted lines, label -> accuracy
            (e.g. ``{"STL small": 0.55}``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    _check_names(h, task_names)
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    _draw_accuracy(ax, h, reference)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ref_handles = ax.get_legend_handles_labels()[0]
    fig.legend(handles=_task_handles(task_names) + ref_handles, loc="outside right upper",
               fontsize="small")
    return _save(fig, path)


def plot_forgetting_ratio(ratios: np.ndarray, task_names: list[str], path: str | Path,
                          title: str = "") -> Path:
    """Bar per task of the catastrophic forgetting ratio, with the no-forgetting line at 1.

    Args:
        ratios: (T,) ratios, e.g. from :func:`lifelong.metrics.forgetting_ratio`; NaN bars
            are left empty.
        task_names: One name per task.
        path: Destination PNG.
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (len(task_names),):
        raise ValueError(f"{r.shape} ratios for {len(task_names)} task names")
    T = len(task_names)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * T + 2.0), 4), layout="constrained")
    ax.bar(np.arange(T), np.nan_to_num(r, nan=0.0),
           color=[_task_color(j, T) for j in range(T)])
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1.0)
    ax.set_xticks(np.arange(T), task_names, rotation=45, ha="right", fontsize="small")
    finite = r[np.isfinite(r)]
    ax.set_ylim(0.0, max(1.1, float(finite.max()) * 1.05 if finite.size else 1.1))
    ax.set_ylabel("final / peak accuracy")
    ax.set_title(title)
    return _save(fig, path)


def plot_accuracy_panels(histories: dict[str, History], task_names: list[str],
                         path: str | Path, title: str = "",
                         reference: dict[str, float] | None = None) -> Path:
    """One Figure-4 panel per learner in a grid with a shared y axis (for comparisons).

    Args:
        histories: Learner name -> its history on the same task stream.
        task_names: One name per task (shared by all learners).
        path: Destination PNG.
        title: Figure title.
        reference: Optional horizontal dotted lines drawn in every panel.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not histories:
        raise ValueError("plot_accuracy_panels needs at least one history")
    for h in histories.values():
        _check_names(h, task_names)
    fig, flat = _panel_grid(len(histories), 1.8, "test accuracy")
    for ax, (name, h) in zip(flat, histories.items(), strict=True):
        _draw_accuracy(ax, h, reference)
        ax.set_title(name)
    ref_handles = flat[0].get_legend_handles_labels()[0]
    fig.legend(handles=_task_handles(task_names) + ref_handles, loc="outside right upper",
               fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _panel_grid(n: int, legend_width: float, ylabel: str) -> tuple[Figure, np.ndarray]:
    """A figure of ``n`` panels, at most 3 per row, sharing the y axis (labelled on the
    first column), with ``legend_width`` inches on the right for a figure legend; returns
    the figure and the first ``n`` axes (the grid's spare cells are hidden)."""
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols + legend_width, 3.4 * nrows),
                             sharey=True, squeeze=False, layout="constrained")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _draw_curves(ax: Axes, curves: dict[str, np.ndarray], ci: dict[str, np.ndarray] | None,
                 colors: dict[str, tuple[float, float, float, float]] | None = None) -> None:
    """Curves against the number of tasks learned (entry i at x = i + 1; NaN entries are
    gaps), each with its confidence band ``curve +- ci`` shaded where ``ci`` has one."""
    for k, (name, curve) in enumerate(curves.items()):
        y = np.asarray(curve, dtype=np.float64)
        x = np.arange(1, y.size + 1)
        color = (colors or {}).get(name, f"C{k % 10}")
        ax.plot(x, y, marker="o", markersize=3, label=name, color=color)
        half = (ci or {}).get(name)
        if half is not None:
            h = np.asarray(half, dtype=np.float64)
            ax.fill_between(x, y - h, y + h, color=color, alpha=0.2, linewidth=0)
    # a linear axis's default locator (AutoLocator) is a MaxNLocator
    cast(MaxNLocator, ax.xaxis.get_major_locator()).set_params(integer=True)
    ax.set_xlabel("tasks learned")
    ax.grid(alpha=0.3)


def _upper(curves: dict[str, np.ndarray]) -> float:
    """Largest finite value of all curves (for y limits that may exceed 1; the bands are
    left out: with few seeds they can be wide enough to flatten every curve)."""
    finite = [v for c in curves.values() for v in np.asarray(c, dtype=np.float64).ravel()
              if np.isfinite(v)]
    return float(max(finite)) if finite else 1.0


def plot_curves_over_tasks(curves: dict[str, np.ndarray], path: str | Path, title: str = "",
                           ylabel: str = "accuracy", ci: dict[str, np.ndarray] | None = None,
                           ylim: tuple[float, float] | None = (0.0, 1.0)) -> Path:
    """One curve per learner against the number of tasks learned, with optional confidence
    bands (e.g. the SKILL paper's Figure 4: accuracy on the first task).

    Args:
        curves: Learner name -> (T,) values; entry i is after learning task i.
        path: Destination PNG.
        title: Figure title.
        ylabel: Y-axis label.
        ci: Learner name -> (T,) half-widths of the 95% interval over seeds.
        ylim: Y limits; None: from 0 to a little above the highest curve (at least 1.05).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    _draw_curves(ax, curves, ci)
    ax.set_ylim(*(ylim or (0.0, max(1.05, _upper(curves) * 1.1))))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if curves:
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_average_accuracy(curves: dict[str, np.ndarray], path: str | Path,
                          title: str = "", ci: dict[str, np.ndarray] | None = None) -> Path:
    """Average accuracy over the tasks learned so far against the number of tasks learned
    (the SKILL paper's Figure 8).

    Args:
        curves: Learner name -> (T,) curve, e.g. from :func:`lifelong.metrics.average_accuracy`.
        path: Destination PNG.
        title: Figure title.
        ci: Optional learner name -> (T,) half-widths of a confidence band (e.g. over seeds).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return plot_curves_over_tasks(curves, path, title=title, ylabel="average accuracy", ci=ci)


def plot_curve_panels(panels: dict[str, dict[str, np.ndarray]], path: str | Path,
                      title: str = "", ylabel: str = "", ci: dict[str, dict[str, np.ndarray]]
                      | None = None, hline: float | None = None) -> Path:
    """One panel per learner, each with curves against the number of tasks learned and
    their confidence bands, the same curve names in the same colours in every panel (the
    SKILL paper's Figure 5: normalized accuracy of the first tasks, one curve per task).

    Args:
        panels: Learner name -> curve name (e.g. ``"task 1"``) -> (T,) values, NaN where
            undefined (before the task is learned).
        path: Destination PNG.
        title: Figure title.
        ylabel: Y-axis label.
        ci: Learner name -> curve name -> (T,) half-widths.
        hline: Optional dashed reference line (e.g. 1.0 for normalized accuracy).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not panels:
        raise ValueError("plot_curve_panels needs at least one panel")
    names = list(dict.fromkeys(c for curves in panels.values() for c in curves))
    colors = {c: _task_color(j, len(names)) for j, c in enumerate(names)}
    fig, flat = _panel_grid(len(panels), 1.5, ylabel)
    top = 1.05
    for ax, (learner, curves) in zip(flat, panels.items(), strict=True):
        bands = (ci or {}).get(learner)
        _draw_curves(ax, curves, bands, colors)
        top = max(top, _upper(curves) * 1.1)
        if hline is not None:
            ax.axhline(hline, color="0.3", linestyle="--", linewidth=1.0)
        ax.set_title(learner)
    flat[0].set_ylim(0.0, top)  # shared y axis
    fig.legend(handles=[Line2D([], [], color=colors[c], marker="o", markersize=3, label=c)
                        for c in names], loc="outside right upper", fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_bars_with_ci(values: dict[str, tuple[float, float]], path: str | Path, title: str = "",
                      ylabel: str = "", hline: float | None = None) -> Path:
    """One bar per learner with its 95% confidence interval (the DF-CNN paper's Figure 3a/3c).

    Args:
        values: Learner name -> (mean, half-width of the interval); NaN means leave it empty.
        path: Destination PNG.
        title: Figure title.
        ylabel: Y-axis label.
        hline: Optional dashed reference line (e.g. 1.0 for forgetting ratios).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    names = list(values)
    means = np.array([values[n][0] for n in names], dtype=np.float64)
    errs = np.array([values[n][1] for n in names], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2.0), 4), layout="constrained")
    x = np.arange(len(names))
    ax.bar(x, np.nan_to_num(means), yerr=np.nan_to_num(errs), capsize=4,
           color=[_task_color(j, max(len(names), 1)) for j in range(len(names))])
    if hline is not None:
        ax.axhline(hline, color="0.3", linestyle="--", linewidth=1.0)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_grouped_bars(per_task: dict[str, np.ndarray], task_names: list[str],
                      path: str | Path, title: str = "", ylabel: str = "",
                      hline: float | None = None) -> Path:
    """Per-task bars grouped by task, one colour per learner (e.g. forgetting ratio per task).

    Args:
        per_task: Learner name -> (T,) values; NaN bars are left empty.
        task_names: One name per task.
        path: Destination PNG.
        title: Figure title.
        ylabel: Y-axis label.
        hline: Optional dashed reference line.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    T, n = len(task_names), max(len(per_task), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * T * n ** 0.5 + 3.0), 4), layout="constrained")
    for k, (name, vals) in enumerate(per_task.items()):
        v = np.asarray(vals, dtype=np.float64)
        if v.shape != (T,):
            raise ValueError(f"{name}: {v.shape} values for {T} tasks")
        ax.bar(np.arange(T) - 0.4 + width * (k + 0.5), np.nan_to_num(v), width, label=name,
               color=_task_color(k, n))
    if hline is not None:
        ax.axhline(hline, color="0.3", linestyle="--", linewidth=1.0)
    ax.set_xticks(np.arange(T), task_names, rotation=45, ha="right", fontsize="small")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    return _save(fig, path)


def plot_configurations(configs: Sequence[str], path: str | Path, title: str = "",
                        top: int = 8) -> Path:
    """The LASEM paper's Figures 4 and 8 from chosen transfer configurations (bit strings,
    layer 1 first, 1 = transfer-based): the most chosen configurations, and the share of
    tasks in which each layer was transfer-based or task-specific.

    Args:
        configs: One bit string per task (pooled over seeds if wanted).
        path: Destination PNG.
        title: Figure title.
        top: How many of the most frequent configurations to show.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not configs:
        raise ValueError("plot_configurations needs at least one configuration")
    names, counts = np.unique(np.asarray(list(configs)), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    bits = np.array([[int(b) for b in c] for c in configs])  # (tasks, layers)
    share = bits.mean(0) * 100
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    a.bar(np.arange(len(order)), counts[order] / len(configs) * 100, color="tab:purple")
    a.set_xticks(np.arange(len(order)), names[order], rotation=45, ha="right",
                 fontfamily="monospace")
    a.set_ylabel("% of tasks")
    a.set_title("most chosen configurations")
    layers = np.arange(bits.shape[1])
    b.bar(layers, share, color="tab:red", label="transfer-based")
    b.bar(layers, 100 - share, bottom=share, color="tab:blue", label="task-specific")
    b.set_xticks(layers, [f"layer {i + 1}" for i in layers])
    b.set_ylabel("% of tasks")
    b.set_ylim(0, 100)
    b.set_title("per layer")
    b.legend(fontsize="small", loc="lower right")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
