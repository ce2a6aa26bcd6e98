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
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ._layer_data import (
    LayerDataTuple,
    Selection,
    StackSelection,
    contrast_limits_for,
    fill_mask,
    mask_score,
    new_mask_name,
    result_layer_data,
    result_name,
    select_input,
    select_stack,
    select_volume,
    stack_mask,
    volume_mask,
)
from ._process import run_in_process
from ._run import Kept, carries_preview, drive, ends_a_plane
from ._widget_settings import load_settings, save_settings
from .core.tasks import task_spec, widget_choices

if TYPE_CHECKING:
    import napari

    from .core import Progress, Restoration, Settings
    from .core.stacks import PlaneProgress, StackRestoration

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

# Metadata key that marks the layer a run's previews go to: no picker offers it as an input.
PREVIEW_KEY = "napari_dip_preview"

IDLE_STATUS = "Pick an image and a task, then press Run."

# The core's "compile" setting; "auto" (the default, as in the core) compiles only where the
# run's pixels × iterations repay the compile (napari_dip.core.device.resolve_compile).
COMPILE_CHOICES = ("auto", "off", "on")

# Resolution of the progress bar over a whole stack: it follows the time-based fraction done,
# which moves within a plane, not only when a plane ends.
STACK_PROGRESS_STEPS = 1000


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, read from the layers on the GUI thread before it starts, so the
    result can be placed even if the input layer is changed or removed meanwhile."""

    source: str
    task: str
    factor: int
    selection: Selection | StackSelection
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    rgb: bool
    colormap: str | None
    contrast_limits: tuple[float, float]
    core_kwargs: dict[str, Any]
    volume: bool = False

    @property
    def name(self) -> str:
        return result_name(self.source, self.task, self.factor, self.selection.plane, self.volume)

    @property
    def all_planes(self) -> bool:
        return isinstance(self.selection, StackSelection)

    def layer_data(self, image: np.ndarray, name: str, metadata: dict | None = None) -> LayerDataTuple:
        return result_layer_data(
            image, name=name, scale=self.scale, translate=self.translate, factor=self.factor,
            rgb=self.rgb, colormap=self.colormap, reference_limits=self.contrast_limits, metadata=metadata,
        )


def _unwrapped(layer: Any) -> Any:
    """The layer itself, where napari handed over a proxy of it.

    napari gives a plugin's widget a ``PublicOnlyProxy`` of the viewer (a ``wrapt.ObjectProxy``):
    what its methods return (``add_labels``, ``selection.active``) are proxies, while iterating its
    layer list gives the layers themselves, so one layer arrives as two objects and an identity
    check between them fails. ``__wrapped__`` is wrapt's public way back to the object.
    """
    return getattr(layer, "__wrapped__", layer)


def _is_preview(layer: Any) -> bool:
    return layer.metadata.get(PREVIEW_KEY) is True


def _add_image_quietly(viewer: napari.viewer.Viewer, data: np.ndarray, meta: dict[str, Any], *,
                       visible: bool = True) -> Image:
    """Add an image layer, leaving the user's layer selection (and so the layer controls shown)
    as it was: a run's layers appear as they go, and must not take the controls away."""
    selection = set(viewer.layers.selection)
    active = viewer.layers.selection.active
    layer = _unwrapped(viewer.add_image(data, visible=visible, **meta))
    viewer.layers.selection.clear()
    viewer.layers.selection.update(selection)
    viewer.layers.selection.active = active
    return layer


def _planned_settings(plan: RunPlan) -> dict[str, Any]:
    """The settings a run starts with, resolved as the core resolves them: those of a single
    image's fit, or of a stack's first plane (warm-started planes then run fewer iterations at a
    lower learning rate, as the final metadata records)."""
    from .core import Settings, resolve_settings

    names = {field.name for field in fields(Settings)} - {"iterations"}
    kwargs = plan.core_kwargs
    advanced = {name: value for name, value in kwargs.items() if name in names}
    return resolve_settings(plan.task, scale=kwargs.get("scale"), iterations=kwargs["iterations"], **advanced).as_dict()


