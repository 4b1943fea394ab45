"""Ad hoc (2026-12-07, before `encoder_chunk` existed): paired_step.py of results/speed_s38 with a
pseudo-setting chunk=N that gives DiffuRec's and DreamRec's sequence encoder `chunk_size=N`.
See ../step_ms.txt."""
import functools, json, sys
import keras
from hierdiffuse_tf import training
from hierdiffuse_tf.bench.training import paired_step_ms
from hierdiffuse_tf.datasets import pipeline
from hierdiffuse_tf.models import target_diffusion
from hierdiffuse_tf.layers import SequenceEncoder
data = pipeline.open_dataset("movielens_100k_ctr")
batch = list(data.batches("train", 256, shuffle=True, seed=0, drop_remainder=True).take(4))[3]
models = {}
for spec in sys.argv[1].split(","):
    name, *sets = spec.split(":")
    chunk = [int(s.split("=")[1]) for s in sets if s.startswith("chunk=")]
    sets = [s for s in sets if not s.startswith("chunk=")]
    target_diffusion.SequenceEncoder = functools.partial(SequenceEncoder, chunk_size=chunk[0]) if chunk else SequenceEncoder
    cls, model_config, train_config = training.resolve_configs(name, data, overrides=sets)
    keras.utils.set_random_seed(0)
    model = cls(model_config)
    models[spec] = training.compile_model(model, train_config)
    print(spec, model.sequence_length if hasattr(model, "sequence_length") else "")
print(json.dumps(paired_step_ms(models, batch, int(sys.argv[2]))))
