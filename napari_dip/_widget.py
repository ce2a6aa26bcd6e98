"""The napari dock widget: pick layers and a task, press Run, watch, get a new layer.

The widget holds no maths. On Run it reads the layers on the GUI thread (``_layer_data``), hands
plain arrays to the core's generator running in a napari thread worker (``create_worker`` over
``_run.drive``), shows progress and previews as they arrive, and turns the preview layer into
the result layer in the ``returned`` handler: layers are only touched on the GUI thread.
For all planes of a stack the result layer is added when the run starts and filled plane by
plane in the ``yielded`` handler (``StackResultLayer``).
torch and the core are imported when the widget opens, not when napari starts.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Shapes
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ._curve import LossCurve
from ._estimate import Calibration, Estimate, describe_device, estimate_run, format_seconds, time_left
from ._layer_data import (
    Region,
    fill_mask,
    mask_score,
    new_mask_name,
    select_input,
    select_stack,
    select_volume,
    stack_mask,
    volume_mask,
)
from ._process import run_in_process
from ._run import CurveHistory, Kept, carries_preview, drive, ends_a_plane
from ._widget_parts import (
    CURRENT_VIEW,
    PREVIEW_KEY,
    LayerComboBox,
    RunPlan,
    StackResultLayer,
    add_image_quietly,
    add_region_layer,
    is_preview,
    planned_settings,
    region_in,
    spatial_shape,
    unwrapped,
)
from ._widget_settings import load_settings, save_settings
from .core.device import select_device
from .core.presets import PRESETS
from .core.tasks import task_spec, widget_choices

if TYPE_CHECKING:
    import napari

    from .core import Progress, Restoration, Settings
    from .core.stacks import PlaneProgress, StackRestoration

_format_seconds = format_seconds  # the widget's name for it, kept for callers


def _time_left_suffix(event) -> str:
    """`` · about 30 s left`` (with the time to the cap where that is much later), or ``""``."""
    left = time_left(event.eta, getattr(event, "eta_latest", None))
    return f" · {left}" if left else ""


__all__ = ["TASK_CHOICES", "LayerComboBox", "RestorationWidget", "RunPlan", "StackResultLayer"]

# (label, core task, super-resolution factor): one row per entry of the Task menu, from the
# core's task registry.
TASK_CHOICES: tuple[tuple[str, str, int], ...] = widget_choices()

# Settings fields shown under Advanced: (field, label, minimum, maximum, decimals, tooltip).
# Decimals None means an integer field.
ADVANCED_FIELDS: tuple[tuple[str, str, float, float, int | None, str], ...] = (
    ("lr", "Learning rate", 1e-5, 1.0, 5, "Adam step size; lower if the loss jumps around"),
    ("reg_noise_std", "Input noise", 0.0, 1.0, 4,
     "σ of the noise added to the network's input each step; it regularises the fit"),
    ("channels", "Network width", 1, 512, None,
     "Feature channels per scale: narrower is faster, wider fits more detail"),
    ("scales", "Network depth", 1, 8, None, "Down/up-sampling levels of the network"),
)

PREVIEW_SECONDS = 2.0

# How often a step's progress reaches the GUI thread (previews and notes always do): each update
# repaints the bar and the status line, and on a 2-core CPU every slice of time the GUI takes
# stalls a fit running on both cores (benchmarks/widget_speed.py).
REPORT_SECONDS = 0.3

IDLE_STATUS = "Pick an image and a task, then press Run."

# The core's "compile" setting; "auto" (the default, as in the core) compiles only where the
# run's pixels × iterations repay the compile (napari_dip.core.device.resolve_compile).
COMPILE_CHOICES = ("auto", "off", "on")

# Resolution of the progress bar over a whole stack, or a run that stops by itself: it follows
# the time-based fraction done, which moves within a plane, not only when a plane ends.
STACK_PROGRESS_STEPS = 1000

# The Preset menu, in order of cost, with what each one is.
PRESET_CHOICES: tuple[tuple[str, str], ...] = (
    ("fast", "a network half as wide as default's, half its iteration cap: a first look "
             "(128² astronaut, σ 25: see benchmarks/results/presets_fast)"),
    ("default", "the paper's optimisation on a narrower network, stopping by itself"),
    ("paper", "the official Deep Image Prior settings: the widest network, fixed iteration counts"),
)

# Estimates before Run and the cost next to each preset are recomputed this long after the last
# change (a drag of the view or of a rectangle sends many).
ESTIMATE_DELAY_MS = 150

# What the last runs' steps took against the table, kept while napari runs (a reopened dock too).
_CALIBRATION = Calibration()


def _warm_up_torch() -> None:
    """Do torch's one-time start-up work now, on the GUI thread, while the widget opens.

    torch's first optimizer construction imports its compiler stack (~800 modules, about a
    second); done by the worker, those imports hold the GIL in long stretches. And the ~300,000
    objects torch brings would make Python's next full garbage collection, due soon after, take
    100-300 ms whichever thread triggers it. Both would freeze the viewer during the first run;
    paying for them here, once, keeps the run smooth.
    """
    import gc

    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    gc.collect()


def _shows(box: QSpinBox | QDoubleSpinBox, value: float) -> bool:
    """Whether a spin box displays ``value`` (compared as shown, at the box's precision)."""
    return box.textFromValue(box.value()) == box.textFromValue(value)


class _HidingFormLayout(QFormLayout):
    """A form whose rows can be hidden without leaving a gap.

    Qt before 6.4 keeps a hidden row's spacing (its widgets hidden, the row still there), so a
    task that hides several rows left blank bands in the dock. Qt 6.4's setRowVisible hides the
    row itself; elsewhere a hidden row is taken out of the form, and put back in its place when
    shown.
    """

    def __init__(self):
        super().__init__()
        # Every row's (label, field), in the order added; the form holds those not hidden.
        self._rows: list[tuple[QWidget | None, QWidget]] = []
        self._hidden: set[int] = set()

    def add_row(self, label: str | None, field: QWidget) -> int:
        """Add a row (label None: none, the field in the field column); returns its number."""
        label_widget = None if label is None else QLabel(label)
        self.addRow(label_widget, field)
        self._rows.append((label_widget, field))
        return len(self._rows) - 1

    def set_row_visible(self, row: int, visible: bool) -> None:
        if (row not in self._hidden) == visible:
            return
        label, field = self._rows[row]
        if hasattr(self, "setRowVisible"):  # Qt ≥ 6.4
            self.setRowVisible(field, visible)
        elif visible:
            self.insertRow(sum(1 for shown in range(row) if shown not in self._hidden), label, field)
        else:
            self.takeRow(self.getWidgetPosition(field)[0])
        for widget in (label, field):
            if widget is not None:
                widget.setVisible(visible)
        (self._hidden.discard if visible else self._hidden.add)(row)


def _leading_axes(layer: Image | None) -> int:
    """Non-spatial, non-RGB axes of an image layer (planes of a stack, time points, channels)."""
    if layer is None or layer.multiscale:
        return 0
    return layer.ndim - 2


def _plane_axes(layer: Image | None, channel_axis: int | None) -> list[int]:
    """The leading axes that run over planes: all but the one restored as channels."""
    return [axis for axis in range(_leading_axes(layer)) if axis != channel_axis]


class _VerticalScrollArea(QScrollArea):
    """Scrolls its content up and down, never sideways: as narrow as the content can be."""

    def __init__(self, content: QWidget):
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(content)
        content.installEventFilter(self)

    def _width_for(self, content_width: int) -> int:
        return content_width + self.verticalScrollBar().sizeHint().width()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(self._width_for(self.widget().minimumSizeHint().width()), super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        hint = self.widget().sizeHint()
        return QSize(self._width_for(hint.width()), hint.height())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        # A row shown or hidden changes how narrow the content can be: the dock must hear of it.
        if event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)


class RestorationWidget(QWidget):
    """Deep Image Prior restoration of an image layer, run in a background thread."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from .core import available_devices, preset_settings

        _warm_up_torch()
        self._viewer = napari_viewer
        self._preset_settings = preset_settings
        self._worker = None
        # (signal, handler) pairs of the running worker's result signals, cut when the dock closes.
        self._worker_slots: list[tuple[Any, Callable]] = []
        self._cancel = threading.Event()
        # Stop and keep: the run ends at the next step, keeping its running average.
        self._keep = threading.Event()
        self._plan: RunPlan | None = None
        self._preview_layer: Image | None = None
        self._run_notes: list[str] = []  # the planner's notes for the run (how the image is cut)
        self._stack_result: StackResultLayer | None = None
        # The estimate the run under way was started with, to correct the next ones by.
        self._run_estimate: Estimate | None = None
        # Whether the run under way stops by itself: its bar then follows time, not iterations.
        self._run_auto = False
        # The Shapes layer chosen as the Region, whose rectangles the estimate follows.
        self._watched_shapes: Shapes | None = None
        self._watched_mask: Labels | None = None
        self._mask_version = 0
        self._windows_cache: tuple[Any, Any] = (None, None)
        self.preview_seconds = PREVIEW_SECONDS
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self._update_estimate)

        self._build_inputs()
        self._build_options(available_devices())
        self._build_run_controls()
        self._lay_out()

        self._task_preset = self._current_preset()
        self._restore_settings()
        self._on_task_changed()

        layer_events = self._viewer.layers.events
        for emitter in (layer_events.inserted, layer_events.removed, layer_events.reordered, layer_events.renamed):
            emitter.connect(self._refresh_layers)
        self._viewer.dims.events.current_step.connect(self._update_plane_note)
        self._viewer.layers.selection.events.active.connect(self._follow_selection)
        # The current view (and so its estimate) moves with the camera; corner pixels follow a draw.
        camera = self._viewer.scene.camera if hasattr(self._viewer, "scene") else self._viewer.camera  # napari < 0.9
        for emitter in (camera.events.center, camera.events.zoom):
            emitter.connect(self._view_moved)
        # A run must not outlive the widget (closing napari mid-run): the worker checks this flag.
        self.destroyed.connect(self._cancel.set)
        self._refresh_layers()
        # A dock opened (or reopened) starts at the layer selected in the layer list, not the last.
        self._follow_selection()
        # The pickers only signal a change of layer; with none at all, the stack rows must hide too.
        self._on_image_changed()
        self._on_device_changed()

    # --- construction -------------------------------------------------------------------------

    def _build_inputs(self) -> None:
        self.image_picker = LayerComboBox(Image, exclude=is_preview)
        self.image_picker.setToolTip("The image layer to restore; it is never changed (the result is a new layer)")
        self.image_picker.currentIndexChanged.connect(self._on_image_changed)
        self.plane_note = QLabel()
        self.plane_note.setWordWrap(True)
        self.channel_picker = QComboBox()
        self.channel_picker.setToolTip("Restore one axis of the stack as the channels of one image")
        self.channel_picker.currentIndexChanged.connect(self._update_plane_note)
        self.planes_picker = QComboBox()
        self.planes_picker.addItem("current plane", False)
        self.planes_picker.addItem("all planes", True)
        self.planes_picker.addItem("volume (3D)", "volume")
        self.planes_picker.setToolTip(
            "current plane: the one the viewer shows, as a 2D layer; all planes: every plane of the "
            "stack, one after another, into one layer that fills as planes finish; volume: the whole "
            "z-stack at once with a 3D network, which also uses neighbouring slices (denoise, inpaint)"
        )
        self.planes_picker.currentIndexChanged.connect(self._update_plane_note)
        self.warm_start = QCheckBox("from the previous plane")
        self.warm_start.setToolTip(
            "Start each plane's fit from the previous plane's network, with a shorter, gentler "
            "schedule: faster when neighbouring planes look alike (z-stacks, time-lapses)"
        )
        self.task_picker = QComboBox()
        for label, task, factor in TASK_CHOICES:
            self.task_picker.addItem(label, (task, factor))
        self.task_picker.setToolTip("What to do to the image: the forward model the network's output is fitted through")
        self.task_picker.currentIndexChanged.connect(self._on_task_changed)
        self.preset_picker = QComboBox()
        for index, (name, description) in enumerate(PRESET_CHOICES):
            self.preset_picker.addItem(name, name)
            self.preset_picker.setItemData(index, f"{name}: {description}", Qt.ItemDataRole.ToolTipRole)
        self.preset_picker.setCurrentIndex(1)
        self.preset_picker.setToolTip(
            "fast: a narrow network, half the iterations, for a first look; default: stops by itself; "
            "paper: the official settings (slow). The time each takes on this image is shown next to it."
        )
        self.preset_picker.currentIndexChanged.connect(self._on_preset_changed)
        self.preset_costs = QLabel()
        self.preset_costs.setWordWrap(True)
        self.preset_costs.setToolTip("What each preset would take on the chosen image, region and device")
        self.region_picker = LayerComboBox(Shapes, none_text="whole image", auto_pick=False,
                                           extra=((CURRENT_VIEW, CURRENT_VIEW),))
        self.region_picker.setToolTip(
            "Restore only part of the image: a Shapes layer's selected rectangle (else its last shape), "
            "or what the canvas shows now. The result is a layer over that part alone."
        )
        self.region_picker.currentIndexChanged.connect(self._on_region_changed)
        self.new_region_button = QPushButton("New region")
        self.new_region_button.setToolTip("Add a Shapes layer over the image and start drawing a rectangle")
        self.new_region_button.clicked.connect(self.new_region)
        self.mask_picker = LayerComboBox(Labels, none_text="(none)")
        self.mask_picker.setToolTip("Labels layer whose painted pixels (label above 0) are filled in")
        self.mask_picker.currentIndexChanged.connect(self._update_mask_hint)
        self.mask_picker.currentIndexChanged.connect(self._on_mask_changed)
        self.mask_hint = QLabel()
        self.mask_hint.setWordWrap(True)
        self.new_mask_button = QPushButton("New mask")
        self.new_mask_button.setToolTip("Add an empty labels layer over the image and start painting")
        self.new_mask_button.clicked.connect(self.new_mask)
        self.psf_picker = LayerComboBox(Image, none_text="(none)", auto_pick=False, exclude=is_preview)
        self.psf_picker.setToolTip("2D image layer holding the blur kernel (point-spread function)")
        self.guide_picker = LayerComboBox(Image, none_text="(none)", auto_pick=False, exclude=is_preview)
        self.guide_picker.setToolTip(
            "Optional: an image of the same scene (a flash photograph, a cleaner channel) that replaces the "
            "network's random input, so the result takes its detail; it must have the result's height and width"
        )

    def _build_options(self, devices: list[str]) -> None:
        self.iterations = QSpinBox()
        self.iterations.setRange(0, 1_000_000)
        self.iterations.setSingleStep(100)
        self.iterations.setSpecialValueText("auto")
        self.iterations.setToolTip("auto: the preset's count, stopping early once the output stops improving")
        self.iterations.valueChanged.connect(self._update_iterations_hint)
        self.iterations.valueChanged.connect(self._schedule_estimate)
        self.iterations_hint = QLabel()
        self.iterations_hint.setWordWrap(True)
        self.advanced: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for name, _label, low, high, decimals, tooltip in ADVANCED_FIELDS:
            box = QSpinBox() if decimals is None else QDoubleSpinBox()
            if decimals is not None:
                box.setDecimals(decimals)
                box.setSingleStep(10 ** -(decimals - 1))
            box.setRange(low, high)
            box.setToolTip(tooltip)
            box.valueChanged.connect(self._schedule_estimate)
            self.advanced[name] = box
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Same image, settings and seed give the same result")
        self.device = QComboBox()
        self.device.addItems(["auto", *devices])
        self.device.setToolTip("Where the network runs: auto picks a GPU (cuda, then mps) if there is one, else CPU")
        self.device.currentIndexChanged.connect(self._on_device_changed)
        self.device_note = QLabel()
        self.device_note.setWordWrap(True)
        self.device_note.setToolTip("What the Device choice (under Advanced) runs on here")
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("auto")
        self.threads.setToolTip(
            "CPU threads; auto uses one for small images and, for large ones, the cores other work leaves free"
        )
        self.threads.valueChanged.connect(self._schedule_estimate)
        self.compile = QComboBox()
        self.compile.addItems(COMPILE_CHOICES)
        self.compile.setToolTip(
            "Compile the network for faster steps (auto: only where the run is long enough to repay "
            "the compile, tens of seconds before the first step, during which Cancel waits)."
        )

    def _build_run_controls(self) -> None:
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Restore with these choices; the result is added as a new layer")
        self.run_button.clicked.connect(self.run)
        self.estimate = QLabel()
        self.estimate.setWordWrap(True)
        self.estimate.setToolTip(
            "From seconds per step measured for each preset's network on a CPU, the image size and the "
            "iteration cap; after a run, corrected by how fast that run's steps were"
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run and discard it")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.stop_keep_button = QPushButton("Stop and keep")
        self.stop_keep_button.setToolTip(
            "Stop the run now and keep its current result as the layer (for all planes: the "
            "planes finished so far)"
        )
        self.stop_keep_button.setEnabled(False)
        self.stop_keep_button.clicked.connect(self.stop_and_keep)
        self.progress = QProgressBar()
        self.progress.setToolTip(
            "Iterations done; for a run that stops by itself, or one in tiles or planes, the share of "
            "the estimated time"
        )
        self._show_idle_progress()
        self.status = QLabel(IDLE_STATUS)
        self.status.setWordWrap(True)
        self.curve = LossCurve(CurveHistory())

    def _lay_out(self) -> None:
        form = self._form = _HidingFormLayout()
        form.add_row("Image", self.image_picker)
        self._plane_note_row = form.add_row(None, self.plane_note)
        self._channel_row = form.add_row("Channels", self.channel_picker)
        self._planes_row = form.add_row("Planes", self.planes_picker)
        self._warm_start_row = form.add_row("Warm start", self.warm_start)
        form.add_row("Task", self.task_picker)
        mask_field = QWidget()
        mask_row = QHBoxLayout(mask_field)
        mask_row.setContentsMargins(0, 0, 0, 0)
        mask_row.addWidget(self.mask_picker, 1)
        mask_row.addWidget(self.new_mask_button)
        self._mask_row = form.add_row("Mask", mask_field)
        self._mask_hint_row = form.add_row(None, self.mask_hint)
        self._psf_row = form.add_row("PSF", self.psf_picker)
        form.add_row("Guide", self.guide_picker)
        region_field = QWidget()
        region_row = QHBoxLayout(region_field)
        region_row.setContentsMargins(0, 0, 0, 0)
        region_row.addWidget(self.region_picker, 1)
        region_row.addWidget(self.new_region_button)
        form.add_row("Region", region_field)
        form.add_row("Preset", self.preset_picker)
        form.add_row(None, self.preset_costs)
        form.add_row("Iterations", self.iterations)
        form.add_row(None, self.iterations_hint)
        form.add_row("Runs on", self.device_note)

        advanced_form = QFormLayout()
        for name, label, *_ in ADVANCED_FIELDS:
            advanced_form.addRow(label, self.advanced[name])
        advanced_form.addRow("Seed", self.seed)
        advanced_form.addRow("Device", self.device)
        advanced_form.addRow("Threads", self.threads)
        advanced_form.addRow("Compile", self.compile)
        advanced_content = QWidget()
        advanced_content.setLayout(advanced_form)
        self.advanced_section = QCollapsible("Advanced")
        self.advanced_section.setToolTip("The network, the optimiser, the seed and where it runs")
        self.advanced_section.addWidget(advanced_content)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_keep_button)
        buttons.addWidget(self.cancel_button)

        # The controls scroll inside the dock: napari's dock has no scroll area, so a dock shorter
        # than the controls would squeeze their wrapped lines to one (cutting them off) and hold
        # the whole window at the dock's height.
        content = QWidget()
        scroll = _VerticalScrollArea(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.addLayout(form)
        layout.addWidget(self.advanced_section)
        layout.addWidget(self.estimate)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.curve)
        layout.addStretch(1)
        # Controls whose values a running job was started with: frozen until it ends.
        self._run_inputs: list[QWidget] = [
            self.image_picker, self.channel_picker, self.planes_picker, self.warm_start, self.task_picker,
            self.mask_picker, self.new_mask_button, self.psf_picker, self.guide_picker, self.region_picker,
            self.new_region_button, self.preset_picker, self.iterations, self.advanced_section, self.run_button,
        ]

    # --- reactions to the viewer and the controls ----------------------------------------------

    def _refresh_layers(self, event: Any = None) -> None:
        # The mask picker first: a change of image proposes a mask from its fresh list.
        mask = self.mask_picker.value()
        for picker in (self.mask_picker, self.psf_picker, self.guide_picker, self.region_picker, self.image_picker):
            picker.refresh(self._viewer.layers)
        if self.mask_picker.value() is not mask:  # the chosen mask went: the best one, not the last
            self._propose_mask()

    def _follow_selection(self, event: Any = None) -> None:
        """The layer the user selects in the layer list becomes the image (or the mask)."""
        if self._busy:
            return
        active = self._viewer.layers.selection.active
        if isinstance(active, Image) and self._looks_like_psf(active):
            # Deblurring: a small 2D layer (a kernel just added or picked) is the PSF, and the
            # image being deblurred stays the image.
            self.psf_picker.set_value(active)
        elif isinstance(active, Image):
            self.image_picker.set_value(active)
        elif isinstance(active, Labels):
            self.mask_picker.set_value(active)

    def _looks_like_psf(self, layer: Image) -> bool:
        """Deblurring, and ``layer`` is 2D gray and at most a quarter of the chosen image's
        height and width: a blur kernel, not an image to restore."""
        image = self.image_picker.value()
        if not task_spec(self._current_task()[0]).needs_psf or image is None or layer is image:
            return False
        if layer.rgb or layer.multiscale or layer.data.ndim != 2 or image.multiscale:
            return False
        spatial = image.data.shape[-3:-1] if image.rgb else image.data.shape[-2:]
        return all(4 * k <= n for k, n in zip(layer.data.shape, spatial, strict=True))

    def _mask_scores(self, image: Image) -> list[tuple[Labels, tuple[bool, bool]]]:
        """The labels layers that may be the image's mask, with how well each suits it."""
        names = [layer.name for layer in self.image_picker.layers()]
        scored = [
            (labels, mask_score(labels.name, labels.data.shape, image.name, image.data.shape, rgb=image.rgb,
                                image_names=names))
            for labels in self.mask_picker.layers()
        ]
        return [(labels, score) for labels, score in scored if score is not None]

    def _propose_mask(self) -> None:
        """Pick the mask that suits the image best (named after it, then of its shape), unless
        the one chosen suits it as well."""
        image = self.image_picker.value()
        if image is None or image.multiscale or self._busy:
            return
        scores = self._mask_scores(image)
        current = self.mask_picker.value()
        best = max((score for _, score in scores), default=None)
        if best is not None and any(labels is current and score == best for labels, score in scores):
            return
        # Among equals the newest, at the end of the layer list.
        self.mask_picker.set_value(next((labels for labels, score in reversed(scores) if score == best), None))

    def _update_mask_hint(self, *_: Any) -> None:
        """Inpainting an image with no mask chosen: say how to make one (the image stays the
        user's choice, even where another image has a mask)."""
        image = self.image_picker.value()
        needs_mask = task_spec(self._current_task()[0]).needs_mask
        missing = needs_mask and image is not None and self.mask_picker.value() is None
        if missing:
            self.mask_hint.setText(
                f"{image.name!r} has no mask yet: press New mask and paint the pixels to fill in "
                "(or choose a labels layer of its size)."
            )
        self._form.set_row_visible(self._mask_hint_row, missing)

    def _clear_outcome(self) -> None:
        """Forget the last run's message, progress and curve: they were about other choices."""
        if not self._busy:
            self.status.setText(IDLE_STATUS)
            self._show_idle_progress()
            self.curve.clear()
            self._schedule_estimate()

    def _show_idle_progress(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")

    def _on_image_changed(self, index: int = -1) -> None:
        self._propose_mask()
        self._update_mask_hint()
        self._clear_outcome()
        layer = self.image_picker.value()
        previous = self.channel_picker.currentData()
        self.channel_picker.blockSignals(True)
        self.channel_picker.clear()
        self.channel_picker.addItem("none (one plane)", None)
        if layer is not None and not layer.rgb:
            shape = layer.data.shape
            for axis in range(_leading_axes(layer)):
                self.channel_picker.addItem(f"axis {axis} ({shape[axis]})", axis)
        self.channel_picker.blockSignals(False)
        if previous is not None and previous < self.channel_picker.count() - 1:
            self.channel_picker.setCurrentIndex(previous + 1)
        self._form.set_row_visible(self._channel_row, self.channel_picker.count() > 1)
        self._update_plane_note()

    def _update_plane_note(self, *_: Any) -> None:
        """Offer the choice of planes for a stack, and say which will be restored: the one the
        viewer shows, or all of them."""
        layer = self.image_picker.value()
        plane_axes = _plane_axes(layer, self.channel_picker.currentData())
        self._form.set_row_visible(self._planes_row, bool(plane_axes))
        self._form.set_row_visible(self._warm_start_row, self._all_planes())
        if not plane_axes:
            self._form.set_row_visible(self._plane_note_row, False)
            return
        if self._all_planes():
            count = math.prod(layer.data.shape[axis] for axis in plane_axes)
            axes = ("axis " if len(plane_axes) == 1 else "axes ") + ", ".join(str(axis) for axis in plane_axes)
            text = f"{layer.ndim}D image: restores all {count} planes (along {axes}), one after another."
        elif self._volume():
            depth = plane_axes[-1]
            text = (f"{layer.ndim}D image: restores the {layer.data.shape[depth]} slices along axis {depth} "
                    "together, as one volume with a 3D network")
            if len(plane_axes) > 1:
                step = self._data_step(layer)
                text += " (at " + ", ".join(f"axis {axis} = {step[axis]}" for axis in plane_axes[:-1]) + ")"
            text += "."
        else:
            step = self._data_step(layer)
            position = ", ".join(f"axis {axis} = {step[axis]}" for axis in plane_axes)
            text = f"{layer.ndim}D image: restores the displayed plane ({position})."
        self.plane_note.setText(text)
        self._form.set_row_visible(self._plane_note_row, True)

    def _planes_choice(self) -> bool | str:
        """The Planes choice (False: current plane, True: all planes, "volume"), if the image
        has planes to choose from; else False."""
        layer = self.image_picker.value()
        has_planes = bool(_plane_axes(layer, self.channel_picker.currentData()))
        return self.planes_picker.currentData() if has_planes else False

    def _all_planes(self) -> bool:
        """Whether Run restores every plane, one after another."""
        return self._planes_choice() is True

    def _volume(self) -> bool:
        """Whether Run restores the stack as one volume with a 3D network."""
        return self._planes_choice() == "volume"

    def _data_step(self, layer: Image) -> list[int]:
        """The viewer's current position in the layer's data coordinates (pixel indices)."""
        return [round(float(value)) for value in layer.world_to_data(self._viewer.dims.point)]

    def _current_task(self) -> tuple[str, int]:
        return self.task_picker.currentData()

    def _preset_name(self) -> str:
        return self.preset_picker.currentData()

    def _current_preset(self) -> Settings:
        task, factor = self._current_task()
        return self._preset_settings(task, self._preset_name(), factor)

    def _follow_preset(self) -> None:
        """Advanced values still at the old task's or preset's settings follow the new ones;
        edited ones stay."""
        preset = self._current_preset()
        for name, box in self.advanced.items():
            if _shows(box, getattr(self._task_preset, name)):
                box.setValue(getattr(preset, name))
        self._task_preset = preset
        self._update_iterations_hint()

    def _on_task_changed(self, index: int = -1) -> None:
        task, _ = self._current_task()
        spec = task_spec(task)
        self._form.set_row_visible(self._mask_row, spec.needs_mask)
        self._form.set_row_visible(self._psf_row, spec.needs_psf)
        self._follow_preset()
        self._update_mask_hint()
        self._clear_outcome()

    def _on_preset_changed(self, index: int = -1) -> None:
        self._follow_preset()
        self._clear_outcome()

    def _on_region_changed(self, index: int = -1) -> None:
        """Follow the chosen Shapes layer's rectangles (drawn, moved, selected) in the estimate."""
        region = self.region_picker.value()
        self._watched_shapes = _follow_events(self._watched_shapes, region if isinstance(region, Shapes) else None,
                                              ("data", "highlight"), self._schedule_estimate)
        self._clear_outcome()

    def _on_mask_changed(self, index: int = -1) -> None:
        """Follow painting on the chosen mask in the estimate: inpainting fits only windows
        around the painted pixels, so what is painted sets the time."""
        mask = self.mask_picker.value()
        self._watched_mask = _follow_events(self._watched_mask, mask if isinstance(mask, Labels) else None,
                                            ("paint", "data"), self._mask_painted)
        self._mask_painted()

    def _view_moved(self, event: Any = None) -> None:
        if self.region_picker.value() == CURRENT_VIEW:
            self._schedule_estimate()

    def _on_device_changed(self, index: int = -1) -> None:
        try:
            text = describe_device(self.device.currentText())
        except ValueError as exc:
            text = str(exc)
        self.device_note.setText(text)
        self._schedule_estimate()

    # --- the time a run will take --------------------------------------------------------------

    def _schedule_estimate(self, *_: Any) -> None:
        if not self._busy:
            self._estimate_timer.start()

    def _estimate_for(self, preset: str) -> Estimate:
        """What a run with the current choices and ``preset`` would cost. Raises ValueError
        with the reason when it cannot run (no image, a region that is not one)."""
        layer = self.image_picker.value()
        if layer is None or layer.multiscale:
            raise ValueError("pick an image")
        task, factor = self._current_task()
        spatial = spatial_shape(layer)
        region = self._region_of(layer)
        if region is not None:
            spatial = region.shape
        overrides = self._advanced_overrides() if preset == self._preset_name() else {}
        from .core import resolve_settings

        settings = resolve_settings(task, preset, scale=factor, iterations=self.iterations.value() or None,
                                    **overrides)
        fits = 1
        if self._all_planes():
            axes = _plane_axes(layer, self.channel_picker.currentData())
            fits = math.prod(layer.data.shape[axis] for axis in axes)
        return estimate_run(preset, settings, spatial, factor=factor, fits=fits, device=self.device.currentText(),
                            threads=self.threads.value() or None, compile=self.compile.currentText(),
                            calibration=_CALIBRATION, windows=self._fill_windows(task, preset, settings, region))

    def _fill_windows(self, task: str, preset: str, settings: Any, region: Any) -> list[tuple[int, int]] | None:
        """The sizes of the fits inpainting will make around the painted pixels of a 2D mask
        (windows, or the tiles that hold them: the core's own rule, ``tiling.fill_parts``), or
        None: the whole plane is fitted (another task, the paper preset, which returns the
        network's output everywhere, a stack)."""
        from .core.options import keeps_known

        labels = self.mask_picker.value()
        if not keeps_known(task, preset) or labels is None or labels.ndim != 2 or self._all_planes():
            return None
        key = (id(labels), self._mask_version, None if region is None else region.label(), settings.scales,
               settings.stop_band, settings.channels, self.device.currentText())
        if self._windows_cache[0] != key:
            # Once per change of the mask: the three presets' estimates share it.
            from .core.device import select_device
            from .core.tiling import auto_tile_size, fill_parts

            image = self.image_picker.value()
            data = np.asarray(labels.data)
            if region is not None and data.shape == spatial_shape(image):
                data = region.crop(data)
            try:
                side = auto_tile_size(data.shape, settings, 3 if image is not None and image.rgb else 1, 1,
                                      select_device(self.device.currentText()))
            except ValueError:
                side = None
            self._windows_cache = (key, fill_parts(data > 0, settings, side))
        return self._windows_cache[1]

    def _mask_painted(self, *_: Any) -> None:
        self._mask_version += 1
        self._schedule_estimate()

    def _update_estimate(self) -> None:
        """The time before Run, and what each preset would cost, for the current choices."""
        if self._busy:
            return
        if self._volume():
            self.estimate.setText("Time: no measured figures for volumes (a 3D network); shown once it runs.")
            self.preset_costs.setText("")
            return
        costs = []
        for name, _ in PRESET_CHOICES:
            try:
                costs.append(f"{name} {self._estimate_for(name).short_text()}")
            except ValueError:
                costs = []
                break
        self.preset_costs.setText(" · ".join(costs))
        try:
            self.estimate.setText(self._estimate_for(self._preset_name()).text())
        except ValueError as exc:
            self.estimate.setText(f"Time: {exc}.")

    def _update_iterations_hint(self, *_: Any) -> None:
        preset = self._task_preset
        if self.iterations.value() == 0 and not preset.auto_stop:
            text = f"preset: exactly {preset.iterations}, as the paper runs them; no automatic stop"
        elif self.iterations.value() == 0:
            text = f"preset: up to {preset.iterations}, stopping once the output stops improving"
        else:
            text = f"exactly {self.iterations.value()} (preset: up to {preset.iterations}); no automatic stop"
        self.iterations_hint.setText(text)

    # --- remembered settings ------------------------------------------------------------------

    def _advanced_overrides(self) -> dict[str, float]:
        """Advanced values the user changed from the task's preset (the others stay exact:
        the preset's input noise 1/30 is not the 0.0333 its field shows)."""
        preset = self._current_preset()
        return {
            name: box.value() for name, box in self.advanced.items() if not _shows(box, getattr(preset, name))
        }

    def settings(self) -> dict[str, Any]:
        """The user's choices, as saved between sessions."""
        task, factor = self._current_task()
        return {
            "task": task,
            "factor": factor,
            "iterations": self.iterations.value(),
            "advanced": self._advanced_overrides(),
            "seed": self.seed.value(),
            "device": self.device.currentText(),
            "threads": self.threads.value(),
            "compile": self.compile.currentText(),
            "preset": self._preset_name(),
            "advanced_open": self.advanced_section.isExpanded(),
            "all_planes": self.planes_picker.currentData() is True,
            "volume": self.planes_picker.currentData() == "volume",
            "warm_start": self.warm_start.isChecked(),
        }

    def _restore_settings(self) -> None:
        saved = load_settings()
        for index, (_, task, factor) in enumerate(TASK_CHOICES):
            if (task, factor) == (saved.get("task"), saved.get("factor")):
                self.task_picker.setCurrentIndex(index)
        if saved.get("preset") in PRESETS:
            self.preset_picker.setCurrentIndex(self.preset_picker.findData(saved["preset"]))
        preset = self._current_preset()
        self._task_preset = preset
        overrides = saved.get("advanced") if isinstance(saved.get("advanced"), dict) else {}
        for name, box in self.advanced.items():
            value = overrides.get(name, getattr(preset, name))
            box.setValue(value if isinstance(value, (int, float)) else getattr(preset, name))
        for box, key in ((self.iterations, "iterations"), (self.seed, "seed"), (self.threads, "threads")):
            if isinstance(saved.get(key), int):
                box.setValue(saved[key])
        if saved.get("device") in [self.device.itemText(i) for i in range(self.device.count())]:
            self.device.setCurrentText(saved["device"])
        if saved.get("compile") in COMPILE_CHOICES:
            self.compile.setCurrentText(saved["compile"])
        if saved.get("advanced_open"):
            self.advanced_section.expand(animate=False)
        if saved.get("volume") is True:
            self.planes_picker.setCurrentIndex(2)
        elif isinstance(saved.get("all_planes"), bool):
            self.planes_picker.setCurrentIndex(int(saved["all_planes"]))
        self.warm_start.setChecked(saved.get("warm_start") is True)

    # --- actions ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def _busy(self) -> bool:
        """A run is starting, going or ending: the viewer's changes (its own layers, the selection
        they restore) must not move the pickers away from what it runs with."""
        return self._plan is not None

    def new_mask(self) -> Labels | None:
        """Add an empty labels layer over the image, select it and switch to painting."""
        image = self.image_picker.value()
        if image is None:
            show_error("napari-dip: pick an image layer first; the mask is made to match it")
            return None
        labels = unwrapped(self._viewer.add_labels(
            np.zeros(spatial_shape(image), dtype=np.uint8),
            name=new_mask_name(image.name, [layer.name for layer in self._viewer.layers]),
            scale=tuple(image.scale[-2:]),
            translate=tuple(image.translate[-2:]),
        ))
        self.mask_picker.set_value(labels)
        self._viewer.layers.selection.active = labels
        labels.selected_label = 1
        labels.brush_size = max(1, min(labels.data.shape) // 25)
        labels.mode = "paint"
        return labels

    def new_region(self) -> Shapes | None:
        """Add an empty Shapes layer over the image, choose it as the Region and start drawing a
        rectangle."""
        image = self.image_picker.value()
        if image is None:
            show_error("napari-dip: pick an image layer first; the region is drawn over it")
            return None
        shapes = add_region_layer(self._viewer, image)
        self.region_picker.set_value(shapes)
        self._viewer.layers.selection.active = shapes
        shapes.mode = "add_rectangle"
        return shapes

    def _region_of(self, layer: Image) -> Region | None:
        """The rectangle of ``layer``'s plane the Region choice picks (None: the whole image)."""
        return region_in(layer, self.region_picker.value(), self._viewer.dims.point)

    def run(self) -> None:
        """Start a run with the current choices; problems become a notification."""
        if self.running:
            return
        from .core import RestoreOptions, plan_compiles

        try:
            plan = self._plan_run()
            options = RestoreOptions.from_kwargs(plan.task, **plan.core_kwargs)
            # A compile would hold Python's lock for up to a second at a time: in a worker
            # process it cannot freeze the viewer (napari_dip/_process.py).
            in_process = plan_compiles(plan.selection.image, options)
        except ValueError as exc:
            self._fail(str(exc))
            return
        save_settings(self.settings())
        try:
            self._run_estimate = self._estimate_for(self._preset_name())
        except ValueError:
            self._run_estimate = None
        self._run_auto = bool(planned_settings(plan)["auto_stop"])
        self._plan = plan
        self._cancel.clear()
        self._keep.clear()
        keep = None
        image = plan.selection.image
        if plan.all_planes:
            from .core.stacks import restore_stack_iter

            generator = (
                run_in_process("restore_stack_iter", image, options, cancel=self._cancel,
                               report_seconds=REPORT_SECONDS) if in_process
                else restore_stack_iter(image, options=options)
            )
            self._stack_result = StackResultLayer(self._viewer, plan)
            always, on_yielded, on_returned, on_errored = (
                ends_a_plane, self._on_plane_progress, self._on_stack_returned, self._on_stack_errored
            )
        else:
            from .core import restore_iter

            keep = self._keep
            generator = (
                run_in_process("restore_iter", image, options, cancel=self._cancel, keep=keep,
                               report_seconds=REPORT_SECONDS) if in_process
                else restore_iter(image, options=options, preview_now=keep.is_set)
            )
            self._preview_layer = self._add_preview_layer(plan)
            self.progress.setFormat("%v / %m")  # iterations, where a stack run showed planes
            always, on_yielded, on_returned, on_errored = (
                carries_preview, self._on_progress, self._on_returned, self._on_errored
            )
        self.curve.start()
        worker = create_worker(
            drive, generator, self._cancel, always=always, keep=keep, report_seconds=REPORT_SECONDS,
            record=self.curve.history.record, _start_thread=False, _ignore_errors=True
        )
        self._worker_slots = [(worker.yielded, on_yielded), (worker.returned, on_returned),
                              (worker.errored, on_errored)]
        for signal, handler in self._worker_slots:
            signal.connect(handler)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True)
        compiling = " (compiling the network first: about a minute)" if in_process else ""
        self._run_notes = []
        self.status.setText(f"Starting {plan.name}{compiling} …")
        worker.start()

    def cancel(self) -> None:
        """Stop the run at its next step. No result layer is added, except for all planes of a
        stack, whose result layer keeps the planes already finished."""
        if self.running:
            self._cancel.set()
            self.status.setText("Cancelling …")

    def stop_and_keep(self) -> None:
        """End the run at its next step and keep the current result as the result layer: the
        running average for one image, the planes finished so far for all planes of a stack."""
        if not self.running:
            return
        self._keep.set()
        if self._plan.all_planes:
            self._cancel.set()
        self.status.setText("Stopping …")

    def _abandon_run(self) -> None:
        """End the run now because the widget goes away (its dock was closed): the worker's
        handlers go with the widget, so they are cut off and the run's layers settled here."""
        if not self.running:
            return
        self._cancel.set()
        for signal, handler in self._worker_slots:
            signal.disconnect(handler)
        self._worker_slots = []
        self._remove_preview()
        if self._stack_result is not None:
            self._stack_result.stop("cancelled: the dock was closed")

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt's name)
        # napari's remove_dock_widget (the dock's close button) takes the widget out of its dock.
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self._abandon_run()
        super().changeEvent(event)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        self._abandon_run()
        super().closeEvent(event)

    def _plan_run(self) -> RunPlan:
        layer = self.image_picker.value()
        if layer is None:
            raise ValueError("there is no image layer to restore: open an image (or File → Open Sample → napari-dip)")
        if layer.multiscale:
            raise ValueError(
                f"layer {layer.name!r} is multiscale, which napari-dip cannot restore: "
                "open one resolution level as a plain image"
            )
        task, factor = self._current_task()
        channel_axis = self.channel_picker.currentData()
        all_planes = self._all_planes()
        volume = self._volume()
        region = self._region_of(layer)
        # A region run restores that rectangle of every plane it restores, as if it were the image.
        data = layer.data if region is None else region.crop(layer.data, rgb=layer.rgb)
        if volume:
            from .core import VOLUME_TASKS

            if task not in VOLUME_TASKS:
                raise ValueError(
                    f"a volume can be denoised or inpainted, not {self.task_picker.currentText().lower()}: "
                    "choose Planes → current plane or all planes for that"
                )
            selection = select_volume(data, rgb=layer.rgb, step=self._data_step(layer), channel_axis=channel_axis)
        elif all_planes:
            selection = select_stack(data, rgb=layer.rgb, channel_axis=channel_axis)
        else:
            selection = select_input(data, rgb=layer.rgb, step=self._data_step(layer), channel_axis=channel_axis)
        kwargs: dict[str, Any] = {
            "preset": self._preset_name(),
            "channel_axis": selection.channel_axis,
            "iterations": self.iterations.value() or None,
            "seed": self.seed.value(),
            "device": self.device.currentText(),
            "threads": self.threads.value() or None,
            # A stack shows its finished planes instead: a preview would cost time in every
            # plane's fit and has no layer to go to.
            "preview_seconds": None if all_planes else self.preview_seconds,
            "compile": self.compile.currentText(),
            **self._advanced_overrides(),
        }
        if all_planes:
            kwargs["warm_start"] = self.warm_start.isChecked()
        if volume:
            kwargs["volume"] = True
        spec = task_spec(task)
        if spec.needs_mask:
            labels = self.mask_picker.value()
            if labels is None:
                raise ValueError("inpainting needs a mask: pick a labels layer, or press New mask and paint")
            mask_of = stack_mask if all_planes else volume_mask if volume else fill_mask
            labels_data, image_shape = labels.data, layer.data.shape
            if region is not None and tuple(labels_data.shape[-2:]) == spatial_shape(layer):
                labels_data, image_shape = region.crop(labels_data), data.shape
            try:
                kwargs["mask"] = mask_of(labels_data, image_shape=image_shape, rgb=layer.rgb, selection=selection)
            except ValueError as exc:
                if region is None or "empty" not in str(exc):
                    raise
                raise ValueError(
                    f"no pixel of the mask is painted inside the region ({region.label()}): paint there, "
                    "or move the region over the painted pixels"
                ) from None
        if spec.needs_scale:
            kwargs["scale"] = factor
        if spec.needs_psf:
            kwargs["psf"] = self._psf()
        if self.guide_picker.value() is not None:
            kwargs["guide"] = self._guide(layer, region, all_planes or volume)
        axes = [axis for axis in selection.kept_axes if axis < layer.ndim]
        scale = tuple(float(layer.scale[axis]) for axis in axes)
        translate = tuple(float(layer.translate[axis]) for axis in axes)
        return RunPlan(
            source=layer.name,
            task=task,
            factor=factor,
            selection=selection,
            scale=scale,
            translate=translate if region is None else region.translate(scale, translate),
            rgb=layer.rgb,
            colormap=None if layer.rgb else layer.colormap.name,
            contrast_limits=tuple(layer.contrast_limits),
            core_kwargs=kwargs,
            volume=volume,
            region=region,
        )

    def _guide(self, layer: Image, region: Any, whole_stack: bool) -> Any:
        """The guide layer's pixels for this run: a plane (or RGB plane) as it is, or, for a
        guide with the image's own planes, the plane on view (every plane when all are restored);
        cut to the region. The core checks its size against the result's."""
        guide = self.guide_picker.value()
        if guide is layer:
            raise ValueError(f"the guide {guide.name!r} is the image being restored: pick another image of the scene")
        data = guide.data
        planes = data.ndim - (3 if guide.rgb else 2)
        if planes > 0 and not whole_stack:
            step = self._data_step(guide)
            data = data[tuple(min(max(step[axis], 0), data.shape[axis] - 1) for axis in range(planes))]
        if region is not None:
            data = region.crop(data, rgb=guide.rgb)
        return np.asarray(data)

    def _psf(self) -> np.ndarray:
        layer = self.psf_picker.value()
        if layer is None:
            raise ValueError("deblurring needs a PSF: pick the image layer that holds the blur kernel")
        if layer is self.image_picker.value():
            raise ValueError(f"the PSF {layer.name!r} is the image being deblurred: pick the layer that holds "
                             "the blur kernel (a small image)")
        psf = np.asarray(layer.data, dtype=np.float64)
        if psf.ndim != 2:
            raise ValueError(f"the PSF layer {layer.name!r} must be 2D, got shape {psf.shape}")
        return psf

    # --- worker signals (all on the GUI thread) -----------------------------------------------

    def _on_progress(self, event: Progress) -> None:
        if event.message is not None:
            # A note from the planner (how the image is cut): no step to show. It stays under
            # the step counter for the rest of the run, so the user still sees how it is cut.
            self._run_notes.append(event.message[0].upper() + event.message[1:] + ".")
            self.status.setText(" ".join(self._run_notes))
            return
        left = _time_left_suffix(event)
        best = getattr(event, "best_iteration", None)
        if event.part is None and self._run_auto:
            # The cap is not where it ends: the bar shows the share of the time the run is
            # expected to take. It does not wobble back with the step times, but it does step
            # back when the expected end moves (the output started settling again).
            total = event.elapsed + (event.eta or 0.0)
            shown = self.progress.value() if self.progress.maximum() == STACK_PROGRESS_STEPS else 0
            self.progress.setRange(0, STACK_PROGRESS_STEPS)
            share = round(STACK_PROGRESS_STEPS * event.elapsed / total) if total > 0 else 0
            wobble = 0 < shown - share <= STACK_PROGRESS_STEPS // 50
            self.progress.setValue(shown if wobble else share)
            self.progress.setFormat("%p %")
            found = f" · best at {best}" if best is not None else ""
            self._show_step(
                f"Iteration {event.iteration} (stops by itself, at most {event.iterations}) · "
                f"loss {event.loss:.3g}{found}{left}"
            )
        elif event.part is None:
            self.progress.setRange(0, event.iterations)
            self.progress.setValue(event.iteration)
            self._show_step(f"Iteration {event.iteration} / {event.iterations} · loss {event.loss:.3g}{left}")
        else:
            self.progress.setRange(0, STACK_PROGRESS_STEPS)
            self.progress.setValue(round(event.done_fraction * STACK_PROGRESS_STEPS))
            self.progress.setFormat(event.part.capitalize())
            self._show_step(f"{event.part.capitalize()} · iteration {event.iteration} / {event.iterations}{left}")
        layer = self._live_preview_layer()
        if event.preview is not None and layer is not None and not self._cancel.is_set():
            layer.data = event.preview
            layer.visible = True

    def _show_step(self, text: str) -> None:
        self.status.setText("\n".join([text, " ".join(self._run_notes)]) if self._run_notes else text)

    def _on_returned(self, result: Restoration | Kept | None) -> None:
        if result is None or self._cancel.is_set():
            self._remove_preview()
            self._show_idle_progress()
            self.status.setText("Cancelled; no layer was added.")
            return
        plan = self._plan
        if isinstance(result, Kept):
            image, metadata = result.event.preview, self._kept_metadata(result)
        else:
            image, metadata = result.image, {**result.metadata(), "source_layer": plan.source}
        if plan.selection.plane:
            metadata["plane"] = {str(axis): index for axis, index in plan.selection.plane.items()}
        if plan.region is not None:
            metadata["region"] = plan.region.as_metadata()
        metadata.setdefault("preset", plan.core_kwargs["preset"])
        data, meta, _ = plan.layer_data(image, plan.name, metadata)
        layer = self._live_preview_layer()
        self._preview_layer = None
        if layer is None:  # the user deleted the preview layer during the run
            layer = add_image_quietly(self._viewer, data, meta)
        else:
            # The preview layer becomes the result: no second layer creation (about 0.1 s of
            # vispy set-up on the GUI thread), and it keeps its place, visibility and selection.
            layer.data = data
            layer.contrast_limits = meta["contrast_limits"]
            layer.metadata = meta["metadata"]
            layer.name = meta["name"]
            layer.visible = True
        name = layer.name  # napari adds " [1]" where the name is taken: say the one the layer got
        if isinstance(result, Kept):
            event = result.event
            if not self._run_auto and event.part is None:
                self.progress.setValue(event.iteration)
            where = f"{event.part}, " if event.part else ""
            later = (" The parts not reached yet are kept as they were (not restored)."
                     if event.part and not _last_part(event.part) else "")
            self.status.setText(
                f"Stopped at {where}iteration {event.iteration} / {event.iterations} after "
                f"{_format_seconds(event.elapsed)}; {name!r} keeps the result so far.{later}"
            )
            show_info(f"napari-dip: stopped at iteration {event.iteration}; {name!r} keeps the result so far")
            return
        # Finished: a full bar (a run in parts counts in shares of the run, not in iterations).
        self.progress.setValue(self.progress.maximum())
        parts = len(result.parts or [])
        counted = f"{result.iterations} iterations" + (f" over {parts} parts" if parts > 1 else "")
        self.status.setText(f"Done: {counted} in {_format_seconds(result.elapsed)} ({result.stop_message}).")
        show_info(f"napari-dip: {name!r} is ready: {result.iterations} iterations in "
                  f"{_format_seconds(result.elapsed)}")
        estimate = self._run_estimate
        if estimate is not None and result.plan == "one fit" and not plan.volume and not estimate.compile_seconds:
            _CALIBRATION.learn(plan.core_kwargs["device"], estimate.table_step, result.elapsed, result.iterations)

    def _kept_metadata(self, kept: Kept) -> dict[str, Any]:
        """What a normal result's metadata says, for a run stopped by the user (Stop and keep)."""
        plan, event = self._plan, kept.event
        kwargs = plan.core_kwargs
        return {
            "task": plan.task,
            "iterations": event.iteration,
            "stopped": "by the user",
            "stop_reason": "user",
            "elapsed_seconds": round(event.elapsed, 3),
            "seed": kwargs["seed"],
            # The device the run used ("auto" resolved), as a finished run records it.
            "device": str(select_device(kwargs["device"])),
            "threads": kwargs["threads"],
            "best_iteration": event.best_iteration,
            "settings": planned_settings(plan),
            "preset": kwargs["preset"],
            "source_layer": plan.source,
        }

    def _on_errored(self, exc: Exception) -> None:
        self._remove_preview()
        self._show_idle_progress()
        self._fail(str(exc))

    def _on_plane_progress(self, event: PlaneProgress) -> None:
        self.progress.setRange(0, STACK_PROGRESS_STEPS)
        self.progress.setValue(round(event.fraction * STACK_PROGRESS_STEPS))
        plane = f"Plane {event.plane + 1} / {event.planes}"
        self.progress.setFormat(plane)
        left = _time_left_suffix(event)
        if event.restored is not None:
            # Even once Cancel is pressed: a finished plane is kept.
            self._stack_result.fill(event)
            text = f"{plane} restored{left}"
        elif event.message is not None:
            text = f"{plane}: {event.message}"
        else:
            text = f"{plane} · iteration {event.tile.step.iteration} / {event.tile.step.iterations}{left}"
        self.status.setText(text)

    def _on_stack_returned(self, result: StackRestoration | None) -> None:
        stack = self._stack_result
        if result is None:
            kept = self._keep.is_set()
            outcome = stack.stop("by the user" if kept else "cancelled")
            self._show_idle_progress()
            self.status.setText(f"{'Stopped' if kept else 'Cancelled'}: {outcome}.")
            show_info(f"napari-dip: {'stopped' if kept else 'cancelled'}; {outcome}")
            return
        stack.complete(result)
        low, high = min(result.iterations), max(result.iterations)
        iterations = f"{low} iterations each" if low == high else f"{low} to {high} iterations per plane"
        self.status.setText(f"Done: {stack.planes} planes in {_format_seconds(result.elapsed)} ({iterations}).")
        show_info(f"napari-dip: {stack.name!r} is ready: {stack.planes} planes in "
                  f"{_format_seconds(result.elapsed)}")

    def _on_stack_errored(self, exc: Exception) -> None:
        outcome = self._stack_result.stop(f"failed: {exc}")
        self.status.setText(f"Stopped: {exc}; {outcome}.")
        show_error(f"napari-dip: {exc}; {outcome}")

    def _on_finished(self) -> None:
        self.curve.stop()
        self._worker = None
        self._worker_slots = []
        self._plan = None
        self._stack_result = None
        self._set_running(False)
        self._schedule_estimate()  # the next run's, corrected by this one's speed

    def _fail(self, message: str) -> None:
        self.status.setText(f"Not run: {message}")
        show_error(f"napari-dip: {message}")

    def _add_preview_layer(self, plan: RunPlan) -> Image:
        """The layer previews go to: added hidden when the run starts, shown at the first preview.

        Adding it here, as a direct answer to the click, keeps the layer set-up out of the run.
        """
        placeholder = np.zeros(plan.selection.output_shape(plan.factor), dtype=plan.selection.image.dtype)
        data, meta, _ = plan.layer_data(placeholder, f"{plan.name} [preview]", {PREVIEW_KEY: True})
        return add_image_quietly(self._viewer, data, meta, visible=False)

    def _live_preview_layer(self) -> Image | None:
        layer = self._preview_layer
        return layer if layer is not None and layer in self._viewer.layers else None

    def _remove_preview(self) -> None:
        layer = self._live_preview_layer()
        self._preview_layer = None
        if layer is not None:
            self._viewer.layers.remove(layer)

    def _set_running(self, running: bool) -> None:
        for control in self._run_inputs:
            control.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.stop_keep_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)  # busy until the first step reports the total



def _last_part(part: str) -> bool:
    """Whether a progress event's ``part`` ("window 2/2", "plane 3/40, tile 9/9") is the last one."""
    counts = [piece.rsplit(" ", 1)[-1].split("/") for piece in part.split(", ")]
    return all(done == total for done, total in counts)


def _follow_events(old: Any, new: Any, names: tuple[str, ...], slot: Callable) -> Any:
    """Move ``slot`` from ``old`` layer's events ``names`` to ``new``'s (either may be None);
    returns ``new``, the layer now followed."""
    for layer, hook in ((old, "disconnect"), (new, "connect")):
        if layer is not None:
            for name in names:
                getattr(getattr(layer.events, name), hook)(slot)
    return new
