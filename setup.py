"""Build script for the aseptic_cell ROS 2 package (ament_python conventions).

Works with `pip install -e .` (what `make venv` does), `pip install .` and colcon's
ament_python build (run from ros2_ws/src/aseptic_cell, a symlink to this directory).

Layout: the library lives in aseptic_cell/; two top-level directories are mapped in
as sub-packages: behaviors/ -> aseptic_cell.behaviors, sim/ -> aseptic_cell.sim.
Always import them by their mapped names (aseptic_cell.sim), never as `sim`.
"""

import os
from glob import glob

from setuptools import Extension, find_packages, setup

PACKAGE_NAME = "aseptic_cell"
HERE = os.path.dirname(os.path.abspath(__file__))

# Directories mapped into the package namespace: {package name: directory}.
MAPPED = {
    f"{PACKAGE_NAME}.behaviors": "behaviors",
    f"{PACKAGE_NAME}.sim": "sim",
}


def rel_glob(pattern: str) -> list[str]:
    """Sorted files matching `pattern` relative to this file's directory (paths stay relative)."""
    return sorted(p for p in glob(pattern, root_dir=HERE, recursive=True) if os.path.isfile(os.path.join(HERE, p)))


def discover_packages() -> list[str]:
    pkgs = find_packages(where=HERE, include=[PACKAGE_NAME, f"{PACKAGE_NAME}.*"])
    for name, directory in MAPPED.items():
        root = os.path.join(HERE, directory)
        if os.path.isfile(os.path.join(root, "__init__.py")):
            pkgs.append(name)
            pkgs.extend(f"{name}.{sub}" for sub in find_packages(where=root))
    return sorted(pkgs)


def c_extensions() -> list[Extension]:
    """aseptic_cell.motion._ccheck, built only once its C sources exist."""
    sources = rel_glob("aseptic_cell/motion/src/*.c")
    if not sources:
        return []
    return [
        Extension(
            f"{PACKAGE_NAME}.motion._ccheck",
            sources=sources,
            include_dirs=["aseptic_cell/motion/src"],
            depends=rel_glob("aseptic_cell/motion/src/*.h"),
            # No -march=native: results and binaries must not depend on the build host.
            extra_compile_args=["-O3", "-std=c11", "-fno-math-errno", "-ffp-contract=off"],
        )
    ]


def data_files() -> list[tuple[str, list[str]]]:
    files = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", rel_glob("launch/*")),
        (f"share/{PACKAGE_NAME}/config", rel_glob("config/*.yaml") + rel_glob("config/*.xml")),
        (f"share/{PACKAGE_NAME}/config/recipes", rel_glob("config/recipes/*.yaml")),
        (f"share/{PACKAGE_NAME}/config/processes", rel_glob("config/processes/*.yaml")),
        (f"share/{PACKAGE_NAME}/sim/assets", rel_glob("sim/assets/*")),
    ]
    # setuptools accepts empty lists, but keep the install manifest clean.
    return [(dest, srcs) for dest, srcs in files if srcs]


# Non-Python files shipped inside the packages (HMI front end, robot/isolator models).
_ASSETS = ["**/*.html", "**/*.js", "**/*.css", "**/*.json", "**/*.yaml", "**/*.urdf", "**/*.sdf",
           "**/*.xml", "**/*.xacro", "**/*.stl", "**/*.dae", "**/*.obj", "**/*.mjcf"]

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    description="Supervisory control for a robotic, closed-system ATMP manufacturing cell",
    license="Apache-2.0",
    maintainer="aseptic_cell engineering",
    maintainer_email="engineering@aseptic-cell.invalid",
    python_requires=">=3.11",
    packages=discover_packages(),
    package_dir=dict(MAPPED),
    package_data={PACKAGE_NAME: _ASSETS, f"{PACKAGE_NAME}.sim": _ASSETS},
    ext_modules=c_extensions(),
    data_files=data_files(),
    # ROS packages (rclpy, *_msgs, cell_interfaces) are deliberately not listed: they come from
    # the ROS installation or the ros-jazzy-* wheels (see requirements.txt), not from PyPI names.
    install_requires=["numpy", "pydantic>=2", "PyYAML", "py_trees"],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "cellctl = aseptic_cell.cli:main",
            # node executables (lib/aseptic_cell/<name>, for ros2 run / ros2 launch)
            "sim_world = aseptic_cell.nodes.sim_world:main",
            "isolator_node = aseptic_cell.devices.isolator.node:main",
            "vhp_node = aseptic_cell.devices.vhp.node:main",
            "autoclave_node = aseptic_cell.devices.autoclave.node:main",
            "arm_node = aseptic_cell.devices.arm.node:main",
            "lifecycle_manager = aseptic_cell.nodes.lifecycle_manager:main",
            "opcua_server_node = aseptic_cell.nodes.opcua_server_node:main",
            "mujoco_arm = aseptic_cell.nodes.mujoco_arm:main",
            "hmi = aseptic_cell.nodes.hmi_node:main",
            "supervisor = aseptic_cell.nodes.supervisor_node:main",
            "supervisor_node = aseptic_cell.nodes.supervisor_node:main",
        ],
    },
)
