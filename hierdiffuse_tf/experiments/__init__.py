"""The paper's tables, regenerated: `hierdiffuse experiment table1 | table2 | robustness | tune | compare
| reproduce | readme`.

- `runs`: each table's training runs, resumable, locked between processes,
  and refused when they drifted from today's config;
- `tuning`: the equal tuning budget and one model's variants, on validation;
- `tables`: Table 1, Table 2 and the robustness sweep;
- `reproduction`: tune, Table 1 and Table 2 of a dataset in one command;
- `report`: the tables' files and plots, and splicing them into the docs.
"""

from hierdiffuse_tf.experiments.report import (  # noqa: F401
    check_table_name, learning_curves, splice_docs, splice_readme, summary, write_table)
from hierdiffuse_tf.experiments.reproduction import reproduce  # noqa: F401
from hierdiffuse_tf.experiments.runs import (  # noqa: F401
    claim_run, config_drift, overrides_for, release_run, run_key, train_runs)
from hierdiffuse_tf.experiments.tables import (  # noqa: F401
    NOISE_CONFIGS, ROBUSTNESS_MODELS, TABLE1_MODELS, TABLE2_ROWS, Row, robustness, seed_counts, select_rows, table1,
    table2)
from hierdiffuse_tf.experiments.tuning import (  # noqa: F401
    TUNING_SPACE, compare, load_tuned, tune, tuned_overrides, tuning_trials)
