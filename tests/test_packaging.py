"""The package installs whole: every source folder is a regular package, nothing is a top-level `datasets`."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_source_folder_is_a_package():
    missing = []
    for top in ("hierdiffuse_tf", "datasets"):
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if not d.startswith(("__", "."))]
            if any(f.endswith(".py") for f in files) and "__init__.py" not in files:
                missing.append(os.path.relpath(folder, ROOT))
    assert not missing, f"folders without __init__.py are left out of wheels: {missing}"


def test_datasets_install_inside_the_package():
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert 'package_dir={"hierdiffuse_tf.datasets": "datasets"}' in setup
    import hierdiffuse_tf.datasets as datasets

    assert datasets.__name__ == "hierdiffuse_tf.datasets"
