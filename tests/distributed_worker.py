"""Trains a tiny model on one device and under MirroredStrategy; prints the gap.

Run in its own process by tests/test_distribute.py: logical devices must be
configured before TensorFlow initialises them.

    python tests/distributed_worker.py MODEL STEPS GLOBAL_BATCH
"""

import json
import os
import sys

# Distributed training runs as a plain graph; so must the single-device run it is compared
# with (under XLA its random draws are ThreeFry's, see `xla_random`). The suite sets this too.
os.environ["HIERDIFFUSE_XLA_TRAINING"] = "0"

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from hierdiffuse_tf import config as config_lib  # noqa: E402
from hierdiffuse_tf import export, training  # noqa: E402
from hierdiffuse_tf.models import get_model_class  # noqa: E402


def fit(model_name: str, strategy_name: str, steps: int, batch: int, features: dict) -> dict:
    cls = get_model_class(model_name)
    tiny = {"embed_dim": 8, "encoder_ffn_dim": 16, "head_units": (16,), "dropout": 0.0,
            "num_items": 50, "num_cats": 8, "max_long": 6, "num_sessions": 2, "session_len": 3}
    if model_name == "hierdiffuse":
        tiny.update(denoiser_units=16, time_embed_dim=8, diffusion_steps=20, cond_dropout=0.2,
                    schedule_steps=steps)
    tiny.update(json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})
    model_config = cls.config_cls(**{k: v for k, v in tiny.items() if k in cls.config_cls.field_names()})
    train_config = config_lib.TrainConfig(batch_size=batch, learning_rate=1e-2, clipnorm=0.0,
                                          strategy=strategy_name)
    keras.utils.set_random_seed(0)
    with training.distribute.make_strategy(strategy_name).scope():
        model = training.compile_model(cls(model_config), train_config)
    labels = np.arange(steps * batch) % 2
    data = tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch)
    history = model.fit(data, epochs=1, verbose=0, shuffle=False)
    return {"weights": [np.asarray(w).tolist() for w in model.get_weights()],
            "loss": float(history.history["loss"][-1]),
            "replicas": model.distribute_strategy.num_replicas_in_sync}


def main(model_name: str, steps: int, batch: int) -> None:
    shapes = {"num_items": 50, "num_cats": 8, "max_long": 6, "num_sessions": 2, "session_len": 3}
    features = export.example_request(config_lib.ModelConfig(**shapes), steps * batch, seed=1)
    single = fit(model_name, "none", steps, batch, features)
    mirrored = fit(model_name, "mirrored", steps, batch, features)
    gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
              for a, b in zip(single["weights"], mirrored["weights"]))
    print(json.dumps({"max_weight_gap": gap, "loss_single": single["loss"],
                      "loss_mirrored": mirrored["loss"], "replicas": mirrored["replicas"]}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
