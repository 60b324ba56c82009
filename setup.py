"""pip install path (ROS 2 builds use CMakeLists.txt); tool config lives in pyproject.toml."""

from setuptools import find_packages, setup

DEPLOY = [
    "onnxruntime>=1.20",  # or onnxruntime-gpu, installed by hand
    "cyclonedds>=11.0,<12",  # the DDS transport (not needed under ROS 2 with rclpy)
]
TRAIN = [
    *DEPLOY,  # the demo and `uwm export` run the engines and the node
    "torch==2.13.0",  # pinned: a CPU wheel of exactly this version is on our machines
    "safetensors>=0.4",
    "zarr>=3,<4",
    "backports.zstd>=1.0; python_version < '3.14'",  # frame compression (stdlib from 3.14)
    "blake3>=1.0",  # bag digests: ~5x sha256's speed, on the converter's second core
    "onnx>=1.17",
    "onnxscript>=0.2",
    "tensorboard>=2.16",
    "av>=13",
    "pyarrow>=15",  # LeRobot v3 export (parquet)
]

setup(
    name="uwm-ros",
    version="0.1.0",
    description="Unified World Models (video + action diffusion) from rosbag2 data to ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["uwm_training", "uwm_training.*", "uwm_ros", "uwm_ros.*"]),
    # What a robot needs to run a policy on ONNX Runtime over DDS: `pip install .[deploy]`.
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6",
        "opencv-python-headless>=4.9",  # JPEG decode, resize (the input contract)
        "rosbags>=0.11.9,<0.12",  # message definitions for the DDS types, bag tools
        "tqdm>=4.66",
    ],
    extras_require={
        "deploy": DEPLOY,
        "train": TRAIN,
        "test": [
            *TRAIN,
            "pytest>=8",
            "diffusers>=0.30",  # DDIM parity reference and the AutoencoderKL adapter test
            "ruff>=0.6",
            "mypy>=1.10",
            "types-PyYAML",
            "catkin_pkg>=1.0",
            "colcon-core>=0.17",
            "colcon-ros>=0.5",
            "colcon-package-information>=0.4",  # provides `colcon list`
        ],
        "diffusers": ["diffusers>=0.30"],
        # The TensorRT backend allocates its device buffers with torch (CUDA build).
        "tensorrt": ["tensorrt>=10.12", "torch"],
    },
    # The .msg files travel with pip installs too: the DDS transport builds its types from them.
    data_files=[("share/uwm_ros/msg", ["msg/ActionChunk.msg", "msg/PredictedFrames.msg"])],
    entry_points={"console_scripts": ["uwm=uwm_training.cli:main"]},
)
