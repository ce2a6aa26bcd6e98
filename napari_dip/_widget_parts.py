"""The widget's layer side: what a run is planned with, the layer pickers, the layers a run adds.

Split from ``_widget`` (the view and its run controller); everything here runs on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Shapes
from qtpy.QtWidgets import QComboBox

from ._layer_data import (
    LayerDataTuple,
    Region,
    Selection,
    StackSelection,
    contrast_limits_for,
    result_layer_data,
    result_name,
)

if TYPE_CHECKING:
    import napari

    from .core.stacks import PlaneProgress, StackRestoration

__all__ = ["CURRENT_VIEW", "PREVIEW_KEY", "LayerComboBox", "RunPlan", "StackResultLayer", "add_image_quietly",
           "add_region_layer", "is_preview", "planned_settings", "region_in", "spatial_shape", "unwrapped"]

# Metadata key that marks the layer a run's previews go to: no picker offers it as an input.
PREVIEW_KEY = "napari_dip_preview"

# The Region menu's entry for the part of the image the canvas shows.
CURRENT_VIEW = "current view"


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
    # The rectangle restored, where not the whole plane: ``translate`` already places it.
    region: Region | None = None

    @property
    def name(self) -> str:
        return result_name(self.source, self.task, self.factor, self.selection.plane, self.volume, self.region)

    @property
    def all_planes(self) -> bool:
        return isinstance(self.selection, StackSelection)

    def layer_data(self, image: np.ndarray, name: str, metadata: dict | None = None) -> LayerDataTuple:
        return result_layer_data(
            image, name=name, scale=self.scale, translate=self.translate, factor=self.factor,
            rgb=self.rgb, colormap=self.colormap, reference_limits=self.contrast_limits, metadata=metadata,
        )


def unwrapped(layer: Any) -> Any:
    """The layer itself, where napari handed over a proxy of it.

    napari gives a plugin's widget a ``PublicOnlyProxy`` of the viewer (a ``wrapt.ObjectProxy``):
    what its methods return (``add_labels``, ``selection.active``) are proxies, while iterating its
    layer list gives the layers themselves, so one layer arrives as two objects and an identity
    check between them fails. ``__wrapped__`` is wrapt's public way back to the object.
    """
    return getattr(layer, "__wrapped__", layer)


def is_preview(layer: Any) -> bool:
    return layer.metadata.get(PREVIEW_KEY) is True


def add_image_quietly(viewer: napari.viewer.Viewer, data: np.ndarray, meta: dict[str, Any], *,
                       visible: bool = True) -> Image:
    """Add an image layer, leaving the user's layer selection (and so the layer controls shown)
    as it was: a run's layers appear as they go, and must not take the controls away."""
    selection = set(viewer.layers.selection)
    active = viewer.layers.selection.active
    layer = unwrapped(viewer.add_image(data, visible=visible, **meta))
    viewer.layers.selection.clear()
    viewer.layers.selection.update(selection)
    viewer.layers.selection.active = active
    return layer


def spatial_shape(layer: Image) -> tuple[int, int]:
    shape = layer.data[0].shape if layer.multiscale else layer.data.shape
    return tuple(shape[-3:-1] if layer.rgb else shape[-2:])


def add_region_layer(viewer: napari.viewer.Viewer, image: Image) -> Shapes:
    """An empty Shapes layer over ``image``, named after it, for drawing the region to restore."""
    taken = {layer.name for layer in viewer.layers}
    name, number = f"{image.name} region", 2
    while name in taken:
        name, number = f"{image.name} region {number}", number + 1
    return unwrapped(viewer.add_shapes(
        name=name, ndim=2, scale=tuple(image.scale[-2:]), translate=tuple(image.translate[-2:]),
        edge_color="yellow", edge_width=max(1.0, min(spatial_shape(image)) / 200), face_color="transparent",
    ))


def region_in(layer: Image, choice: Shapes | str | None, world_point: Any) -> Region | None:
    """The rectangle of ``layer``'s plane to restore, in its pixels, for the Region ``choice``: a
    Shapes layer (its selected shapes' bounding box, else its last shape's), :data:`CURRENT_VIEW`
    (the canvas, as napari last drew it) or None (the whole image, also returned for a region
    that covers it). ``world_point`` is the viewer's position, for the layer's leading axes.
    Raises ValueError naming what is wrong (no rectangle drawn, too small, off the image).
    """
    spatial = spatial_shape(layer)
    if choice is None:
        return None
    if choice == CURRENT_VIEW:
        # napari keeps the canvas corners in each layer's pixels, clipped to it, at every draw.
        region = Region.around(np.asarray(layer.corner_pixels, dtype=np.float64)[:, -2:], spatial)
    else:
        if len(choice.data) == 0:
            raise ValueError(f"the Shapes layer {choice.name!r} has no rectangle: draw one over the image")
        chosen = sorted(choice.selected_data) or [len(choice.data) - 1]
        vertices = np.concatenate([np.asarray(choice.data[index], dtype=np.float64) for index in chosen])
        world = np.array([choice.data_to_world(vertex) for vertex in vertices])
        # World positions in the image's dimensions: its leading axes where the viewer is.
        position = np.zeros((len(world), layer.ndim))
        position[:, :-2] = np.asarray(world_point, dtype=np.float64)[-layer.ndim:-2] if layer.ndim > 2 else 0
        position[:, -2:] = world[:, -2:]
        pixels = np.array([layer.world_to_data(point) for point in position])[:, -2:]
        region = Region.around(pixels, spatial)
    return None if region.covers(spatial) else region


