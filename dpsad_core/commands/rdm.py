"""``dpsad-core rdm``: DP-RDM, private retrieval steering a public diffusion model (docs/method.md §2).

Sub-commands: ``plan`` (what queries cost), ``train-public`` (encoder and model on public data),
``index`` (embed the private set once), ``generate`` (answer queries within a budget into a run).
"""

from __future__ import annotations

import argparse
import sys

from dpsad_core.commands import options as typed
from dpsad_core.commands.common import (
    add_seed_options,
    add_workspace_option,
    print_json,
    stop_flag,
    workspace_from_args,
)
from dpsad_core.errors import EXIT_INTERRUPTED


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``rdm`` and its sub-commands to the ``dpsad-core`` parser."""
    rdm = commands.add_parser(
        "rdm", help="DP-RDM: steer a public diffusion model with private retrieval (no training on private data)",
        description="The private set is never trained on: a model trained on public data is steered, query by "
                    "query, by a differentially private noisy mean of the private records nearest to the query.")
    sub_commands = rdm.add_subparsers(title="rdm commands", metavar="COMMAND")
    rdm.set_defaults(handler=lambda args: (rdm.print_help(), 2)[1])
    _register_plan(sub_commands)
    _register_train_public(sub_commands)
    _register_index(sub_commands)
    _register_generate(sub_commands)


# -- plan ------------------------------------------------------------------------------------------
def _register_plan(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("plan", help="epsilon that M queries cost, or how many queries a budget buys",
                              description="Each query is a sampled Gaussian mechanism with noise multiplier "
                                          "sigma*k/2 and rate q; queries compose under RDP.")
    sub.add_argument("--n", type=int, required=True, help="records (privacy units) in the private index")
    sub.add_argument("--k", type=int, required=True, help="neighbours averaged per query")
    sub.add_argument("--q", dest="sample_rate", type=typed.number("--q", above=0.0, maximum=1.0), required=True,
                     help="Poisson subsampling rate per query")
    sub.add_argument("--sigma", type=typed.number("--sigma", above=0.0), required=True,
                     help="std of the noise added to the mean")
    budget = sub.add_mutually_exclusive_group(required=True)
    budget.add_argument("--queries", type=int, help="number of queries to price")
    budget.add_argument("--epsilon", type=typed.epsilon(), help="budget: print how many queries it buys")
    sub.add_argument("--delta", type=typed.delta(), required=True, help="target delta")
    sub.add_argument("--json", action="store_true", help="print one JSON object (epsilon, rdp_order, ...)")
    sub.set_defaults(handler=_cmd_plan)


def _cmd_plan(args: argparse.Namespace) -> int:
    from dpsad_core.rdm.planner import RetrievalSettings, plan_queries, queries_for_budget

    settings = RetrievalSettings(k=args.k, sample_rate=args.sample_rate, sigma=args.sigma)
    if args.queries is not None:
        plan = plan_queries(num_records=args.n, settings=settings, queries=args.queries, delta=args.delta)
    else:
        plan = queries_for_budget(num_records=args.n, settings=settings, epsilon=args.epsilon, delta=args.delta)
    result = plan.to_dict()
    if args.epsilon is not None:
        result["epsilon_budget"] = args.epsilon
    if args.json:
        print_json(result)
        return 0
    order = "-" if plan.rdp_order is None else f"{plan.rdp_order:g}"
    print(f"DP-RDM on {plan.num_records} records: k {settings.k}, q {settings.sample_rate:g}, sigma {settings.sigma:g} "
          f"(noise multiplier {settings.noise_multiplier:g})")
    if args.epsilon is not None:
        print(f"  a budget of epsilon {args.epsilon:g} buys {plan.queries} queries "
              f"(they cost {plan.epsilon:.4f} at delta {plan.delta:g}, RDP order {order})")
    else:
        print(f"  {plan.queries} queries cost epsilon {plan.epsilon:.4f} at delta {plan.delta:g} (RDP, order {order})")
    print(f"  one query alone: epsilon {plan.epsilon_per_query:.4f}; expected subsample {plan.expected_subsample:.4g} "
          "records")
    for warning in plan.warnings:
        print(f"  warning: {warning}")
    return 0


# -- train-public ----------------------------------------------------------------------------------
def _register_train_public(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("train-public", help="train the frozen encoder and the retrieval model on PUBLIC data",
                              description="Reads only the data you declare public; spends no privacy. The model "
                                          "learns from noisy means of each public image's k nearest public "
                                          "neighbours, so it accepts DP-RDM's privatised context.")
    sub.add_argument("--public", required=True, help="public data: a path, a saved dataset, or 'rendered-digits'")
    sub.add_argument("--name", required=True, help="name to save the model under (reused by index and generate)")
    sub.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    sub.add_argument("--resolution", type=int, help="resize the public images (e.g. 16 or 28)")
    sub.add_argument("--steps", type=int, help="training steps of the diffusion model")
    sub.add_argument("--encoder-steps", type=int, help="training steps of the encoder")
    sub.add_argument("--batch-size", type=int)
    sub.add_argument("--k", type=int, help="neighbours averaged into the training context (default 10)")
    sub.add_argument("--sigma-max", type=typed.number("--sigma-max", above=0.0),
                     help="largest noise std of the training context (default 0.3): at least the sigma you will "
                          "query with")
    sub.add_argument("--min-records", type=typed.integer("--min-records", minimum=0), default=100)
    sub.add_argument("--seed", type=typed.seed(), default=0)
    sub.add_argument("--allow-public-overlap", action="store_true",
                     help="research only: train on data that shares records with a private dataset of this workspace; "
                          "every run using this model is then reported NOT differentially private")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="end with one JSON object on the last line of stdout")
    sub.set_defaults(handler=_cmd_train_public)


def _cmd_train_public(args: argparse.Namespace) -> int:
    from dpsad_core.commands.progress import show_progress
    from dpsad_core.rdm.store import PublicModelSaved
    from dpsad_core.rdm.training import make_config, train_public

    workspace = workspace_from_args(args)
    config = make_config(public=args.public, name=args.name, preset=args.preset, resolution=args.resolution,
                         steps=args.steps, encoder_steps=args.encoder_steps, batch_size=args.batch_size, k=args.k,
                         sigma_max=args.sigma_max, min_records=args.min_records, seed=args.seed,
                         allow_public_overlap=args.allow_public_overlap)
    saved = None
    for event in show_progress(train_public(config, workspace=workspace)):
        if isinstance(event, PublicModelSaved):
            saved = event
    if saved is None:
        return EXIT_INTERRUPTED
    summary = {"name": saved.name, "path": str(saved.path), "sample_grid": str(saved.grid_path),
               "public_dataset": saved.summary["public_dataset"]["name"], "encoder_digest":
               saved.summary["encoder_digest"], "train_seconds": saved.summary["train_seconds"]}
    if args.json:
        print_json(summary)
    else:
        print(f"public model {saved.name!r} saved in {saved.path} (public data only: no privacy spent)")
        print(f"  sample grid (one row per public class prototype): {saved.grid_path}")
    return 0


# -- index -----------------------------------------------------------------------------------------
def _register_index(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("index", help="embed the private dataset once with a public model's frozen encoder",
                              description="The embeddings are private data: they stay in the workspace and are "
                                          "never exported; only DP-RDM queries, counted by the accountant, read them.")
    sub.add_argument("--model", required=True, help="public model name (from rdm train-public)")
    sub.add_argument("--data", required=True, help="the PRIVATE dataset: a saved dataset, 'demo', or a path")
    sub.add_argument("--name", help="index name (default: DATASET-MODEL)")
    sub.add_argument("--min-records", type=int, default=100)
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_index)


def _cmd_index(args: argparse.Namespace) -> int:
    from dpsad_core.rdm.index import build_index
    from dpsad_core.rdm.store import load_public_model

    workspace = workspace_from_args(args)
    model = load_public_model(args.model, workspace=workspace)
    index = build_index(workspace=workspace, public_model=model, data=args.data, name=args.name,
                        min_records=args.min_records)
    dataset = index.meta["dataset"]
    summary = {"name": index.name, "path": str(index.path), "model": model.name, "dataset": dataset["name"],
               "fingerprint": dataset["fingerprint"], "num_records": dataset["num_records"],
               "num_units": dataset["num_privacy_units"], "unit": dataset["unit"], "classes": list(index.class_names)}
    if args.json:
        print_json(summary)
    else:
        print(f"private index {index.name!r}: {dataset['num_records']} records of {dataset['name']!r} embedded with "
              f"model {model.name!r}'s encoder, in {index.path}")
        print("  these embeddings are private data: they never leave this workspace")
    return 0


# -- generate --------------------------------------------------------------------------------------
def _register_generate(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("generate", help="answer queries on the private index within a budget; sample images",
                              description="Each query Poisson-subsamples the index (rate q), averages the k nearest "
                                          "unit-norm embeddings, adds N(0, sigma^2 I), mixes with the query "
                                          "(lambda) and samples with DDIM and classifier-free guidance. Refused "
                                          "before any query if the budget or the ledger's cap would be exceeded.")
    sub.add_argument("--model", required=True, help="public model name")
    sub.add_argument("--index", required=True, help="private index name (from rdm index)")
    sub.add_argument("--epsilon", type=typed.epsilon(), required=True, help="budget of this run")
    sub.add_argument("--delta", type=typed.delta(), help="target delta (default min(1e-5, 0.1/N))")
    sub.add_argument("--k", type=int, default=10)
    sub.add_argument("--q", dest="sample_rate", type=typed.number("--q", above=0.0, maximum=1.0), default=0.02,
                     help="Poisson subsampling rate per query")
    sub.add_argument("--sigma", type=typed.number("--sigma", above=0.0),
                     help="noise std (default: the smallest that fits the budget)")
    sub.add_argument("--lambda", dest="mix", type=typed.number("--lambda"), default=1.0,
                     help="weight of the private mean vs the query")
    sub.add_argument("--per-class", type=typed.integer("--per-class", minimum=0, maximum=typed.MAX_IMAGES_PER_CLASS),
                     default=0, help="class queries per class")
    sub.add_argument("--classes", help="comma-separated class names (default: all classes of the index)")
    sub.add_argument("--query-mode", default="prototype", choices=["prototype", "exemplar"])
    sub.add_argument("--example", action="append", default=[], metavar="IMAGE",
                     help="a PUBLIC image to query with (repeatable)")
    sub.add_argument("--per-example", type=typed.images_per_class("--per-example"), default=1,
                     help="queries (images) per example image")
    sub.add_argument("--guidance", type=typed.guidance(), default=1.0)
    sub.add_argument("--steps", type=typed.sampler_steps(), default=25, help="DDIM steps")
    add_seed_options(sub, public_use="exemplar queries and image sampling; default: fresh", default=None)
    sub.add_argument("--allow-public-overlap", action="store_true",
                     help="research only: query with --example images that are private records; the run is then "
                          "reported NOT differentially private")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="end with one JSON object on the last line of stdout")
    sub.set_defaults(handler=_cmd_generate)


def _cmd_generate(args: argparse.Namespace) -> int:
    from dpsad_core.commands.progress import show_progress
    from dpsad_core.events import RunFinished, RunInterrupted, RunStarted
    from dpsad_core.rdm.generation import GenerateConfig, generate_rdm

    workspace = workspace_from_args(args)
    classes = tuple(name.strip() for name in args.classes.split(",")) if args.classes else ()
    # sigma None: the run calibrates it after its noisy count (the default delta comes from that count).
    common = {"model": args.model, "index": args.index, "epsilon": args.epsilon, "k": args.k,
              "sample_rate": args.sample_rate, "sigma": args.sigma, "mix": args.mix, "delta": args.delta,
              "per_class": args.per_class, "classes": classes, "query_mode": args.query_mode,
              "examples": tuple(args.example), "per_example": args.per_example, "guidance": args.guidance,
              "sample_steps": args.steps, "seed": args.seed, "privacy_seed": args.privacy_seed,
              "allow_public_overlap": args.allow_public_overlap}
    result = None
    for event in show_progress(generate_rdm(GenerateConfig(**common), workspace=workspace, stop=stop_flag()),
                               interrupted=lambda event: event.message):
        if isinstance(event, RunStarted) and args.sigma is None:
            print(f"sigma {event.plan['sigma']:.4f}: the smallest noise for which {event.plan['queries']} queries "
                  f"fit epsilon {args.epsilon:g}", file=sys.stderr)
        if isinstance(event, RunInterrupted):
            return EXIT_INTERRUPTED
        if isinstance(event, RunFinished):
            result = event.result
    if result is None:  # pragma: no cover - generate_rdm ends with RunFinished or RunInterrupted
        raise RuntimeError("DP-RDM generation ended without a result")
    if args.json:
        print_json(result)
    else:
        from dpsad_core.runs.records import RunResult

        finished = RunResult.from_dict(result, source="the generation's result")
        values = finished.accountant_values
        prv = "-" if values["prv"] is None else f"{values['prv']:.4f}"
        print(f"finished: {finished.images} images, ({finished.epsilon:.4f}, {finished.delta:.3g})-differentially "
              f"private [RDP {values['rdp']:.4f}, PRV {prv}; unit of privacy: {finished.unit_of_privacy}]")
        print(f"  run folder:  {finished.run_dir}")
        print(f"  images:      {finished.samples_npz}")
        print(f"  sample grid: {finished.sample_grid}")
    return 0
