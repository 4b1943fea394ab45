"""The `hierdiffuse` command line: prepare, train, evaluate and restore a run, experiment,
export, serve-dev, score, loadtest and bench.

Every command prints a one-line `error: ...` (exit 2) for bad input, naming the
field or file at fault, instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from hierdiffuse_tf import config as config_lib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _positive_int(text: str) -> int:
    """argparse type of a count (epochs, seeds, steps, batches, rows): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, not {text!r}")
    return value


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True,
                        help="movielens_100k_ctr, movielens_1m_ctr, synthetic_interest_ctr[/noise_10], "
                             "taobao_user_behavior_ctr or amazon_books_ctr")
    _flags(parser, "data_dir")


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one-line `ConfigError`s.

    A flag that the chosen sub-command does not take is refused, and the error
    names the sibling sub-commands that do take it (`commands`).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # `--data` is not silently `--data-dir`.
        super().__init__(*args, **kwargs)
        self.commands: dict[str, dict[str, argparse.ArgumentParser]] = {}

    def error(self, message):
        raise config_lib.ConfigError(f"{self.prog}: {message}")

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            raise config_lib.ConfigError(self._misplaced(parsed, extra))
        return parsed

    def _misplaced(self, parsed, extra) -> str:
        flag = next((t.split("=", 1)[0] for t in extra if t.startswith("--")), None)
        group = self.commands.get(getattr(parsed, "command", None), {})
        chosen = getattr(parsed, "which", None)
        readers = [name for name, p in group.items() if flag in p._option_string_actions]
        if flag and chosen and readers:
            return f"{flag} is for {' and '.join(readers)}, not {chosen}"
        return f"unrecognized arguments: {' '.join(extra)}"


def _int_list(flag: str, text: str) -> list[int]:
    """`--batch-sizes 256,4096` as ints; anything else is a one-line error naming the flag."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise config_lib.ConfigError(f"{flag}: expected comma-separated integers such as 256,4096. "
                                     f"Received: {text!r}") from None


def _flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Adds the named shared flags (`SHARED_FLAGS`) to a sub-command."""
    for name in names:
        args, kwargs = SHARED_FLAGS[name]
        parser.add_argument(*args, **kwargs)


def _set_flag(help_text: str) -> tuple:
    return (("--set",), dict(action="append", default=[], metavar="KEY=VALUE", help=help_text))


# Flags that several experiments or benchmarks take, each defined once.
SHARED_FLAGS = {
    "dataset": (("--dataset",), dict(default="movielens_100k_ctr", help="a prepared dataset")),
    "data_dir": (("--data-dir",), dict(default=None, help="TFDS data dir (default: TFDS's own)")),
    "seeds": (("--seeds",), dict(type=_positive_int, default=3)),
    "seeds_for": (("--seeds-for",), dict(action="append", default=[], metavar="MODEL=N",
                                         help="fewer (or more) seeds for one model than --seeds, "
                                              "e.g. --seeds-for diffurec=1; repeat for more")),
    "epochs": (("--epochs",), dict(type=_positive_int, default=None)),
    "out": (("--out",), dict(default="results")),
    "set": _set_flag("override applied to every run whose model has the field, e.g. --set batch_size=512"),
    "models": (("--models",), dict(default=None, help="comma-separated subset of the models")),
    "batch_size": (("--batch-size",), dict(type=_positive_int, default=256,
                                           help="shared inference batch size for timing")),
    "timing_batches": (("--timing-batches",), dict(type=_positive_int, default=20,
                                                   help="test batches timed per repeat")),
    "tuned": (("--tuned",), dict(default=None, help="a tuning.json from `experiment tune`; adds "
                                                     "each model's best overrides")),
    "name": (("--name",), dict(default=None, help="the table's file name under --out (default: "
                                                  "table1 or table2), e.g. table1_defaults")),
    "json": (("--json",), dict(default=None, help="write the result (and a .md table beside it)")),
    "trials": (("--trials",), dict(type=_positive_int, default=4,
                                   help="trials per model (the same for every model)")),
    "groups": (("--groups",), dict(default=None, help="comma-separated groups a-f, or a group's rows "
                                                    "by words of their names, e.g. d,e,'f:no fusion'")),
    "model_set": _set_flag("model config override, e.g. --set embed_dim=64"),
    "steps": (("--steps",), dict(type=_positive_int, default=30, help="timed training steps")),
}


