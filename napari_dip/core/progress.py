"""Overall progress of work done in equal parts (tiles of an image, planes of a stack)."""

from __future__ import annotations

__all__ = ["overall_progress"]


def overall_progress(
    part: int, parts: int, finished_seconds: list[float], elapsed: float, eta: float | None
) -> tuple[float, float | None]:
    """Fraction done and seconds left over all parts, from the progress of the current one.

    Parameters
    ----------
    part, parts : int
        Index of the part being worked on, and how many there are.
    finished_seconds : list of float
        How long each finished part took.
    elapsed, eta : float
        Seconds spent on the current part, and its own estimate of the seconds left (``None``
        when unknown).

    Returns
    -------
    fraction : float
        In [0, 1].
    eta : float or None
        Seconds left for all parts.
    """
    if eta is None:
        return part / parts, None
    # Time, not iterations: with automatic stopping the iteration cap says little about the end.
    current = elapsed / (elapsed + eta) if elapsed + eta > 0 else 0.0
    per_part = sum(finished_seconds) / len(finished_seconds) if finished_seconds else elapsed + eta
    return (part + current) / parts, eta + (parts - part - 1) * per_part