class StackResultLayer:
    """The result layer of an all-planes run: added, all zeros, when the run starts, and filled
    as planes finish, so finished planes can be looked at (and are kept) before the stack ends.

    Only the widget's worker-signal handlers call it: the layer is only touched on the GUI thread.
    """

    def __init__(self, viewer: napari.viewer.Viewer, plan: RunPlan):
        from .core.layout import Layout

        self._viewer = viewer
        self._plan = plan
        stack = plan.selection.image
        # The core's own layout, so that an event's plane position maps to the same place here.
        self._layout = Layout.of(tuple(stack.shape), plan.selection.channel_axis)
        self.planes = self._layout.planes
        self.finished = 0
        metadata = {
            "source_layer": plan.source,
            "task": plan.task,
            "planes": self.planes,
            "planes_finished": 0,
            "warm_start": plan.core_kwargs["warm_start"],
            "seed": plan.core_kwargs["seed"],
            "device": plan.core_kwargs["device"],
            "threads": plan.core_kwargs["threads"],
            "settings": _planned_settings(plan),
        }
        placeholder = np.zeros(self._layout.output_shape(plan.factor), dtype=stack.dtype)
        data, meta, _ = plan.layer_data(placeholder, plan.name, metadata)
        # Display limits from the first input plane rather than the zeros: a restored plane keeps
        # its input's range, and limits that change as planes arrive would undo the user's.
        first_plane = np.asarray(stack[self._layout.index(next(self._layout.positions()))])
        meta["contrast_limits"] = contrast_limits_for(first_plane, plan.contrast_limits)
        self._layer: Image | None = _add_image_quietly(viewer, data, meta)

    def live_layer(self) -> Image | None:
        """The result layer, unless the user has deleted it during the run."""
        layer = self._layer
        return layer if layer is not None and layer in self._viewer.layers else None

    def fill(self, event: PlaneProgress) -> None:
        """Put a finished plane into the layer and show it."""
        self.finished = event.plane + 1
        layer = self.live_layer()
        if layer is None:
            return
        layer.data[self._layout.index(event.index)] = event.restored
        layer.metadata["planes_finished"] = self.finished
        layer.refresh()

    def complete(self, result: StackRestoration) -> None:
        """Record how every plane's fit ran; re-add the result if its layer was deleted meanwhile."""
        metadata = {**result.metadata(), "source_layer": self._plan.source, "planes_finished": self.planes}
        layer = self.live_layer()
        if layer is None:
            data, meta, _ = self._plan.layer_data(result.image, self._plan.name, metadata)
            self._layer = _add_image_quietly(self._viewer, data, meta)
        else:
            layer.metadata = metadata

    def stop(self, reason: str) -> str:
        """End a run that did not finish: keep the finished planes, noting ``reason`` and how many
        there are in the layer's metadata, or remove the layer when none finished. Returns what
        became of the result, for the user."""
        layer = self.live_layer()
        if layer is None:
            return "the result layer had been deleted"
        if self.finished == 0:
            self._viewer.layers.remove(layer)
            return "no plane was finished, so no layer was added"
        layer.metadata = {**layer.metadata, "planes_finished": self.finished, "stopped": reason}
        kept = f"{self.finished} of {self.planes}"
        return f"{layer.name!r} keeps the planes that were finished, {kept}; the others are zero"


