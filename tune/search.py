"""``reelgraph-tune``: a Ray Tune search over the YAML that ``reelgraph fit`` takes.

The driver checks everything before any trial starts (the fit config with the CLI's parser, each
space key against it, the metric, the scheduler's budget), builds the graph store once, then runs
one Tune function trial per sample (:func:`reelgraph.tune.trial.train_trial`: the same Lightning
fit, in the trial's process). ASHA (``--scheduler asha``) stops trials between validations;
random search or Optuna's TPE (``--search optuna``) picks the values. At the end it prints the
best trial and writes, in ``<storage-path>/<name>/``, ``best.yaml`` (a config ``reelgraph fit``
takes unchanged), ``results.parquet``/``.csv`` and the plots (:mod:`reelgraph.tune.export`).

Examples::

    reelgraph-tune --config configs/lightgcn_synthetic.yaml --space configs/spaces/lightgcn.yaml \\
        --num-samples 16 --max-concurrent-trials 2 --trainer.max_epochs 10
    python -m reelgraph.tune --config configs/lightgcn_synthetic.yaml \\
        --space configs/spaces/simgcl.yaml --search optuna --num-samples 32 --name simgcl
    reelgraph-tune --resume --name simgcl          # continue an interrupted search
    tensorboard --logdir runs/tune/simgcl          # HParams tab: values and hp_metric per trial
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import pandas as pd

from reelgraph.lightning_modules.cli import MONITOR
from reelgraph.tune import export
from reelgraph.tune.space import Param, apply, check_keys, param_space, parse_space
from reelgraph.tune.trial import (VALIDATIONS, TrialCLI, TrialSetup, metric_names,
                                  train_trial)

log = logging.getLogger("reelgraph")
STATE_FILE = "search.json"   # <storage>/<name>/: what --resume needs besides Tune's own state


@dataclass
class Summary:
    """The outcome of a search: its folder, the results table, the best row and files."""

    experiment_dir: str
    table: pd.DataFrame
    best: dict[str, Any] | None
    num_errors: int
    files: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="reelgraph-tune", allow_abbrev=False,
        description="Ray Tune search over the YAML config `reelgraph fit` takes: each trial is "
                    "that fit with the trial's values of the --space keys (the CLI's dotted "
                    "keys) appended as overrides. Any further `--trainer.*`, `--model.*`, "
                    "`--data.*` arguments override the YAML for every trial (and stay in "
                    "best.yaml), exactly as in `reelgraph fit`.",
        epilog="Writes <storage-path>/<name>/: one folder per trial (its TensorBoard run under "
               "lightning/), best.yaml, results.parquet, results.csv, metric_vs_<key>.png, "
               "curves.png. Set RAY_ADDRESS (or --address) to use a running cluster, e.g. under "
               "`ray job submit`; paths in the config must then exist on every node.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="YAML config of `reelgraph fit` (required unless --resume)")
    p.add_argument("--space", help="search-space YAML: dotted key -> {distribution: args} or a "
                                   "fixed value; see configs/spaces/ (required unless --resume)")
    p.add_argument("--num-samples", type=int, default=10,
                   help="trials to sample (with `grid` keys: repetitions of the whole grid)")
    p.add_argument("--max-concurrent-trials", type=int, default=0,
                   help="trials running at once; 0: as many as the CPUs/GPUs allow")
    p.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help="CPUs reserved per trial, or per worker with --workers-per-trial > 1 "
                        "(also its torch threads; add data.num_workers)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial (a fraction packs trials on one GPU); > 0 trains on gpu; "
                        "with --workers-per-trial > 1, one GPU per worker")
    p.add_argument("--workers-per-trial", type=int, default=1,
                   help="Ray Train workers (DDP ranks) per trial: > 1 makes each trial the "
                        "driver of a TorchTrainer, as `python -m reelgraph.distributed.train`")
    p.add_argument("--scheduler", choices=("asha", "fifo"), default="asha",
                   help="asha: AsyncHyperBandScheduler stops trials whose metric is below the "
                        "top 1/reduction-factor at a rung; fifo: every trial runs to the end")
    p.add_argument("--grace-period", type=int, default=1,
                   help="ASHA: validations (epochs, with check_val_every_n_epoch 1) before a "
                        "trial may be stopped")
    p.add_argument("--reduction-factor", type=float, default=2.0,
                   help="ASHA: rungs at grace * rf^k validations; keeps the top 1/rf at each")
    p.add_argument("--search", choices=("random", "optuna"), default="random",
                   help="random: Tune's random/grid sampler; optuna: OptunaSearch (TPE; no grid)")
    p.add_argument("--metric", default=MONITOR,
                   help="metric to maximise: val/{recall,ndcg,precision,hitrate}@K, K in model.ks")
    p.add_argument("--name", default=None,
                   help="search name, the folder under --storage-path; <config>-<space> stems "
                        "if not given")
    p.add_argument("--storage-path", default="runs/tune",
                   help="where searches are kept (made absolute; local or shared, e.g. NFS)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted search <storage-path>/<name> (Tuner.restore; "
                        "unfinished and failed trials continue from their latest checkpoint); "
                        "its saved config, space and flags are used")
    p.add_argument("--max-failures", type=int, default=0,
                   help="retries of a failed trial (from its latest checkpoint) before it is "
                        "ERROR")
    p.add_argument("--no-checkpoints", dest="checkpoints", action="store_false",
                   help="trials save no checkpoint at their validations (a retried or resumed "
                        "trial then restarts at epoch 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (random or TPE)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray started when none runs (None: all)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address; RAY_ADDRESS if not given, else a local Ray")
    p.add_argument("--fail-at-epoch", type=int, default=None,
                   help="fault drill: the first trial to reach this epoch raises once (then "
                        "--resume reruns it)")
    args, rest = p.parse_known_args(argv)
    if not args.resume and not (args.config and args.space):
        p.error("--config and --space are required (or --resume with --name)")
    if args.resume and not args.name:
        p.error("--resume needs the --name of the search to continue")
    for flag in ("config", "space"):
        if getattr(args, flag) and not args.resume and not os.path.isfile(getattr(args, flag)):
            p.error(f"--{flag} {getattr(args, flag)}: no such file")
    checks = [("--num-samples", args.num_samples >= 1), ("--cpus-per-trial", args.cpus_per_trial > 0),
              ("--gpus-per-trial", args.gpus_per_trial >= 0),
              ("--max-concurrent-trials", args.max_concurrent_trials >= 0),
              ("--max-failures", args.max_failures >= 0),
              ("--workers-per-trial", args.workers_per_trial >= 1),
              ("--grace-period", args.grace_period >= 1),
              ("--reduction-factor", args.reduction_factor > 1)]
    for flag, ok in checks:
        if not ok:
            p.error(f"{flag}: out of range (see --help)")
    if "://" in args.storage_path:
        p.error("--storage-path: a local or shared (NFS) folder; remote URIs are not supported yet")
    bad = [a for a in rest if a[:1] == "-" and a[1:2].isalpha()]  # -x; values like -1 pass
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    args.storage_path = os.path.abspath(args.storage_path)
    if args.name is None:
        stem = lambda path: os.path.splitext(os.path.basename(path))[0]  # noqa: E731
        args.name = f"{stem(args.config)}-{stem(args.space)}"
    return args, rest


def validation_rounds(cfg: Any) -> int | None:
    """Validations per trial (one Tune report each): ``max_epochs // check_val_every_n_epoch``."""
    epochs = cfg.get("trainer.max_epochs")
    every = cfg.get("trainer.check_val_every_n_epoch") or 1
    return epochs // every if epochs and epochs > 0 else None