def _add_experiments(which) -> dict:
    """`hierdiffuse experiment NAME`: each experiment with exactly the flags it reads."""
    runs = ("data_dir", "epochs", "out", "set")
    p = which.add_parser("tune", help="the same tuning budget for every model, on validation")
    _flags(p, "dataset", *runs, "models", "trials")
    tune = p
    p = which.add_parser("compare", help="config variants of one model against its defaults, on validation")
    _flags(p, "dataset", *runs, "seeds", "models")
    p.add_argument("--variant", action="append", default=[], metavar="'KEY=VALUE ...'",
                   help="one config variant (space-separated overrides); repeat for more")
    compare = p
    p = which.add_parser("table1", help="Table 1: every model, every seed")
    _flags(p, "dataset", *runs, "seeds", "seeds_for", "models", "batch_size", "timing_batches", "tuned",
           "name")
    table1 = p
    p = which.add_parser("table2", help="Table 2: HierDiffuse's ablations")
    _flags(p, "dataset", *runs, "seeds", "batch_size", "timing_batches", "tuned", "name", "groups")
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing; write the rows whose runs have all finished (a table under way)")
    table2 = p
    p = which.add_parser("reproduce", help="a dataset's tables in one command: tune, then Table 1 "
                                           "and Table 2 with the winners")
    _flags(p, "dataset", *runs, "trials", "seeds", "seeds_for", "groups", "batch_size", "timing_batches")
    reproduce = p
    p = which.add_parser("robustness", help="AUC against the noise-click rate (synthetic data)")
    _flags(p, *runs, "seeds", "models")
    p.add_argument("--noise", default="0,0.1,0.2,0.3,0.5", help="noise-click rates")
    robustness = p
    p = which.add_parser("status", help="where an experiment's runs stand: finished, training or "
                                        "stopped, with each epoch's validation AUC")
    _flags(p, "out")
    status = p
    p = which.add_parser("readme", help="splice the result tables into README.md and docs/")
    _flags(p, "out")
    p.add_argument("--readme", default=None, metavar="FILE",
                   help="the one Markdown file to splice results into (default: README.md and every "
                        "docs/*.md of the current directory that hold a results block)")
    return {"tune": tune, "compare": compare, "table1": table1, "table2": table2, "reproduce": reproduce,
            "robustness": robustness, "status": status, "readme": p}


def _add_benches(which) -> dict:
    """`hierdiffuse bench NAME`: each benchmark with exactly the flags it reads."""
    p = which.add_parser("inference", help="every inference path of one model, in one run")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--repeats", type=_positive_int, default=7)
    _flags(p, "json", "model_set")
    inference = p
    p = which.add_parser("train", help="training examples/s of HierDiffuse and the baselines")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--repeats", type=_positive_int, default=2, help="rounds over the models; each keeps its best")
    _flags(p, "models", "steps", "json", "model_set")
    train = p
    p = which.add_parser("profile", help="where HierDiffuse's training step spends its time")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    _flags(p, "steps", "json", "model_set")
    profile = p
    p = which.add_parser("data", help="the input pipeline against HierDiffuse's training rate")
    _flags(p, "dataset", "data_dir")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    _flags(p, "steps", "json")
    data = p
    p = which.add_parser("fusion", help="the fusion stage alone (TCC, DDIM, DDPM) at several batch sizes")
    p.add_argument("--batch-sizes", default="256,4096,16384", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=_positive_int, default=7)
    _flags(p, "json", "model_set")
    fusion = p
    p = which.add_parser("xla", help="each model's training and scoring, as a plain graph and with XLA")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    _flags(p, "models")
    p.add_argument("--steps", type=_positive_int, default=20, help="timed training steps")
    p.add_argument("--repeats", type=_positive_int, default=5)
    _flags(p, "json", "model_set")
    xla = p
    p = which.add_parser("epoch", help="DiffuRec's and DreamRec's time per epoch against HierDiffuse's")
    _flags(p, "dataset", "data_dir", "models")
    p.add_argument("--steps", type=_positive_int, default=200, help="timed training steps (the epoch is estimated)")
    _flags(p, "json", "set")
    epoch = p
    p = which.add_parser("beam", help="the Beam builder's throughput at each worker count")
    p.add_argument("--rows", type=_positive_int, default=2_000_000, help="rows of the generated UserBehavior.csv")
    p.add_argument("--workers", default="1,2", help="DirectRunner worker counts to time")
    p.add_argument("--workdir", default="/tmp/hierdiffuse_beam_bench",
                   help="where the generated file and the builds go")
    _flags(p, "json")
    return {"inference": inference, "fusion": fusion, "train": train, "profile": profile, "xla": xla,
            "data": data, "epoch": epoch, "beam": p}


