"""`pip install .` gives another project the modules: a wheel built from this checkout holds every
module of ours (never bench/ or tests/), declares the runtime dependencies, and imports from any
directory."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["snake_env", "snake_gymnax", "muon_jax", "train_snake_purejaxrl_impl",
           "train_snake_purejaxrl"]  # fmt: skip
UNSHIPPED = (".git", "runs", "wandb", "build", "*.egg-info", "__pycache__", ".hypothesis")


def test_the_wheel_installs_every_module_and_imports_from_another_directory(tmp_path):
    # Built from a copy: a build writes its build/ folder into the source tree.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*UNSHIPPED))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("snake_purejaxrl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    ours = sorted(p.stem for p in (ROOT / "snake_purejaxrl").glob("*.py"))
    for module in MODULES:
        assert f"{module}.py" in names
    for module in ours:
        assert f"snake_purejaxrl/{module}.py" in names
    assert not [n for n in names if n.startswith(("bench/", "tests/", "runs/"))]
    metadata = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    for dependency in ("jax", "optax", "flax", "wandb", "orbax-checkpoint", "gymnax", "six"):
        assert f"Requires-Dist: {dependency}" in metadata

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "another_project"
    elsewhere.mkdir()
    code = (
        "import snake_env, snake_gymnax, train_snake_purejaxrl_impl, snake_purejaxrl.config\n"
        "for m in (snake_env, snake_gymnax, train_snake_purejaxrl_impl, snake_purejaxrl.config):\n"
        "    print(m.__file__)\n"
        "print(snake_gymnax.SnakeGymnax(grid_size=5).name)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    *files, name = run.stdout.split()
    assert all(Path(f).is_relative_to(target) for f in files), files  # the installed copies
    assert name == "Snake-5x5"
