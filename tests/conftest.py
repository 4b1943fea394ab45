"""Shared fixtures: tiny datasets and tiny model configs, so the suite stays fast."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# `fit` and scoring as plain graphs: an XLA compile costs seconds for each of the suite's
# many small models (scoring's were a fifth of Table 2's test). The XLA paths are tested on their
# own (tests/test_xla*.py), with `jit_compile` set explicitly; subprocesses inherit this.
os.environ.setdefault("HIERDIFFUSE_XLA_TRAINING", "0")
os.environ.setdefault("HIERDIFFUSE_XLA_SCORING", "0")

import pytest  # noqa: E402

# The planted-interest set's smallest config, which the session fixtures below prepare once.
SMOKE = "synthetic_interest_ctr/smoke"

# Small enough to train in seconds on 2 CPU cores.
TINY_MODEL = {
    "embed_dim": 16, "encoder_ffn_dim": 32, "denoiser_units": 32, "time_embed_dim": 16,
    "head_units": (32, 16), "diffusion_steps": 20,
}
# As `--set` pairs, for the commands' tests. They also train f_S over every session: the
# skip builds the block twice in a training step (both branches of its `cond`), much of a
# tiny model's cost, and it has tests of its own (test_layers.py, test_xla.py).
TINY_SETS = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
             for k, v in TINY_MODEL.items()] + ["skip_empty_sessions=false"]


# A small model of any registry name: each model takes the fields its config has.
SMALL_ANY_MODEL = dict(num_items=40, num_cats=6, max_long=6, num_sessions=2, session_len=3, embed_dim=8,
                       encoder_ffn_dim=16, denoiser_units=16, time_embed_dim=8, head_units=(16,),
                       diffusion_steps=20, sampler_steps=4)


def small_model(name: str, **changes):
    """A small model `name` from the registry, `SMALL_ANY_MODEL` with `changes`."""
    from hierdiffuse_tf.models import build_model

    return build_model(name, {**SMALL_ANY_MODEL, **changes}, shared=True)


def tiny_sets(name: str) -> list[str]:
    """`TINY_SETS` restricted to the fields of model `name`'s config."""
    from hierdiffuse_tf.models import MODELS

    fields = MODELS[name].config_cls.field_names()
    return [pair for pair in TINY_SETS if pair.split("=")[0] in fields]


def random_features(config, batch_size: int = 8, seed: int = 0) -> dict:
    """A batch of random features with the shapes a model config expects."""
    from hierdiffuse_tf.export import example_request

    return example_request(config, batch_size, seed)


# Each test file's seconds of work on the 2-core VM (`python -m pytest --durations=0`, summed
# per file, 2026-12-07). pytest-xdist's `loadfile` hands out whole files, by default those with
# the most tests first, which left the slow files of few tests (the benchmarks' commands, the
# backends, the notebooks) to the end, where one worker ran them while the other sat idle. With
# `--no-loadscope-reorder` (pyproject.toml) it keeps the order below instead: the longest first,
# so that the two workers finish together. A file not listed counts as FILE_SECONDS_UNLISTED.
FILE_SECONDS = {
    "test_bench_training.py": 155, "test_bench.py": 125, "test_model.py": 115, "test_baselines.py": 110,
    "test_experiments.py": 105, "test_xla.py": 105, "test_export.py": 75, "test_backends.py": 75,
    "test_beam_builders.py": 70, "test_notebooks.py": 65, "test_resume.py": 65, "test_distribute.py": 45,
    "test_data.py": 40, "test_serving.py": 25, "test_diffusion.py": 12, "test_layers.py": 8,
    "test_movielens_1m.py": 5, "test_xla_random.py": 4,
}
FILE_SECONDS_UNLISTED = 1


def pytest_collection_modifyitems(config, items):
    """The longest files first (`FILE_SECONDS`); within a file, the tests keep their order."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, FILE_SECONDS_UNLISTED))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def smoke_builder(data_dir):
    """`synthetic_interest_ctr/smoke`, built once per session."""
    from hierdiffuse_tf.datasets import pipeline

    return pipeline.prepare(SMOKE, data_dir)


@pytest.fixture(scope="session")
def smoke_data(smoke_builder):
    """`smoke_builder` as the handle that training and the experiments pass down."""
    from hierdiffuse_tf.datasets import pipeline

    return pipeline.PreparedDataset(SMOKE, smoke_builder)


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory):
    """A tiny HierDiffuse exported once to `BASE/hierdiffuse/1` with every signature.

    Returns `(model, base_path)`; the version folder is `base_path/1`.
    """
    from hierdiffuse_tf import export
    from hierdiffuse_tf.config import HierDiffuseConfig
    from hierdiffuse_tf.models import HierDiffuse

    config = HierDiffuseConfig(num_items=50, num_cats=6, max_long=6, num_sessions=2, session_len=3,
                               embed_dim=8, encoder_ffn_dim=8, denoiser_units=8, time_embed_dim=8,
                               diffusion_steps=20)
    model = HierDiffuse(config)
    model(export.example_request(config, 2))
    base = tmp_path_factory.mktemp("models") / "hierdiffuse"
    export.export_saved_model(model, str(base / "1"), ["ddim_5", "user_tokens", "rank"])
    return model, str(base)