class LayerComboBox(QComboBox):
    """A layer picker that follows the viewer's layer list and keeps its choice while it exists.

    It holds the layers themselves, never napari's proxies of them (see ``_unwrapped``).
    """

    def __init__(self, layer_type: type, *, none_text: str | None = None, auto_pick: bool = True,
                 exclude: Callable[[Any], bool] | None = None):
        super().__init__()
        self._layer_type = layer_type
        self._none_text = none_text
        self._auto_pick = auto_pick
        self._exclude = exclude
        # Long layer names must not set the dock's minimum width: they are elided instead.
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)

    def refresh(self, layers: Any) -> None:
        current = self.value()
        candidates = [
            _unwrapped(layer) for layer in layers
            if isinstance(layer, self._layer_type) and not (self._exclude and self._exclude(layer))
        ]
        self.blockSignals(True)
        self.clear()
        if self._none_text is not None:
            self.addItem(self._none_text, None)
        for layer in candidates:
            self.addItem(layer.name, layer)
        if any(layer is current for layer in candidates):
            self.set_value(current)
        elif self._auto_pick and candidates:
            self.set_value(candidates[-1])
        self.blockSignals(False)
        if self.value() is not current:
            self.currentIndexChanged.emit(self.currentIndex())

    def value(self) -> Any:
        return self.currentData()

    def layers(self) -> list[Any]:
        """The layers offered, in the layer list's order."""
        return [self.itemData(index) for index in range(self.count()) if self.itemData(index) is not None]

    def set_value(self, layer: Any) -> bool:
        """Choose ``layer`` (None: the none entry); False if it is not offered."""
        layer = _unwrapped(layer)
        for index in range(self.count()):
            if self.itemData(index) is layer:
                self.setCurrentIndex(index)
                return True
        return False


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


