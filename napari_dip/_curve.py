"""The dock's live curve: the loss of every step, the automatic stop's signal and its best
iteration, drawn with pyqtgraph.

The worker thread records every step into a :class:`~napari_dip._run.CurveHistory`; this view
redraws from it on a timer (``REDRAW_SECONDS``), never per step, so a fit of hundreds of steps a
second costs the GUI thread two small redraws a second.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ._run import CurveHistory

__all__ = ["LossCurve", "REDRAW_SECONDS"]

REDRAW_SECONDS = 0.5
# The width the curve asks of the dock: about that of the other controls.
CURVE_WIDTH_HINT = 300

EMPTY_LEGEND = "<small>The loss of every step is drawn here during a run.</small>"

LOSS_COLOUR = "#5ab4ff"
SIGNAL_COLOUR = "#ffa040"
BEST_COLOUR = "#7bd88f"


class LossCurve(QWidget):
    """A small log-scale plot of a run's loss and stop signal, with its best iteration marked."""

    def __init__(self, history: CurveHistory):
        super().__init__()
        import pyqtgraph as pg

        self.history = history
        self.plot = pg.PlotWidget(background=None, axisItems={"left": _log_axis(pg)})
        self.plot.setMinimumHeight(110)
        self.plot.setMaximumHeight(160)
        self.plot.setMinimumWidth(120)
        self.plot.setLogMode(y=True)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.showGrid(y=True, alpha=0.15)
        self.plot.setToolTip(
            "Blue: the loss (mean squared difference from the observed pixels) at every step. "
            "Orange: what the automatic stop watches (how much the output still changes, or for "
            "inpainting the error on held-out pixels); the dashed line is where it was best."
        )
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            font = axis.font() if hasattr(axis, "font") else None
            if font is not None:
                font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
                axis.setStyle(tickFont=font)
        self.loss = self.plot.plot(pen=pg.mkPen(LOSS_COLOUR, width=1.5), connect="finite")
        self.signal = self.plot.plot(pen=pg.mkPen(SIGNAL_COLOUR, width=1.5), connect="finite")
        for item in (self.loss, self.signal):
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
        self.best = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(BEST_COLOUR, width=1, style=Qt.DashLine))
        self.plot.addItem(self.best)
        self.best.hide()
        self.legend = QLabel(EMPTY_LEGEND)
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.RichText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.plot)
        layout.addWidget(self.legend)
        self._timer = QTimer(self)
        self._timer.setInterval(round(REDRAW_SECONDS * 1000))
        self._timer.timeout.connect(self.redraw)
        self._drawn = -1

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        # A plot's own hint is 640 px wide, which would open the dock at half the window.
        hint = super().sizeHint()
        return QSize(min(hint.width(), CURVE_WIDTH_HINT), hint.height())

    def start(self) -> None:
        """A run begins: an empty plot, redrawn on the timer from now on."""
        self.history.clear()
        self._drawn = -1
        self.redraw()
        self._timer.start()

    def stop(self) -> None:
        """The run ended: draw its last steps and stop the timer; the curve stays up."""
        self._timer.stop()
        self.redraw()

    def clear(self) -> None:
        """Forget the last run's curve: the choices it was made with changed.

        The plot stays in the dock, empty: shown only from a run's start, its first paint would
        cost the click that starts the run about 0.1 s, and the dock would change size."""
        self._timer.stop()
        self.history.clear()
        self.redraw()
        self.legend.setText(EMPTY_LEGEND)

    def redraw(self) -> None:
        snapshot = self.history.snapshot()
        if snapshot.version == self._drawn:
            return
        self._drawn = snapshot.version
        iterations = snapshot.iterations
        # An empty log axis would label a made-up range: axes come with the first step.
        for side in ("left", "bottom"):
            self.plot.showAxis(side, show=bool(len(iterations)))
        self.loss.setData(iterations, _positive(snapshot.losses))
        signal = _positive(snapshot.signals)
        if np.isfinite(signal).any():
            self.signal.setData(iterations, signal)
        else:
            self.signal.setData([], [])
        if snapshot.best is not None:
            self.best.setValue(snapshot.best)
            self.best.show()
        else:
            self.best.hide()
        self.legend.setText(_legend(snapshot))


def _log_axis(pg):
    """A left axis whose labels within a decade (2, 5, then the rest) are separate levels, so
    pyqtgraph drops the crowded ones instead of writing 0.02 to 0.09 over each other."""

    class LogAxis(pg.AxisItem):
        def logTickValues(self, min_value, max_value, size, std_ticks):  # noqa: N802 (pyqtgraph's name)
            decades = [(spacing, ticks) for spacing, ticks in std_ticks if spacing >= 1.0]
            if len(decades) >= 3:
                return decades
            levels = []
            for mantissas in ((1,), (2, 5), (3, 4, 6, 7, 8, 9)):
                ticks = [decade + math.log10(m) for decade in range(math.floor(min_value), math.ceil(max_value))
                         for m in mantissas]
                levels.append((None, [tick for tick in ticks if min_value < tick < max_value]))
            return levels

    return LogAxis("left")


def _positive(values: np.ndarray) -> np.ndarray:
    """Values a log axis can show: zeros and negatives become gaps."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values, np.nan)


def _legend(snapshot) -> str:
    parts = [f'<span style="color:{LOSS_COLOUR}">━ loss</span>']
    if np.isfinite(snapshot.signals).any():
        parts.append(f'<span style="color:{SIGNAL_COLOUR}">━ stop signal</span>')
    if snapshot.best is not None:
        parts.append(f'<span style="color:{BEST_COLOUR}">┆ best at {snapshot.best}</span>')
    if len(snapshot.iterations):
        last = snapshot.losses[-1]
        loss = f", loss {last:.3g}" if math.isfinite(last) else ""
        parts.append(f"iteration {int(snapshot.iterations[-1])}{loss}")
    if snapshot.part:
        parts.append(snapshot.part)
    return "<small>" + " &nbsp;".join(parts) + "</small>"
