from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="napari-dip",
    version="0.1.0",
    description="Deep Image Prior restoration (denoise, inpaint, super-resolve, deblur) for napari and the CLI",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["napari_dip", "napari_dip.*"]),
    package_data={"napari_dip": ["napari.yaml"]},
    install_requires=[
        # Open range: users need CUDA builds; CI installs torch==2.13.0 (CPU) first.
        "torch>=2.1",
        "numpy>=1.24",
        "pillow>=9",
        "scikit-image>=0.21",
        "tifffile>=2023.1",
        "tqdm>=4.60",
    ],
    extras_require={
        "napari": ["napari>=0.5", "qtpy>=2", "superqt>=0.6", "pyqt5>=5.15", "pyqtgraph>=0.13"],
        "batch": ["dask[distributed]>=2023.1", "zarr>=2.16"],
        "testing": [
            "pytest>=7",
            "pytest-qt>=4",
            "pytest-xvfb>=3",
            "hypothesis",
            "napari>=0.5",
            "qtpy>=2",
            "superqt>=0.6",
            "pyqt5>=5.15",
            "pyqtgraph>=0.13",
            "npe2>=0.7",
            "ruff",
            "dask[distributed]>=2023.1",
            "zarr>=2.16",
        ],
        "benchmarks": ["opencv-python-headless", "bm3d"],
    },
    entry_points={
        "console_scripts": ["napari-dip=napari_dip.cli:run"],
        "napari.manifest": ["napari-dip = napari_dip:napari.yaml"],
    },
    classifiers=[
        "Framework :: napari",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
