import numpy as np
import pytest
import torch

# Tiny networks on tiny images: one thread avoids thread-pool overhead dominating (and keeps the
# second core free), and makes runs reproducible.
torch.set_num_threads(1)

TINY = {"channels": 16, "scales": 3, "threads": 1}


@pytest.fixture
def tiny() -> dict:
    """Advanced settings for a small, fast network."""
    return dict(TINY)


@pytest.fixture
def camera48() -> np.ndarray:
    from skimage import data

    return data.camera()[100:148, 200:248].astype(np.float32) / 255


@pytest.fixture
def astronaut48() -> np.ndarray:
    from skimage import data

    return data.astronaut()[100:148, 180:228].astype(np.float32) / 255
