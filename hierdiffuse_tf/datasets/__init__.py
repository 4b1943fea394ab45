"""The TFDS builders of hierdiffuse-tf and their bases, one folder per dataset (the `tfds new` layout).

- `tfds_base`: `BehaviourCtrBuilder`, the in-process builders' base (ml-100k, ml-1m, synthetic);
- `beam_base`: `BeamBehaviourCtrBuilder`, the Apache Beam base (Amazon Books, Taobao);
- `pipeline`: a prepared dataset's handle and its batched `tf.data` input for `model.fit`.

The SPEC 1 protocol the builders share (features, sessions, negatives, the time
split) is `hierdiffuse_tf.data.behaviors`. Importing this package registers
every builder with TFDS, so `tfds.builder("movielens_100k_ctr")` works; the
top-level `datasets/` of the repository is a link here, so `tfds build
datasets/movielens_100k_ctr` works too. Nothing installs as a top-level
`datasets`, a name that belongs to another library.
"""

from hierdiffuse_tf.datasets.amazon_books_ctr import amazon_books_ctr_dataset_builder  # noqa: F401
from hierdiffuse_tf.datasets.movielens_100k_ctr import movielens_100k_ctr_dataset_builder  # noqa: F401
from hierdiffuse_tf.datasets.movielens_1m_ctr import movielens_1m_ctr_dataset_builder  # noqa: F401
from hierdiffuse_tf.datasets.synthetic_interest_ctr import synthetic_interest_ctr_dataset_builder  # noqa: F401
from hierdiffuse_tf.datasets.taobao_user_behavior_ctr import taobao_user_behavior_ctr_dataset_builder  # noqa: F401

NAMES = ("amazon_books_ctr", "movielens_100k_ctr", "movielens_1m_ctr", "synthetic_interest_ctr",
         "taobao_user_behavior_ctr")
