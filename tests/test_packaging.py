"""The package installs whole: every source folder is a regular package, nothing is a top-level `datasets`."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_source_folder_is_a_package():
    missing = []
    for top in ("hierdiffuse_tf",):
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if not d.startswith(("__", "."))]
            if any(f.endswith(".py") for f in files) and "__init__.py" not in files:
                missing.append(os.path.relpath(folder, ROOT))
    assert not missing, f"folders without __init__.py are left out of wheels: {missing}"


def test_the_builders_and_their_bases_are_one_package_inside_hierdiffuse_tf():
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert "package_dir" not in setup  # No renaming at install.
    import hierdiffuse_tf.datasets as datasets
    from hierdiffuse_tf.datasets import beam_base, pipeline, tfds_base

    assert datasets.__name__ == "hierdiffuse_tf.datasets"
    assert {m.__name__.rsplit(".", 1)[0] for m in (beam_base, pipeline, tfds_base)} == {datasets.__name__}
    # The repository's top-level `datasets/` is a link to the package, for `tfds build datasets/NAME`.
    assert os.path.realpath(os.path.join(ROOT, "datasets")) == os.path.dirname(datasets.__file__)


def test_tfds_finds_every_builder_after_importing_the_package():
    import tensorflow_datasets as tfds

    import hierdiffuse_tf.datasets as datasets

    assert set(datasets.NAMES) <= set(tfds.list_builders())


def test_the_tracked_tree_stays_small_enough_to_copy_to_a_gpu_machine():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    if listed.returncode:  # Not a git checkout (an sdist): nothing is tracked.
        return
    paths = [p for p in listed.stdout.decode().split("\0") if p]
    assert not [p for p in paths if p.endswith(".keras")], "trained models stay out of git"
    total = sum(os.path.getsize(os.path.join(ROOT, p)) for p in paths if os.path.isfile(os.path.join(ROOT, p)))
    assert total < 60 * 2**20, f"the tracked tree is {total / 2**20:.1f} MiB; the limit is 60 MiB"
