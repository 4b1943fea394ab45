"""Training under tf.distribute matches single-device training (issue: distributed training)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hierdiffuse_tf import config as config_lib
from hierdiffuse_tf import distribute

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")


# DIEN is left out on purpose: its auxiliary loss takes in-batch negatives, which
# depend on how a batch is sharded (see hierdiffuse_tf/distribute.py).
@pytest.mark.slow
@pytest.mark.parametrize("model", ["hierdiffuse", "din"])
def test_mirrored_over_two_cpus_matches_single_device(model):
    # Logical CPUs must be set before TF initialises devices: a fresh process.
    proc = subprocess.run([sys.executable, WORKER, model, "4", "16"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["loss_mirrored"] == pytest.approx(result["loss_single"], rel=1e-5)
    assert result["max_weight_gap"] < 1e-4


def test_batch_random_is_plain_draw_on_one_device():
    import keras

    seed_a, seed_b = keras.random.SeedGenerator(3), keras.random.SeedGenerator(3)
    a = distribute.batch_random(keras.random.normal, (4, 2), seed=seed_a)
    b = keras.random.normal((4, 2), seed=seed_b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert distribute.num_replicas() == 1


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(config_lib.ConfigError, match="strategy"):
        config_lib.TrainConfig(strategy="tpu")
    with pytest.raises(ValueError, match="strategy"):
        distribute.make_strategy("tpu")
