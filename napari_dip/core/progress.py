"""Overall progress of work done in equal parts (tiles of an image, planes of a stack)."""

from __future__ import annotations

__all__ = ["overall_progress", "says_latest"]


def says_latest(eta: float | None, latest: float | None) -> bool:
    """Whether the time to the cap (``latest``) is far enough beyond the guess to be shown."""
    return eta is not None and latest is not None and latest > 1.25 * eta + 5


def overall_progress(
    part: int, parts: int, finished_seconds: list[float], elapsed: float, eta: float | None,
    eta_latest: float | None = None,
) -> tuple[float, float | None, float | None]:
    """Fraction done and seconds left over all parts (a guess and, where the current part has
    one, the latest), from the progress of the current one.

    Parameters
    ----------
    part, parts : int
        Index of the part being worked on, and how many there are.
    finished_seconds : list of float
        How long each finished part took.
    elapsed, eta : float
        Seconds spent on the current part, and its own estimate of the seconds left (``None``
        when unknown).
    eta_latest : float, optional
        The most seconds the current part may still take (automatic stopping's bound).

    Returns
    -------
    fraction : float
        In [0, 1].
    eta, eta_latest : float or None
        Seconds left for all parts; the parts still to come are counted at the finished parts'
        mean time, or before any has finished at the current part's guess (and latest).
    """
    if eta is None:
        return part / parts, None, None
    # Time, not iterations: with automatic stopping the iteration cap says little about the end.
    current = elapsed / (elapsed + eta) if elapsed + eta > 0 else 0.0
    mean = sum(finished_seconds) / len(finished_seconds) if finished_seconds else None
    later = parts - part - 1
    total = eta + later * (elapsed + eta if mean is None else mean)
    latest = None if eta_latest is None else eta_latest + later * (elapsed + eta_latest if mean is None else mean)
    return (part + current) / parts, total, latest