def check_search(space: dict[str, Param], cfg: Any, args: argparse.Namespace) -> int | None:
    """Fails (ValueError, one line) on a metric the module does not log, a scheduler budget the
    config cannot give, or a space Optuna cannot take; returns the validation rounds."""
    names = metric_names(cfg.get("model.ks") or ())
    if args.metric not in names:
        raise ValueError(f"--metric {args.metric}: RecModule does not log it with model.ks="
                         f"{list(cfg.get('model.ks') or ())}; one of: {', '.join(names)}")
    rounds = validation_rounds(cfg)
    if args.workers_per_trial > 1 and (cfg.get("trainer.check_val_every_n_epoch") or 1) != 1:
        raise ValueError("--workers-per-trial > 1: Ray Train reports every epoch, so set "
                         "trainer.check_val_every_n_epoch 1")
    if args.scheduler == "asha":
        if rounds is None:
            raise ValueError("--scheduler asha: set trainer.max_epochs (ASHA's budget)")
        if args.grace_period > rounds:
            raise ValueError(f"--grace-period {args.grace_period}: more than the {rounds} "
                             "validations of trainer.max_epochs")
    if args.search == "optuna":
        for p in space.values():
            if p.kind == "grid":
                raise ValueError(f"{p.key}: grid cannot be searched by Optuna; use choice")
            if p.kind == "choice" and any(isinstance(o, (list, dict)) for o in p.args):
                raise ValueError(f"{p.key}: Optuna's choice takes scalars (bool, int, float, str)")
    return rounds


