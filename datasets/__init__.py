"""TFDS builders of hierdiffuse-tf, one folder per dataset (the `tfds new` layout).

Installed as `hierdiffuse_tf.datasets` (never as a top-level `datasets`, a name
that belongs to another library). Importing this package registers every
builder with TFDS, so `tfds.builder("movielens_100k_ctr")` works.
"""

from hierdiffuse_tf.datasets.amazon_books_ctr import amazon_books_ctr_dataset_builder  # noqa: F401
from hierdiffuse_tf.datasets.movielens_100k_ctr import movielens_100k_ctr_dataset_builder  # noqa: F401
from hierdiffuse_tf.datasets.movielens_1m_ctr import movielens_1m_ctr_dataset_builder  # noqa: F401
from hierdiffuse_tf.datasets.synthetic_interest_ctr import synthetic_interest_ctr_dataset_builder  # noqa: F401
from hierdiffuse_tf.datasets.taobao_user_behavior_ctr import taobao_user_behavior_ctr_dataset_builder  # noqa: F401

NAMES = ("amazon_books_ctr", "movielens_100k_ctr", "movielens_1m_ctr", "synthetic_interest_ctr",
         "taobao_user_behavior_ctr")
