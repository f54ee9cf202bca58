"""``memsim predict {cv,train,apply}``: predictors on the real data.

Only argparse and the stdlib at import time: torch, pandas and the pipeline are
imported inside the handlers, so ``memsim predict --help`` never loads torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memsim.cli import args as types
from memsim.cli.progress import progress_display


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="train and evaluate memorability predictors on real data",
        description="Predictors on the released VideoMem / Memento10k labels.",
    )
    psub = p.add_subparsers(dest="predict_command", metavar="ACTION", parser_class=type(p))
    psub.required = True

    def common(q, data=True):
        if data:
            types.data_option(
                q,
                "real-data folder (default: $MEMSIM_DATA, else ../shared/data)",
            )
        q.add_argument(
            "--device",
            default="auto",
            help="torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:1",
        )
        q.add_argument(
            "--no-embedding",
            action="store_true",
            help="do not use the pretrained sentence embedding even when installed",
        )
        q.add_argument("--quiet", action="store_true", help="no progress bar")

    q = psub.add_parser(
        "cv",
        help="K-fold cross-validation on the released labels",
        description="K-fold cross-validation of the ridge baselines and the networks on the "
        "released labels, set beside the published predictors, human consistency and the "
        "noise ceilings; with --out, the tables and cv.png.",
    )
    common(q)
    q.add_argument(
        "--dataset",
        choices=["videomem", "memento10k"],
        default="videomem",
        help="released labels to use (default videomem)",
    )
    q.add_argument(
        "--folds", type=types.positive_int, default=5, help="cross-validation folds (default 5)"
    )
    q.add_argument(
        "--members",
        type=types.positive_int,
        default=5,
        help="fold-ensemble members per network (default 5, at least 2)",
    )
    q.add_argument(
        "--seed", type=types.seed, default=0, help="seed of folds and training (default 0)"
    )
    q.add_argument(
        "--models",
        default="mlp,text",
        help="networks to evaluate beside the ridge baselines (mlp,text)",
    )
    q.add_argument(
        "--epochs", type=types.positive_int, default=None, help="max epochs per member (default 25)"
    )
    q.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="simulator videos.parquet (true_short_term, true_long_term) for the ceiling",
    )
    q.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for cv_folds.csv, cv_summary.csv, ceiling.csv and cv.png",
    )
    q.set_defaults(func=_cmd_cv)

    q = psub.add_parser(
        "train",
        help="train the predictor on all released labels",
        description="Train the predictor (an ensemble of networks on the released features) "
        "on every released label and save it for `memsim predict apply`.",
    )
    common(q)
    q.add_argument(
        "--dataset",
        choices=["videomem", "memento10k"],
        default="videomem",
        help="released labels to train on (default videomem)",
    )
    q.add_argument("--out", type=Path, required=True, help="model file to write")
    q.add_argument(
        "--members",
        type=types.positive_int,
        default=5,
        help="ensemble members (default 5, at least 2)",
    )
    q.add_argument("--seed", type=types.seed, default=0, help="seed of training (default 0)")
    q.add_argument(
        "--epochs", type=types.positive_int, default=None, help="max epochs per member (default 25)"
    )
    q.set_defaults(func=_cmd_train)

    q = psub.add_parser(
        "apply",
        help="predict scores for a list of videos",
        description="Predict short- and long-term memorability for the listed videos with a "
        "model from `memsim predict train`, from their released features.",
    )
    common(q)
    q.add_argument("--model", type=Path, required=True, help="model file from `predict train`")
    q.add_argument(
        "--videos",
        type=Path,
        required=True,
        help="text file: one video name per line (e.g. video10.webm)",
    )
    q.add_argument("--out", type=Path, required=True, help="CSV to write")
    q.set_defaults(func=_cmd_apply)


def _cfg(args):
    from memsim.predict.models import NetConfig

    return NetConfig(max_epochs=args.epochs) if args.epochs else NetConfig()


def _check_positive(name, value, lo=1):
    from memsim.errors import UserError

    if value < lo:
        raise UserError(f"--{name} must be at least {lo}, got {value}")


def _cmd_cv(args: argparse.Namespace) -> int:
    from memsim.data import data_dir
    from memsim.errors import UserError
    from memsim.predict import report
    from memsim.predict.corpus import load_corpus
    from memsim.predict.pipeline import cross_validate, summarise

    _check_positive("members", args.members, 2)
    if args.epochs is not None:
        _check_positive("epochs", args.epochs)
    archs = tuple(a for a in args.models.split(",") if a)
    bad = [a for a in archs if a not in ("mlp", "text")]
    if bad:
        raise UserError(f"--models: unknown model {bad[0]!r} (choose from mlp, text)")
    root = data_dir(args.data)
    corpus = load_corpus(args.dataset, root)
    truth = None
    if args.truth is not None:
        from memsim.predict.ceiling import read_truth

        truth = read_truth(args.truth)
    with progress_display(not args.quiet) as show:
        cv = cross_validate(
            corpus,
            folds=args.folds,
            seed=args.seed,
            members=args.members,
            archs=archs,
            device=args.device,
            use_embedding=False if args.no_embedding else None,
            cfg=_cfg(args),
            progress=show,
        )
    summ = summarise(cv)
    ceil = report.ceilings(corpus, truth=truth, truth_source=args.truth, seed=args.seed)
    text = report.table(corpus, summ, ceil, folds=args.folds, seed=args.seed)
    print(text)
    if args.out is not None:
        report.write_outputs(args.out, cv, summ, ceil, corpus)
        print(f"wrote {args.out}/cv_folds.csv, cv_summary.csv, ceiling.csv, cv.png")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import time

    from memsim.data import data_dir
    from memsim.predict.corpus import load_corpus
    from memsim.predict.pipeline import save_model, train

    _check_positive("members", args.members, 2)
    root = data_dir(args.data)
    corpus = load_corpus(args.dataset, root)
    t0 = time.perf_counter()
    with progress_display(not args.quiet) as show:
        model = train(
            corpus,
            seed=args.seed,
            members=args.members,
            device=args.device,
            use_embedding=False if args.no_embedding else None,
            cfg=_cfg(args),
            progress=show,
        )
    save_model(model, args.out)
    print(
        f"trained on {model['n_train']} {corpus.dataset} videos in "
        f"{time.perf_counter() - t0:.1f} s (members stopped at epochs {model['epochs']}; "
        f"embedding: {model['embedding'] or 'none'}); wrote {args.out}"
    )
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from memsim.data import data_dir
    from memsim.errors import UserError
    from memsim.io import atomic_path, read_text
    from memsim.predict.corpus import load_corpus
    from memsim.predict.pipeline import apply, load_model

    model = load_model(args.model)
    names = [ln.strip() for ln in read_text(args.videos, "video list").splitlines() if ln.strip()]
    if not names:
        raise UserError("no video names (one per line expected)", path=args.videos)
    corpus = load_corpus(model["dataset"], data_dir(args.data))
    pred = apply(model, corpus, names, device=args.device, source=str(args.videos))
    with atomic_path(args.out) as tmp:
        pred.to_csv(tmp, index=False)
    print(f"predicted {len(pred)} {model['dataset']} videos; wrote {args.out}", file=sys.stderr)
    return 0