def build_parser() -> CommandParser:
    parser = CommandParser(prog="hierdiffuse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="build a dataset with TFDS")
    _add_data_args(p)
    p.add_argument("--manual-dir", default=None, help="directory holding the raw files")
    p.add_argument("--beam-options", default=None,
                   help='Apache Beam pipeline options, e.g. "--runner=DirectRunner --direct_num_workers=2"')
    p.add_argument("--max-bad-fraction", type=float, default=None,
                   help="Beam builders: fail when more than this share of raw rows is malformed "
                        "(default 0.01)")

    p = sub.add_parser("train", help="train a model with model.fit and evaluate it on test "
                                     "(or on --eval-split)")
    _add_data_args(p)
    p.add_argument("--model", default="hierdiffuse", help="registry name, e.g. hierdiffuse")
    p.add_argument("--epochs", type=_positive_int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", default=None,
                   help="JSON/YAML file with `model:` and `train:` blocks, or a packaged config "
                        "(hierdiffuse_paper: the model as the paper prints it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field (repeatable), e.g. --set guidance=cfg")
    p.add_argument("--eval-split", choices=("test", "validation"), default="test",
                   help="the split evaluated after training; validation for tuning, so that "
                        "test is never read")
    p.add_argument("--strategy", choices=config_lib.STRATEGIES, default=None,
                   help="tf.distribute strategy; the batch size (--set batch_size=N) is global")
    p.add_argument("--out", required=True, help="run directory")

    experiments = sub.add_parser("experiment", help="regenerate the paper's tables (resumable)")
    which = experiments.add_subparsers(dest="which", required=True, metavar="EXPERIMENT")
    parser.commands["experiment"] = _add_experiments(which)
    p = sub.add_parser("export", help="write the serving SavedModel of a trained run (any model)")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--out", required=True, help="BASE/NAME/VERSION, e.g. models/hierdiffuse/1")
    p.add_argument("--signatures", default=None,
                   help="HierDiffuse's extra signatures beside serving_default: ddim_<k>, user_tokens, "
                        "rank (default: ddim_10,user_tokens,rank; the other models export "
                        "serving_default only)")
    p.add_argument("--xla", action="store_true",
                   help="compile the scoring signatures with XLA (faster on CPU; see docs/serving.md)")

    p = sub.add_parser("serve-dev", help="development stand-in for tensorflow_model_server (gRPC)")
    p.add_argument("--model-base-path", required=True, help="BASE/NAME holding numbered versions")
    p.add_argument("--model-name", required=True)
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--host", default="127.0.0.1")

    p = sub.add_parser("score", help="score a prepared split over gRPC; print AUC and latency")
    _add_data_args(p)
    p.add_argument("--server", required=True, help="HOST:PORT")
    p.add_argument("--model-name", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=_positive_int, default=None, help="score at most this many examples")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--out", default=None, help="write labels, scores and users (.npz or .csv)")

    p = sub.add_parser("loadtest", help="bounded gRPC load test against a loopback server")
    p.add_argument("--server", required=True, help="HOST:PORT on this machine (loopback only)")
    p.add_argument("--model-name", default="hierdiffuse")
    p.add_argument("--concurrency", type=_positive_int, default=16)
    p.add_argument("--requests", type=_positive_int, default=3200)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--json", default=None, help="write the results here")

    benches = sub.add_parser("bench", help="benchmarks, each timed in one run and written as JSON")
    which = benches.add_subparsers(dest="which", required=True, metavar="BENCHMARK")
    parser.commands["bench"] = _add_benches(which)
    p = sub.add_parser("evaluate", help="evaluate a trained run on a split")
    _add_data_args(p)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--split", default="test")
    p = sub.add_parser("restore", help="train a finished run again from its config.json to get back the "
                                       "model.keras git does not keep (checked against its metrics)")
    _flags(p, "data_dir")
    p.add_argument("--model-dir", required=True, help="a finished run: config.json and metrics.json")
    return parser


def _beam_options(text: str | None):
    if not text:
        return None
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(shlex.split(text))


def _benched_models(args) -> tuple[str, ...]:
    """The models a benchmark builds: `--models`, or its defaults."""
    from hierdiffuse_tf.bench.training import EPOCH_BENCH_MODELS, TRAIN_BENCH_MODELS
    from hierdiffuse_tf.models import MODELS

    defaults = {"train": TRAIN_BENCH_MODELS, "xla": tuple(MODELS),
                "epoch": EPOCH_BENCH_MODELS}.get(args.which, ("hierdiffuse",))
    return (_models(args) if hasattr(args, "models") else None) or defaults


def _models(args) -> tuple[str, ...] | None:
    """`--models` as names; an unknown one fails here, before any dataset is looked for."""
    from hierdiffuse_tf.models import get_model_class

    if not args.models:
        return None
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    for model in models:
        get_model_class(model)
    return models


def _seeds_for(args) -> dict[str, int]:
    """`--seeds-for MODEL=N` as `{model: N}`; a malformed pair or an unknown model fails here."""
    from hierdiffuse_tf.config import ConfigError
    from hierdiffuse_tf.models import get_model_class

    counts = {}
    for pair in args.seeds_for:
        model, _, count = (part.strip() for part in pair.partition("="))
        try:
            counts[model] = int(count)
        except ValueError:
            counts[model] = 0
        if counts[model] < 1:
            raise ConfigError(f"--seeds-for: expected MODEL=N with N a positive whole number, "
                              f"e.g. diffurec=1. Received: {pair!r}")
        get_model_class(model)
    return counts


def run_experiment(args: argparse.Namespace):
    from hierdiffuse_tf import experiments
    from hierdiffuse_tf.config import ConfigError
    from hierdiffuse_tf.datasets import pipeline

    argv = getattr(args, "argv", None) or sys.argv[1:]  # `main` records the arguments it parsed.
    command = "hierdiffuse " + " ".join(shlex.quote(a) for a in argv)
    if args.which == "status":
        from hierdiffuse_tf.experiments import status

        runs = status.experiment_status(args.out)
        print(status.markdown_status(runs))
        return status.state_counts(runs)
    if args.which == "readme":
        if args.readme:
            return {"spliced": experiments.splice_readme(args.readme, args.out)}
        return {"spliced": experiments.splice_docs(args.out)}  # {file: the blocks it filled}
    if getattr(args, "name", None):
        experiments.check_table_name(args.name)
    models = _models(args) if hasattr(args, "models") else None
    seeds_for = _seeds_for(args) if hasattr(args, "seeds_for") else {}
    runs = dict(epochs=args.epochs, data_dir=args.data_dir, common=args.set, command=command)
    if args.which == "robustness":
        try:
            noise = [float(v) for v in args.noise.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--noise: expected comma-separated rates such as 0,0.1,0.2. "
                              f"Received: {args.noise!r}") from None
        return experiments.robustness(args.out, noise, seeds=args.seeds,
                                      models=models or experiments.ROBUSTNESS_MODELS, **runs)
    if args.which == "compare" and not args.variant:
        raise ConfigError("compare needs at least one --variant, e.g. --variant 'alpha=0.1'")
    if args.which == "compare" and models and len(models) != 1:
        raise ConfigError(f"compare takes one model in --models. Received: {list(models)}")
    groups = getattr(args, "groups", None)  # Table 2's rows (`table2` and `reproduce`).
    rows = experiments.select_rows(groups) if groups else experiments.TABLE2_ROWS
    tuned = experiments.load_tuned(args.tuned) if getattr(args, "tuned", None) else None
    if seeds_for:  # Checked against the table's models before any dataset is looked for.
        experiments.seed_counts(models or experiments.TABLE1_MODELS, args.seeds, seeds_for)
    data = pipeline.open_dataset(args.dataset, args.data_dir)  # Resolved once, handed down.
    if args.which == "tune":
        return experiments.tune(data, args.out, models=models or experiments.TABLE1_MODELS,
                                trials=args.trials, **runs)
    if args.which == "compare":
        return experiments.compare(data, args.out, [v.split() for v in args.variant],
                                   model=(models or ("hierdiffuse",))[0], seeds=args.seeds, **runs)
    timed = dict(seeds=args.seeds, batch_size=args.batch_size, timing_batches_count=args.timing_batches,
                 **runs)  # What every table takes.
    if args.which == "reproduce":
        return experiments.reproduce(data, args.out, trials=args.trials, seeds_for=seeds_for,
                                     rows_spec=rows, **timed)
    table = dict(tuned=tuned, name=args.name or args.which, **timed)
    if args.which == "table1":
        return experiments.table1(data, args.out, models=models or experiments.TABLE1_MODELS,
                                  seeds_for=seeds_for, **table)
    return experiments.table2(data, args.out, rows_spec=rows, finished_only=args.finished_only, **table)


def run_bench(args: argparse.Namespace) -> dict:
    """Runs one benchmark, writes its JSON (and a .md table beside it) and prints the table."""
    from hierdiffuse_tf.bench import data, inference, training
    from hierdiffuse_tf.bench.timing import write

    if args.which == "beam":  # Each worker count's run is written as soon as it is timed.
        summary = data.bench_beam(args.rows, _int_list("--workers", args.workers), args.workdir,
                                  on_run=lambda r: write(r, args.json, data.markdown_beam))
        print(data.markdown_beam(summary))
        return summary
    # `bench epoch` takes `--set` as a table does (train fields too); the others model fields only.
    values = _bench_model_values(args) if args.which != "epoch" else {}
    benches = {  # name: (the run, its markdown table)
        "epoch": (lambda: training.bench_epoch(args.dataset, args.data_dir, _benched_models(args),
                                               common=args.set, steps=args.steps), training.markdown_epoch),
        "inference": (lambda: inference.bench_inference(args.batch_size, repeats=args.repeats,
                                                        model_values=values), inference.markdown),
        "fusion": (lambda: inference.bench_fusion(_int_list("--batch-sizes", args.batch_sizes),
                                                  repeats=args.repeats, model_values=values),
                   inference.markdown_fusion),
        "xla": (lambda: training.bench_xla(_benched_models(args), args.batch_size, args.steps, args.repeats,
                                           values), training.markdown_xla),
        "train": (lambda: training.bench_train(_benched_models(args), batch_size=args.batch_size,
                                               steps=args.steps, model_values=values, repeats=args.repeats),
                  training.markdown_throughput),
        "profile": (lambda: training.profile_train_step(args.batch_size, steps=args.steps, model_values=values),
                    training.markdown_profile),
        "data": (lambda: data.bench_data(args.dataset, args.data_dir, args.batch_size, steps=args.steps),
                 training.markdown_throughput),
    }
    run, markdown = benches[args.which]
    summary = run()
    write(summary, args.json, markdown)
    print(markdown(summary))
    if args.which == "inference":  # The rest is in the JSON.
        return {"ratios": summary["ratios"], "batches_per_sec": summary["batches_per_sec"]}
    return summary


def _bench_model_values(args: argparse.Namespace) -> dict:
    """A benchmark's `--set` pairs as model config values.

    Each pair is read by the config of a model that has its field (say DiffuRec's
    `denoiser`; a field shared by several configs has one type in all); each benched
    model then takes its own fields, as a table's `--set` does. A field that no model
    has is an error, named against every model's fields, and so is a training field.
    """
    from hierdiffuse_tf.config import (ConfigError, TrainConfig, apply_overrides, override_key,
                                       unknown_key_message)
    from hierdiffuse_tf.models import MODELS

    values, train_values = {}, {}
    classes = list(dict.fromkeys(cls.config_cls for cls in MODELS.values()))
    for pair in getattr(args, "set", None) or ():
        owner = next((c for c in classes if override_key(pair) in c.field_names()), None)
        if owner is None and "=" in pair and override_key(pair) not in TrainConfig.field_names():
            known = sorted(set().union(*(c.field_names() for c in classes)))
            raise ConfigError(unknown_key_message(override_key(pair), known, "any model"))
        apply_overrides(values, train_values, owner or classes[0], [pair])
    if train_values:
        raise ConfigError(f"bench {args.which} --set takes model fields only; {sorted(train_values)} "
                          "are training fields (the batch size is --batch-size)")
    return values


def run_serving(args: argparse.Namespace):
    import numpy as np

    from hierdiffuse_tf.serving import client as client_lib

    if args.command == "serve-dev":
        from hierdiffuse_tf.serving.server import DevServer

        DevServer(args.model_base_path, args.model_name, args.host, args.port).serve_forever()
        return {"stopped": True}
    if args.command == "score":
        from hierdiffuse_tf import training
        from hierdiffuse_tf.datasets import pipeline

        data = pipeline.open_dataset(args.dataset, args.data_dir, auto_prepare=False)
        client = client_lib.Client(args.server, args.model_name)
        scored = client.score_dataset(data.batches(args.split, args.batch_size), args.limit)
        summary = {**training.ctr_metrics(scored["labels"], scored["scores"], scored["users"]),
                   **client_lib.latency_summary(scored["latencies"]), "requests": len(scored["latencies"]),
                   "batch_size": args.batch_size, "server": args.server}
        if args.out:
            columns = {k: scored[k] for k in ("labels", "scores", "users")}
            if args.out.endswith(".csv"):
                np.savetxt(args.out, np.stack([columns["users"], columns["labels"], columns["scores"]], 1),
                           delimiter=",", header="user_id,label,ctr", comments="", fmt=["%d", "%d", "%.7f"])
            else:
                np.savez(args.out, **columns)
        return summary
    client_lib.require_loopback(args.server)
    client = client_lib.Client(args.server, args.model_name)
    shapes = client.signatures()["serving_default"]["inputs"]
    rng = np.random.default_rng(0)
    features = {k: rng.integers(0, 2 if k.endswith("popular") else 20,
                                size=[args.batch_size if d == -1 else d for d in shape]).astype(np.int64)
                for k, shape in shapes.items()}
    summary = client_lib.load_test(client, features, args.concurrency, args.requests, args.max_seconds)
    if args.json:
        from hierdiffuse_tf.utils import write_text

        write_text(args.json, client_lib.dumps(summary))
    return summary


def run(args: argparse.Namespace) -> dict | None:
    from hierdiffuse_tf import training
    from hierdiffuse_tf.datasets import pipeline

    if args.command == "prepare":
        builder = pipeline.prepare(args.dataset, args.data_dir, args.manual_dir,
                                   beam_options=_beam_options(args.beam_options),
                                   max_bad_fraction=args.max_bad_fraction)
        summary = {"dataset": args.dataset, "data_dir": str(builder.data_dir),
                   "splits": {k: v.num_examples for k, v in builder.info.splits.items()},
                   "metadata": dict(builder.info.metadata or {})}
    elif args.command == "train":
        strategy = [f"strategy={args.strategy}"] if args.strategy else []
        summary = training.train(args.model, args.dataset, args.out, data_dir=args.data_dir,
                                 epochs=args.epochs, seed=args.seed, config_file=args.config,
                                 overrides=args.set + strategy, eval_split=args.eval_split)
        summary = {k: v for k, v in summary.items() if k != "history"}
        print(f"{args.eval_split} AUC {summary['auc']:.4f}  logloss {summary['logloss']:.4f}  "
              f"GAUC {summary['gauc']:.4f}  ({summary['examples']} examples, "
              f"{summary['seconds']:.0f} s training) -> {args.out}")
    elif args.command == "export":
        from hierdiffuse_tf import export

        asked = None if args.signatures is None else [s for s in args.signatures.split(",") if s]
        path = export.export_saved_model(training.load_run_model(args.model_dir), args.out, asked,
                                         xla=args.xla)
        summary = {"saved_model": path, "signatures": export.signature_names(path)}
    elif args.command == "experiment":
        summary = run_experiment(args)
    elif args.command == "bench":
        summary = run_bench(args)
    elif args.command in ("serve-dev", "score", "loadtest"):
        summary = run_serving(args)
    elif args.command == "evaluate":
        summary = training.evaluate_run(args.model_dir, args.dataset, args.split, args.data_dir)
    elif args.command == "restore":
        from hierdiffuse_tf.experiments.runs import restore_models
        from hierdiffuse_tf.utils import read_json

        model = os.path.join(args.model_dir, "model.keras")
        if os.path.exists(model):
            print(f"{model} is there already: nothing to restore")
        restore_models([args.model_dir], args.data_dir)  # Under the run's lock, as the tables take it.
        summary = {"model": model, "restored": read_json(os.path.join(args.model_dir, "restored.json"))}
    else:
        raise AssertionError(f"`hierdiffuse {args.command}` has a parser but no handler in cli.run")
    print(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv=None) -> int:
    from hierdiffuse_tf.errors import HierDiffuseError

    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # Recorded in each table's caption.
        run(args)
    except (HierDiffuseError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # A gRPC failure of score / loadtest, e.g. no server there.
        if not hasattr(error, "code") or not type(error).__module__.startswith("grpc"):
            raise
        print(f"error: gRPC {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
