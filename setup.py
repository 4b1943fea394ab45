"""hierdiffuse-tf: HierDiffuse (EMNLP 2025) in Keras 3 / TensorFlow."""

from setuptools import find_packages, setup

BEAM = ["apache-beam==2.77.*"]
# scipy and jax: the portable benchmark and the backend tests run Keras on JAX (and its numpy
# backend, which imports both).
TEST = ["pytest>=8", "pytest-xdist>=3.8", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6",
        "scipy>=1.11", "jax>=0.4.30"]

setup(
    name="hierdiffuse-tf",
    version="0.1.0",
    description="HierDiffuse: progressive diffusion for interest fusion in CTR prediction (Keras 3)",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    # The TFDS builders are `hierdiffuse_tf.datasets` (`datasets/` at the top is a link to it,
    # for `tfds build datasets/NAME`); nothing installs as a top-level `datasets`.
    packages=find_packages(include=["hierdiffuse_tf", "hierdiffuse_tf.*"]),
    package_data={"hierdiffuse_tf.datasets": ["*/*.tsv", "*/*.txt", "*/*.bib", "*/*.md", "*/dummy_data/*"],
                  "hierdiffuse_tf": ["configs/*.yaml"]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras==3.15.*",
        "keras-hub>=0.32,<0.33",
        "keras-rs>=0.4,<0.5",
        "tensorflow-datasets==4.9.10",
        "tensorflow-serving-api==2.21.*",
        "tensorboard>=2.20",
        "numpy>=1.26",
        "matplotlib>=3.8",
        "pyyaml>=6",
        "tqdm>=4.66",
    ],
    extras_require={"beam": BEAM, "test": TEST, "all": BEAM + TEST},
    entry_points={"console_scripts": ["hierdiffuse=hierdiffuse_tf.cli:main"]},
)