def planned_settings(plan: RunPlan) -> dict[str, Any]:
    """The settings a run starts with, resolved as the core resolves them: those of a single
    image's fit, or of a stack's first plane (warm-started planes then run fewer iterations at a
    lower learning rate, as the final metadata records)."""
    from .core import Settings, resolve_settings

    names = {field.name for field in fields(Settings)} - {"iterations"}
    kwargs = plan.core_kwargs
    advanced = {name: value for name, value in kwargs.items() if name in names}
    return resolve_settings(plan.task, kwargs.get("preset", "default"), scale=kwargs.get("scale"),
                            iterations=kwargs["iterations"], **advanced).as_dict()


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
            "settings": planned_settings(plan),
        }
        placeholder = np.zeros(self._layout.output_shape(plan.factor), dtype=stack.dtype)
        data, meta, _ = plan.layer_data(placeholder, plan.name, metadata)
        # Display limits from the first input plane rather than the zeros: a restored plane keeps
        # its input's range, and limits that change as planes arrive would undo the user's.
        first_plane = np.asarray(stack[self._layout.index(next(self._layout.positions()))])
        meta["contrast_limits"] = contrast_limits_for(first_plane, plan.contrast_limits)
        self._layer: Image | None = add_image_quietly(viewer, data, meta)

    @property
    def name(self) -> str:
        """The result layer's name, as napari made it unique (" [1]" where the plan's was taken)."""
        return self._layer.name if self._layer is not None else self._plan.name

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
            self._layer = add_image_quietly(self._viewer, data, meta)
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


def _same(item: Any, other: Any) -> bool:
    """The same layer (identity: layers compare by it), or an equal extra entry (Qt hands out a
    new copy of a string item's data each time)."""
    return item is other or (isinstance(item, str) and item == other)


class LayerComboBox(QComboBox):
    """A layer picker that follows the viewer's layer list and keeps its choice while it exists.

    It holds the layers themselves, never napari's proxies of them (see ``unwrapped``). ``extra``
    entries, (text, value) pairs that are not layers (the Region picker's "current view"), follow
    the layers.
    """

    def __init__(self, layer_type: type, *, none_text: str | None = None, auto_pick: bool = True,
                 exclude: Callable[[Any], bool] | None = None, extra: tuple[tuple[str, Any], ...] = ()):
        super().__init__()
        self._layer_type = layer_type
        self._none_text = none_text
        self._auto_pick = auto_pick
        self._exclude = exclude
        self._extra = extra
        # Long layer names must not set the dock's minimum width: they are elided instead.
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)

    def refresh(self, layers: Any) -> None:
        current = self.value()
        candidates = [
            unwrapped(layer) for layer in layers
            if isinstance(layer, self._layer_type) and not (self._exclude and self._exclude(layer))
        ]
        self.blockSignals(True)
        self.clear()
        if self._none_text is not None:
            self.addItem(self._none_text, None)
        for layer in candidates:
            self.addItem(layer.name, layer)
        for text, value in self._extra:
            self.addItem(text, value)
        if any(_same(item, current) for item in [*candidates, *(value for _, value in self._extra)]):
            self.set_value(current)
        elif self._auto_pick and candidates:
            self.set_value(candidates[-1])
        self.blockSignals(False)
        if not _same(self.value(), current):
            self.currentIndexChanged.emit(self.currentIndex())

    def value(self) -> Any:
        return self.currentData()

    def layers(self) -> list[Any]:
        """The layers offered, in the layer list's order."""
        return [data for data in map(self.itemData, range(self.count())) if isinstance(data, self._layer_type)]

    def set_value(self, layer: Any) -> bool:
        """Choose ``layer`` (None: the none entry); False if it is not offered."""
        layer = unwrapped(layer)
        for index in range(self.count()):
            if _same(self.itemData(index), layer):
                self.setCurrentIndex(index)
                return True
        return False


