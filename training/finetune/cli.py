"""The typed command line of `python -m training.finetune`, generated from the argument
dataclasses (help, types and choices come from their fields); recipes set defaults."""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING

from engine.errors import AstdiffuseError

from .args import GROUPS, RECIPES, FinetuneArgs, group_fields

EPILOG = """\
recipes (--recipe NAME sets these defaults; explicit flags still win):
""" + "\n".join(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                for name, values in RECIPES.items()) + """

examples:
  python -m training.finetune --recipe smoke --out runs/smoke
  python -m training.finetune --recipe cpu --out runs/default          # the default model
  python -m training.finetune --model runs/default/final --data src/ --steps 500 --out runs/ft
  python -m training.finetune --out runs/default --resume             # after a kill
  torchrun --nproc-per-node 2 -m training.finetune --recipe cpu --out runs/ddp
  torchrun --nproc-per-node 8 -m training.finetune --recipe gpu --parallel fsdp --out runs/fsdp
  python -m training.finetune --model runs/default/final --lora --data src/ --out runs/lora
"""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation):
    """int / float / str / bool / list from a field's annotation (strings under PEP 563)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("list", list)):
        if text.split(" |")[0].strip() == name:
            return kind
    if text.startswith("str"):
        return str
    origin = typing.get_origin(annotation)
    return origin or str


def _optional(annotation) -> bool:
    return "None" in str(annotation)


def _none_or(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.finetune",
        description="Train or fine-tune a masked-diffusion code model with AST-aware masking "
                    "(random, ast-tier, ast-span, infill, mix) and AnchorTree anchoring; "
                    "checkpoints every N steps, --resume after a kill, metrics as JSON lines, "
                    "a loss plot, LoRA, and torchrun (DDP / FSDP).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="a named set of defaults (listed below)")
    parser.add_argument("--print-args", action="store_true",
                        help="print the resolved arguments as JSON and exit")
    groups = {}
    for group_class, f in group_fields():
        if group_class not in groups:
            groups[group_class] = parser.add_argument_group(group_class.__doc__.split(":")[0],
                                                            group_class.__doc__)
        group = groups[group_class]
        kind = _base_type(f.type)
        default = f.default if f.default is not MISSING else f.default_factory()
        meta = f.metadata
        help_text = f"{meta['help']} (default: {default})"
        if kind is bool:
            group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction,
                               default=default, help=help_text)
        elif kind is list:
            group.add_argument(_flag(f.name), action="append", default=None,
                               metavar=meta.get("metavar"), help=help_text)
        else:
            convert = _none_or(kind) if _optional(f.type) else kind
            group.add_argument(_flag(f.name), type=convert, default=default,
                               choices=meta.get("choices"), metavar=meta.get("metavar"),
                               help=help_text)
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[FinetuneArgs, bool]:
    """(arguments, print_only) from the command line, with a recipe's defaults applied first."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.recipe:
        parser.set_defaults(**RECIPES[first.recipe])
    namespace = parser.parse_args(argv)
    values = vars(namespace)
    for _, f in group_fields():
        if values.get(f.name) is None and _base_type(f.type) is list:
            values[f.name] = []
    return FinetuneArgs.from_flat(values), namespace.print_args


def main(argv: list[str] | None = None) -> int:
    import json

    args, print_only = parse_args(argv)
    if print_only:
        print(json.dumps(args.to_dict(), indent=1))
        return 0
    from .train import run

    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is in "
              f"{args.run.out}/checkpoints; continue with --resume", file=sys.stderr)
        return 130
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


__all__ = ["GROUPS", "build_parser", "main", "parse_args"]
