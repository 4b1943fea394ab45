"""The model registry: `--model NAME` picks a class and its config dataclass.

A model plugs in by subclassing `CTRModel` (one hook, `forward`) and adding
itself to `MODELS`.
"""

from __future__ import annotations

from hierdiffuse_tf.config import ConfigError
from hierdiffuse_tf.models.base import MODEL_FEATURES, CTRModel, Forward, feature_shapes  # noqa: F401
from hierdiffuse_tf.models.avg_pool_dnn import AvgPoolDNN
from hierdiffuse_tf.models.dien import DIEN
from hierdiffuse_tf.models.din import DIN
from hierdiffuse_tf.models.hierdiffuse import HierDiffuse
from hierdiffuse_tf.models.target_diffusion import DiffuRec, DreamRec

MODELS: dict[str, type[CTRModel]] = {
    "avg_pool_dnn": AvgPoolDNN,
    "din": DIN,
    "dien": DIEN,
    "diffurec": DiffuRec,
    "dreamrec": DreamRec,
    "hierdiffuse": HierDiffuse,
}


def get_model_class(name: str) -> type[CTRModel]:
    if name not in MODELS:
        raise ConfigError(f"Unknown model {name!r}. Known models: {sorted(MODELS)}")
    return MODELS[name]


def build_model(name: str, config_values: dict, shared: bool = False) -> CTRModel:
    """A model of registry name `name` from a dict of config values.

    With `shared`, `config_values` may hold other models' fields too (one
    shape for several models, as the benchmarks build them): only the
    model's own fields are read.
    """
    cls = get_model_class(name)
    if shared:
        config_values = {k: v for k, v in config_values.items() if k in cls.config_cls.field_names()}
    return cls(cls.config_cls.from_dict(config_values))