def prepare(args: argparse.Namespace, rest: list[str], experiment_dir: str) -> dict[str, Any]:
    """Checks a new search and builds the graph store once (no trial races to build it); saves
    and returns the search's state (``search.json``)."""
    with open(args.config) as f:  # the YAML text travels to the trials, not the path
        cli_args = ["--config", f.read(), *rest]
    with open(args.space) as f:
        space_text = f.read()
    space = parse_space(space_text)
    parser = TrialCLI(cli_args, instantiate=False).parser  # fails on a bad fit config itself
    check_keys(space, parser, cli_args)
    fixed = {k: p.args[0] for k, p in space.items() if not p.searched}
    cfg = parser.parse_args(apply(cli_args, fixed))
    rounds = check_search(space, cfg, args)
    parser.instantiate_classes(cfg)["data"].prepare_data()  # the model's config is checked too
    setup = TrialSetup(tuple(cli_args), args.metric, experiment_dir, args.cpus_per_trial,
                       args.gpus_per_trial, os.getcwd(), args.workers_per_trial,
                       args.fail_at_epoch, args.checkpoints)
    state = {"setup": asdict(setup), "space": space_text, "config": os.path.abspath(args.config),
             "rounds": rounds, "max_epochs": cfg.get("trainer.max_epochs"),
             "flags": {k: v for k, v in vars(args).items() if k != "resume"}}
    os.makedirs(experiment_dir, exist_ok=True)
    with open(os.path.join(experiment_dir, STATE_FILE), "w") as f:
        json.dump(state, f, indent=1)
    return state


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connects to ``address``/``RAY_ADDRESS`` or starts a local Ray, unless one is running;
    True if this call started or joined it."""
    import ray

    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address)  # None: RAY_ADDRESS
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    return True


def worker_groups(setup: TrialSetup) -> int:
    """Trials of ``setup.workers`` > 1 the Ray cluster fits at once (0: no limit, one worker per
    trial): their drivers reserve nothing, so without a limit Tune would start every trial at
    once and their Train runs would queue for workers."""
    import ray

    if setup.workers == 1:
        return 0
    have = ray.cluster_resources()
    fits = int(have.get("CPU", 0) // (setup.workers * setup.cpus))
    if setup.gpus > 0:
        fits = min(fits, int(have.get("GPU", 0) // setup.workers))
    if fits < 1:
        raise SystemExit(f"reelgraph-tune: a trial of {setup.workers} workers needs "
                         f"{setup.workers * setup.cpus:g} CPUs"
                         + (f" and {setup.workers} GPUs" if setup.gpus > 0 else "")
                         + f"; the Ray cluster has {have.get('CPU', 0):g} CPUs, "
                           f"{have.get('GPU', 0):g} GPUs")
    return fits


def trial_dirname(trial: Any) -> str:
    """``trial_<id>``: Ray's default folder name repeats every value of the trial."""
    return f"trial_{trial.trial_id}"