def _format_seconds(seconds: float) -> str:
    """``4.2 s``, ``42 s``, ``12 min 05 s``, ``2 h 08 min``: as precise as a reader needs."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _shows(box: QSpinBox | QDoubleSpinBox, value: float) -> bool:
    """Whether a spin box displays ``value`` (compared as shown, at the box's precision)."""
    return box.textFromValue(box.value()) == box.textFromValue(value)


def _add_row(form: QFormLayout, label: str, field: QWidget) -> tuple[QLabel, QWidget]:
    """A form row that can be hidden (QFormLayout.setRowVisible needs Qt 6.4)."""
    label_widget = QLabel(label)
    form.addRow(label_widget, field)
    return label_widget, field


def _set_row_visible(row: tuple[QLabel, QWidget], visible: bool) -> None:
    for widget in row:
        widget.setVisible(visible)


def _spatial_shape(layer: Image) -> tuple[int, int]:
    shape = layer.data[0].shape if layer.multiscale else layer.data.shape
    return tuple(shape[-3:-1] if layer.rgb else shape[-2:])


def _leading_axes(layer: Image | None) -> int:
    """Non-spatial, non-RGB axes of an image layer (planes of a stack, time points, channels)."""
    if layer is None or layer.multiscale:
        return 0
    return layer.ndim - 2


def _plane_axes(layer: Image | None, channel_axis: int | None) -> list[int]:
    """The leading axes that run over planes: all but the one restored as channels."""
    return [axis for axis in range(_leading_axes(layer)) if axis != channel_axis]


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
        self._stack_result: StackResultLayer | None = None
        self.preview_seconds = PREVIEW_SECONDS

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
        # A run must not outlive the widget (closing napari mid-run): the worker checks this flag.
        self.destroyed.connect(self._cancel.set)
        self._refresh_layers()
        # The pickers only signal a change of layer; with none at all, the stack rows must hide too.
        self._on_image_changed()

    # --- construction -------------------------------------------------------------------------

    def _build_inputs(self) -> None:
        self.image_picker = LayerComboBox(Image, exclude=_is_preview)
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
        self.task_picker.currentIndexChanged.connect(self._on_task_changed)
        self.mask_picker = LayerComboBox(Labels, none_text="(none)")
        self.mask_picker.setToolTip("Labels layer whose painted pixels (label above 0) are filled in")
        self.new_mask_button = QPushButton("New mask")
        self.new_mask_button.setToolTip("Add an empty labels layer over the image and start painting")
        self.new_mask_button.clicked.connect(self.new_mask)
        self.psf_picker = LayerComboBox(Image, none_text="(none)", auto_pick=False, exclude=_is_preview)
        self.psf_picker.setToolTip("2D image layer holding the blur kernel (point-spread function)")

    def _build_options(self, devices: list[str]) -> None:
        self.iterations = QSpinBox()
        self.iterations.setRange(0, 1_000_000)
        self.iterations.setSingleStep(100)
        self.iterations.setSpecialValueText("auto")
        self.iterations.setToolTip("auto: the preset's count, stopping early once the output stops improving")
        self.iterations.valueChanged.connect(self._update_iterations_hint)
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
            self.advanced[name] = box
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Same image, settings and seed give the same result")
        self.device = QComboBox()
        self.device.addItems(["auto", *devices])
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("auto")
        self.threads.setToolTip(
            "CPU threads; auto uses one for small images and, for large ones, the cores other work leaves free"
        )
        self.compile = QComboBox()
        self.compile.addItems(COMPILE_CHOICES)
        self.compile.setToolTip(
            "Compile the network for faster steps (auto: only where the run is long enough to repay "
            "the compile, tens of seconds before the first step, during which Cancel waits)."
        )

    def _build_run_controls(self) -> None:
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
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
        self._show_idle_progress()
        self.status = QLabel(IDLE_STATUS)
        self.status.setWordWrap(True)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Image", self.image_picker)
        self._plane_note_row = _add_row(form, "", self.plane_note)
        self._channel_row = _add_row(form, "Channels", self.channel_picker)
        self._planes_row = _add_row(form, "Planes", self.planes_picker)
        self._warm_start_row = _add_row(form, "Warm start", self.warm_start)
        form.addRow("Task", self.task_picker)
        mask_field = QWidget()
        mask_row = QHBoxLayout(mask_field)
        mask_row.setContentsMargins(0, 0, 0, 0)
        mask_row.addWidget(self.mask_picker, 1)
        mask_row.addWidget(self.new_mask_button)
        self._mask_row = _add_row(form, "Mask", mask_field)
        self._psf_row = _add_row(form, "PSF", self.psf_picker)
        form.addRow("Iterations", self.iterations)
        form.addRow("", self.iterations_hint)

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
        self.advanced_section.addWidget(advanced_content)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_keep_button)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced_section)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        # Controls whose values a running job was started with: frozen until it ends.
        self._run_inputs: list[QWidget] = [
            self.image_picker, self.channel_picker, self.planes_picker, self.warm_start, self.task_picker,
            self.mask_picker, self.new_mask_button, self.psf_picker, self.iterations, self.advanced_section,
            self.run_button,
        ]

    # --- reactions to the viewer and the controls ----------------------------------------------

    def _refresh_layers(self, event: Any = None) -> None:
        # The mask picker first: a change of image proposes a mask from its fresh list.
        mask = self.mask_picker.value()
        for picker in (self.mask_picker, self.psf_picker, self.image_picker):
            picker.refresh(self._viewer.layers)
        if self.mask_picker.value() is not mask:  # the chosen mask went: the best one, not the last
            self._propose_mask()

    def _follow_selection(self, event: Any = None) -> None:
        """The layer the user selects in the layer list becomes the image (or the mask)."""
        if self._busy:
            return
        active = self._viewer.layers.selection.active
        if isinstance(active, Image):
            self.image_picker.set_value(active)
        elif isinstance(active, Labels):
            self.mask_picker.set_value(active)

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

    def _propose_image_for_inpainting(self) -> None:
        """When the image has no mask of its own but another image has one, choose that one: two
        samples of the same size must not pair one's image with the other's mask."""
        image = self.image_picker.value()
        if self._busy:
            return

        def has_own_mask(layer: Image) -> bool:
            return not layer.multiscale and any(score == (True, True) for _, score in self._mask_scores(layer))

        if image is None or has_own_mask(image):
            return
        paired = [layer for layer in self.image_picker.layers() if has_own_mask(layer)]
        if paired:
            self.image_picker.set_value(paired[-1])

    def _clear_outcome(self) -> None:
        """Forget the last run's message and progress: they were about other choices."""
        if not self._busy:
            self.status.setText(IDLE_STATUS)
            self._show_idle_progress()

    def _show_idle_progress(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")

    def _on_image_changed(self, index: int = -1) -> None:
        self._propose_mask()
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
        _set_row_visible(self._channel_row, self.channel_picker.count() > 1)
        self._update_plane_note()

    def _update_plane_note(self, *_: Any) -> None:
        """Offer the choice of planes for a stack, and say which will be restored: the one the
        viewer shows, or all of them."""
        layer = self.image_picker.value()
        plane_axes = _plane_axes(layer, self.channel_picker.currentData())
        _set_row_visible(self._planes_row, bool(plane_axes))
        _set_row_visible(self._warm_start_row, self._all_planes())
        if not plane_axes:
            _set_row_visible(self._plane_note_row, False)
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
        _set_row_visible(self._plane_note_row, True)

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

    def _current_preset(self) -> Settings:
        task, factor = self._current_task()
        return self._preset_settings(task, "default", factor)

    def _on_task_changed(self, index: int = -1) -> None:
        task, _ = self._current_task()
        spec = task_spec(task)
        _set_row_visible(self._mask_row, spec.needs_mask)
        _set_row_visible(self._psf_row, spec.needs_psf)
        preset = self._current_preset()
        # Advanced values still at the old task's preset follow the new one; edited ones stay.
        for name, box in self.advanced.items():
            if _shows(box, getattr(self._task_preset, name)):
                box.setValue(getattr(preset, name))
        self._task_preset = preset
        self._update_iterations_hint()
        if spec.needs_mask:
            self._propose_image_for_inpainting()
        self._clear_outcome()

    def _update_iterations_hint(self, *_: Any) -> None:
        preset = self._task_preset
        if self.iterations.value() == 0:
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
        labels = _unwrapped(self._viewer.add_labels(
            np.zeros(_spatial_shape(image), dtype=np.uint8),
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
        worker = create_worker(
            drive, generator, self._cancel, always=always, keep=keep, report_seconds=REPORT_SECONDS,
            _start_thread=False, _ignore_errors=True
        )
        self._worker_slots = [(worker.yielded, on_yielded), (worker.returned, on_returned),
                              (worker.errored, on_errored)]
        for signal, handler in self._worker_slots:
            signal.connect(handler)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True)
        compiling = " (compiling the network first: about a minute)" if in_process else ""
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
        if volume:
            from .core import VOLUME_TASKS

            if task not in VOLUME_TASKS:
                raise ValueError(
                    f"a volume can be denoised or inpainted, not {self.task_picker.currentText().lower()}: "
                    "choose Planes → current plane or all planes for that"
                )
            selection = select_volume(layer.data, rgb=layer.rgb, step=self._data_step(layer), channel_axis=channel_axis)
        elif all_planes:
            selection = select_stack(layer.data, rgb=layer.rgb, channel_axis=channel_axis)
        else:
            selection = select_input(layer.data, rgb=layer.rgb, step=self._data_step(layer), channel_axis=channel_axis)
        kwargs: dict[str, Any] = {
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
            kwargs["mask"] = mask_of(labels.data, image_shape=layer.data.shape, rgb=layer.rgb, selection=selection)
        if spec.needs_scale:
            kwargs["scale"] = factor
        if spec.needs_psf:
            kwargs["psf"] = self._psf()
        axes = [axis for axis in selection.kept_axes if axis < layer.ndim]
        return RunPlan(
            source=layer.name,
            task=task,
            factor=factor,
            selection=selection,
            scale=tuple(float(layer.scale[axis]) for axis in axes),
            translate=tuple(float(layer.translate[axis]) for axis in axes),
            rgb=layer.rgb,
            colormap=None if layer.rgb else layer.colormap.name,
            contrast_limits=tuple(layer.contrast_limits),
            core_kwargs=kwargs,
            volume=volume,
        )

    def _psf(self) -> np.ndarray:
        layer = self.psf_picker.value()
        if layer is None:
            raise ValueError("deblurring needs a PSF: pick the image layer that holds the blur kernel")
        psf = np.asarray(layer.data, dtype=np.float64)
        if psf.ndim != 2:
            raise ValueError(f"the PSF layer {layer.name!r} must be 2D, got shape {psf.shape}")
        return psf

    # --- worker signals (all on the GUI thread) -----------------------------------------------

    def _on_progress(self, event: Progress) -> None:
        if event.message is not None:
            # A note from the planner (how the image is cut): no step to show.
            self.status.setText(event.message[0].upper() + event.message[1:] + ".")
            return
        left = f" · about {_format_seconds(event.eta)} left" if event.eta is not None else ""
        if event.part is None:
            self.progress.setRange(0, event.iterations)
            self.progress.setValue(event.iteration)
            self.status.setText(f"Iteration {event.iteration} / {event.iterations} · loss {event.loss:.3g}{left}")
        else:
            self.progress.setRange(0, STACK_PROGRESS_STEPS)
            self.progress.setValue(round(event.done_fraction * STACK_PROGRESS_STEPS))
            self.progress.setFormat(event.part.capitalize())
            self.status.setText(
                f"{event.part.capitalize()} · iteration {event.iteration} / {event.iterations}{left}"
            )
        layer = self._live_preview_layer()
        if event.preview is not None and layer is not None and not self._cancel.is_set():
            layer.data = event.preview
            layer.visible = True

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
        data, meta, _ = plan.layer_data(image, plan.name, metadata)
        layer = self._live_preview_layer()
        self._preview_layer = None
        if layer is None:  # the user deleted the preview layer during the run
            _add_image_quietly(self._viewer, data, meta)
        else:
            # The preview layer becomes the result: no second layer creation (about 0.1 s of
            # vispy set-up on the GUI thread), and it keeps its place, visibility and selection.
            layer.data = data
            layer.contrast_limits = meta["contrast_limits"]
            layer.metadata = meta["metadata"]
            layer.name = meta["name"]
            layer.visible = True
        if isinstance(result, Kept):
            event = result.event
            self.progress.setValue(event.iteration)
            self.status.setText(
                f"Stopped at iteration {event.iteration} / {event.iterations} after "
                f"{_format_seconds(event.elapsed)}; {plan.name!r} keeps the result so far."
            )
            return
        self.progress.setValue(result.iterations)
        self.status.setText(
            f"Done: {result.iterations} iterations in {_format_seconds(result.elapsed)} ({result.stop_message})."
        )

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
            "device": kwargs["device"],
            "threads": kwargs["threads"],
            "settings": _planned_settings(plan),
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
        left = f" · about {_format_seconds(event.eta)} left" if event.eta is not None else ""
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

    def _on_stack_errored(self, exc: Exception) -> None:
        outcome = self._stack_result.stop(f"failed: {exc}")
        self.status.setText(f"Stopped: {exc}; {outcome}.")
        show_error(f"napari-dip: {exc}; {outcome}")

    def _on_finished(self) -> None:
        self._worker = None
        self._worker_slots = []
        self._plan = None
        self._stack_result = None
        self._set_running(False)

    def _fail(self, message: str) -> None:
        self.status.setText(f"Not run: {message}")
        show_error(f"napari-dip: {message}")

    def _add_preview_layer(self, plan: RunPlan) -> Image:
        """The layer previews go to: added hidden when the run starts, shown at the first preview.

        Adding it here, as a direct answer to the click, keeps the layer set-up out of the run.
        """
        placeholder = np.zeros(plan.selection.output_shape(plan.factor), dtype=plan.selection.image.dtype)
        data, meta, _ = plan.layer_data(placeholder, f"{plan.name} [preview]", {PREVIEW_KEY: True})
        return _add_image_quietly(self._viewer, data, meta, visible=False)

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

