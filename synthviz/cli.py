"""The `synthviz` command line: presets, stats, export, push and sae-eval.

Every `SynthvizError` (bad settings, bad files, an unreachable Hub) prints one line on stderr and
exits with status 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from synthviz.errors import SynthvizError


def _progress_bar(desc: str):
    """A tqdm-backed progress callback(done, total) for long work, shown on stderr."""
    from tqdm.auto import tqdm

    state: dict = {}

    def cb(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            state.pop("bar", None)

    return cb


def add_variation_args(p: argparse.ArgumentParser, seed_flag: str = "--seed") -> None:
    """One flag per setting of each registered variation family (`synthviz.variations.FAMILIES`),
    which interprets them. `seed_flag` names the model-seed flag (sae-eval keeps `--seed` for
    sampling, as `--model-seed`)."""
    from synthviz.variations import FAMILIES

    g = p.add_argument_group("variation (applied on top of SOURCE)")
    renamed = {"seed": seed_flag}
    for fam in FAMILIES:
        for s in fam.settings:
            flag = renamed.get(s.name, s.cli_flag)
            if s.switch:
                g.add_argument(flag, dest=s.cli_dest, action="store_true", help=s.help)
            else:
                g.add_argument(flag, dest=s.cli_dest, type=s.parse, default=s.default,
                               help=s.help)


def variation_from_args(args: argparse.Namespace):
    """The Variation the CLI flags ask for, or None when no variation flag is given."""
    from synthviz.variations import FAMILIES, Variation

    kw = {}
    for fam in FAMILIES:
        for s in fam.settings:
            value = getattr(args, s.cli_dest, None)
            if s.switch:
                value = False if value else None
            if value is not None:
                kw[s.name] = value
    v = Variation(**kw)
    return None if v.is_identity() else v


def load_with_variation(args: argparse.Namespace):
    from synthviz.sources import load

    progress = _progress_bar("building")
    model = load(args.source, device=args.device, progress=progress)
    variation = variation_from_args(args)
    if variation is None or variation.is_identity():
        return warn_provenance(model)
    return warn_provenance(variation.apply(model, progress=progress))


def warn_provenance(model):
    """Show on stderr what building changed silently: clamped probabilities, rescaled rows."""
    prov = model.provenance
    clamped = prov.clamped  # rel_p re-clamps after scaling, so its count supersedes the build's
    if clamped:
        print(f"synthviz: warning: {clamped} firing probabilities would exceed 1 after hierarchy "
              "compensation and were clamped to 1", file=sys.stderr)
    rescaled = prov.correlation_rows_rescaled or 0
    if rescaled:
        print(f"synthviz: warning: {rescaled} correlation rows were rescaled so that every "
              "c_i >= 0.01; lower the correlation rank or scale to avoid it", file=sys.stderr)
    return model


def cmd_presets(args: argparse.Namespace) -> int:
    from synthviz.presets import PRESETS

    for name, preset in PRESETS.items():
        if args.verbose:
            print(f"{name}\t{preset.family}\t{preset.description}\t{preset.assumptions}")
        else:
            print(name)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from synthviz.stats.summary import summarize

    if args.samples < 1:
        raise SynthvizError(f"--samples must be a positive integer, got {args.samples}")
    model = load_with_variation(args)
    result = summarize(model, n_samples=args.samples, first_k=args.first_k, seed=args.sample_seed,
                       progress=_progress_bar("sampling"))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from synthviz.export import export_model

    model = load_with_variation(args)
    out = export_model(model, args.out, force=args.force, samples=args.samples,
                       progress=_progress_bar("measuring"), allow_inexact=args.allow_inexact)
    print(out)
    return 0


def cmd_sae_eval(args: argparse.Namespace) -> int:
    from synthviz.sae.cli_text import format_result
    from synthviz.sae.evaluate import evaluate_sae
    from synthviz.sae.loading import load_sae

    if args.samples < 1:
        raise SynthvizError(f"--samples must be a positive integer, got {args.samples}")
    model = load_with_variation(args)
    sae = load_sae(args.sae, device=model.device, d_in=model.hidden_dim)
    result = evaluate_sae(model, sae, args.samples, seed=args.sample_seed,
                          progress=_progress_bar("evaluating"))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from synthviz.export import push_folder

    url = push_folder(args.folder, repo_id=args.repo_id, path_in_repo=args.path,
                      private=args.private)
    print(url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synthviz", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose-log", action="store_true", help="show library log messages")
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("presets", help="list preset names (plain names as published, on v1; "
                        "v2/NAME: the same variation on the v2 base)")
    sp.add_argument("--verbose", action="store_true",
                    help="show family, description and assumptions")
    sp.set_defaults(func=cmd_presets)

    for name, func, helptext in (("stats", cmd_stats, "print headline statistics"),
                                 ("export", cmd_export, "write a model in Hub format")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("source", help="preset name, model folder, or Hub id owner/name[:subfolder]")
        sp.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        add_variation_args(sp)
        if name == "stats":
            sp.add_argument("--samples", type=int, default=100_000)
            sp.add_argument("--sample-seed", type=int, default=0)
            sp.add_argument("--json", action="store_true")
        else:
            sp.add_argument("--out", required=True, help="output folder (must be empty)")
            sp.add_argument("--force", action="store_true", help="replace a non-empty folder")
            sp.add_argument("--samples", type=int, default=20_000,
                            help="samples used to measure the model card's statistics")
            sp.add_argument("--allow-inexact", action="store_true",
                            help="write a model whose config sae_lens would not regenerate "
                                 "exactly (the model card says so at the top)")
        sp.set_defaults(func=func)

    sp = sub.add_parser("sae-eval", help="evaluate an SAE against a model's ground truth")
    sp.add_argument("source", metavar="MODEL",
                    help="preset name, model folder, or Hub id owner/name[:subfolder]")
    sp.add_argument("sae", metavar="SAE", help="SAE folder (cfg.json, sae_weights.safetensors) "
                    "or Hub id owner/name[:subfolder]")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    add_variation_args(sp, seed_flag="--model-seed")
    sp.add_argument("--samples", type=int, default=100_000)
    sp.add_argument("--seed", dest="sample_seed", type=int, default=0, help="sampling seed")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_sae_eval)

    sp = sub.add_parser("push", help="upload an exported folder to the Hugging Face Hub")
    sp.add_argument("folder")
    sp.add_argument("--repo-id", required=True)
    sp.add_argument("--path", default=None, help="subfolder in the repo")
    sp.add_argument("--private", action="store_true")
    sp.set_defaults(func=cmd_push)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose_log else logging.ERROR,
                        format="%(levelname)s: %(message)s")
    # huggingface_hub logs each network retry; the one-line error below says what failed
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except SynthvizError as exc:
        print(f"synthviz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("synthviz: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("synthviz: error: out of memory; use fewer samples or a smaller model",
              file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permission denied, a folder vanishing mid-export
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"synthviz: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