def make_tuner(state: dict[str, Any], args: argparse.Namespace, resume: bool) -> Any:
    """A ``Tuner`` of a new search, or ``Tuner.restore`` of the saved one."""
    from ray import tune
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    setup = TrialSetup(**{**state["setup"], "cli_args": tuple(state["setup"]["cli_args"])})
    # a multi-worker trial is only the driver of its TorchTrainer: the workers hold the CPUs
    # (Tune needs some resource in a trial's bundle: 1 MiB of memory, no CPU)
    driver = ({"cpu": setup.cpus, "gpu": setup.gpus} if setup.workers == 1
              else {"cpu": 0, "memory": 1 << 20})
    trainable = tune.with_resources(tune.with_parameters(train_trial, setup=setup), driver)
    if resume:
        return tune.Tuner.restore(setup.experiment_dir, trainable, resume_unfinished=True,
                                  resume_errored=True)
    limit = args.max_concurrent_trials or worker_groups(setup)
    if args.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search = OptunaSearch(seed=args.seed)
        search = ConcurrencyLimiter(search, max_concurrent=limit) if limit else search
    else:
        search = BasicVariantGenerator(max_concurrent=limit, random_state=args.seed)
    scheduler = FIFOScheduler() if args.scheduler == "fifo" else AsyncHyperBandScheduler(
        time_attr=VALIDATIONS, max_t=state["rounds"], grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, stop_last_trials=False)  # Lightning ends a trial
    return tune.Tuner(
        trainable, param_space=param_space(parse_space(state["space"])),
        tune_config=tune.TuneConfig(metric=setup.metric, mode="max", search_alg=search,
                                    scheduler=scheduler, num_samples=args.num_samples,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=os.path.basename(setup.experiment_dir),
                                  storage_path=os.path.dirname(setup.experiment_dir),
                                  failure_config=tune.FailureConfig(max_failures=args.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))


def finish(grid: Any, state: dict[str, Any]) -> Summary:
    """Table, best.yaml and plots of a finished search; prints the best trial."""
    setup, space = state["setup"], parse_space(state["space"])
    metric, out = setup["metric"], setup["experiment_dir"]
    trials = export.trial_histories(grid)
    table = export.results_table(trials, space, metric)
    files = export.write_table(table, out)
    ok = table[table[f"best_{metric}"].notna()]
    best = ok.iloc[0].to_dict() if len(ok) else None
    errors = int((table["status"] == "ERROR").sum())
    print(table.drop(columns=["trial_dir"]).to_string(index=False))
    if best is not None:
        trial = next(t for t in trials if t["trial_id"] == best["trial_id"])
        header = (f"reelgraph tune: best of {len(table)} trials of {os.path.basename(out)}: "
                  f"{metric} = {best[f'best_{metric}']:.4f} (trial {best['trial_id']})\n"
                  "train it: reelgraph fit --config best.yaml")
        files.append(export.best_yaml(setup["cli_args"], trial["config"],
                                      os.path.join(out, "best.yaml"), header))
        print(f"\nbest trial {best['trial_id']}: {metric} = {best[f'best_{metric}']:.4f} after "
              f"{best['epochs']} epochs")
        for key, p in space.items():
            if p.searched:
                print(f"  {key}: {best[key]}")
    files += export.plot_params(table, space, metric, state.get("max_epochs"), out)
    files.append(export.plot_curves(trials, metric, os.path.join(out, "curves.png"),
                                    best and best["trial_id"]))
    if errors:
        print(f"{errors} trial(s) failed (status ERROR; see their error.txt); rerun with "
              f"--resume --name {os.path.basename(out)} to run them again")
    print(f"written: {', '.join(files)}")
    return Summary(out, table, best, errors, files)


def run(argv: Sequence[str] | None = None) -> Summary:
    """A search from command-line arguments (see ``--help``); returns its :class:`Summary`."""
    from ray.tune import Tuner

    args, rest = parse_args(argv)
    experiment_dir = os.path.join(args.storage_path, args.name)
    if args.resume:
        if not (Tuner.can_restore(experiment_dir)
                and os.path.isfile(os.path.join(experiment_dir, STATE_FILE))):
            raise SystemExit(f"--resume: no reelgraph-tune search to continue in {experiment_dir}")
        with open(os.path.join(experiment_dir, STATE_FILE)) as f:
            state = json.load(f)
        args = argparse.Namespace(**{**state["flags"], "resume": True, "address": args.address,
                                     "num_cpus": args.num_cpus})
    else:
        if Tuner.can_restore(experiment_dir):
            raise SystemExit(f"{experiment_dir} holds a search already: --resume continues it, "
                             "or give another --name")
        try:
            state = prepare(args, rest, experiment_dir)
        except ValueError as e:  # one line, naming the space key or the flag
            raise SystemExit(f"reelgraph-tune: {e}") from None
        except argparse.ArgumentError as e:  # the fit config (or an override): jsonargparse's
            raise SystemExit(f"reelgraph-tune: --config {args.config}: {e}") from None
    started = start_ray(args.address, args.num_cpus)
    try:
        grid = make_tuner(state, args, resume=args.resume).fit()
        return finish(grid, state)
    finally:
        if started:
            import ray

            ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry; exit status 1 when no trial produced the metric."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = run(argv)
    return 0 if summary.best is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
