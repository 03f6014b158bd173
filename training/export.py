"""Export a trained model as the engine's shipped default (engine/default_model): cast to a
compact dtype, check its size, and record where it came from in training.json.

    python -m training.export RUN/final [--out engine/default_model] [--dtype bf16] [--max-mb 30]
                              [--max-positions N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from engine.errors import AstdiffuseError
from engine.infill.engine import DEFAULT_MODEL_DIR
from engine.model import load_model_and_tokenizer, save_model_and_tokenizer

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SHIPPED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "training.json")
# A network in a transformers layout (training.finetune --architecture qwen2, read by the engine
# as the open-dcoder family) keeps the tokenizer_config.json that names its mask token.
NATIVE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "training.json")


class ExportError(AstdiffuseError):
    """The model cannot be exported as asked; the message says why."""


def export_model(source: Path, out: Path, dtype: str = "bf16", max_mb: float = 30.0,
                 provenance: dict | None = None, max_positions: int | None = None) -> dict:
    """Write the model saved at `source` into `out` (replacing what is there only once the new
    files are complete); returns the record also written to out/training.json."""
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    native = _is_native(source)
    if max_positions is not None and not (native and max_positions >= 16):
        raise ExportError("--max-positions applies to a model in a transformers layout (rotary "
                          "positions) and must be at least 16")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        staged = Path(tmp) / "model"
        if native:
            params = _stage_native(source, staged, DTYPES[dtype], max_positions)
        else:
            model, tokenizer = load_model_and_tokenizer(source, device="cpu",
                                                        dtype=DTYPES[dtype])
            params = sum(p.numel() for p in model.parameters())
            save_model_and_tokenizer(model, tokenizer, staged)
        size_mb = (staged / "model.safetensors").stat().st_size / 2**20
        if size_mb > max_mb:
            raise ExportError(f"the weights take {size_mb:.1f} MB in {dtype}, over --max-mb "
                              f"{max_mb:g}; export a smaller model or a narrower dtype")
        record = {"source": str(source), "dtype": dtype, "parameters": params,
                  "weights_mb": round(size_mb, 2), "max_positions": max_positions,
                  **(provenance or {})}
        stages = lineage(source)
        if stages:
            record.update(summary=stages[-1]["summary"], args=stages[-1]["args"])
            record["stages"] = stages
        (staged / "training.json").write_text(json.dumps(record, indent=1) + "\n")
        for extra in staged.iterdir():
            if extra.name not in (NATIVE_FILES if native else SHIPPED_FILES):
                extra.unlink()
        if native:
            _check_loads(staged)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), str(out))
    return record


def lineage(source: Path) -> list[dict]:
    """The training stages that made the model saved at `source` (a run's final/), first to
    last: each run's directory, args.json and summary.json, followed through `--model` while it
    names another run's final/."""
    stages, seen = [], set()
    final = source.resolve()
    while final not in seen:
        seen.add(final)
        run = final.parent
        files = {name: run / f"{name}.json" for name in ("args", "summary")}
        if not all(path.is_file() for path in files.values()):
            break
        stage = {"run": str(run), **{name: json.loads(path.read_text())
                                      for name, path in files.items()}}
        stages.append(stage)
        parent = Path(str(stage["args"].get("model", {}).get("model", "")))
        if not (parent / "config.json").is_file():
            break
        final = parent.resolve()
    return stages[::-1]


def _is_native(source: Path) -> bool:
    """Whether `source` holds a network in a transformers layout rather than the anchored one."""
    config = source / "config.json"
    if not config.is_file():
        return False  # load_model_and_tokenizer names what is missing
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (ValueError, AttributeError) as err:
        raise ExportError(f"{config} is not a JSON object: {err}") from err
    return model_type != "astdiffuse-anchored"


def _stage_native(source: Path, staged: Path, dtype: torch.dtype,
                  max_positions: int | None = None) -> int:
    """Copy a transformers-layout model into `staged` with its floating weights cast to `dtype`
    (the engine loads it as published; nothing is converted); returns its parameter count.
    `max_positions` becomes config.json's max_position_embeddings: the longest canvas the
    engine builds for it (rotary positions compute nothing else from it)."""
    from safetensors.torch import load_file, save_file

    weights_file = source / "model.safetensors"
    missing = [name for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json")
               if not (source / name).is_file()]
    if missing:
        raise ExportError(f"{source} lacks {', '.join(missing)}; export a run's final/ "
                          "(training.finetune writes them)")
    weights = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
               for k, v in load_file(str(weights_file)).items()}
    staged.mkdir(parents=True)
    save_file(weights, str(staged / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    config["dtype"] = str(dtype).removeprefix("torch.")
    if max_positions is not None:
        config["max_position_embeddings"] = max_positions
    (staged / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(source / name, staged / name)
    return sum(v.numel() for v in weights.values())


def _check_loads(staged: Path) -> None:
    """The engine must load what is about to be shipped (family detected, mask token found)."""
    from engine.model import load_denoiser

    try:
        load_denoiser(staged, device="cpu")
    except AstdiffuseError as err:
        raise ExportError(f"the engine cannot load the exported model: {err}") from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a saved model directory (a run's final/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR,
                        help=f"where to write it (default: {DEFAULT_MODEL_DIR})")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES),
                        help="weights dtype (default bf16: half the size, what a CPU with "
                             "native bf16 and a GPU run anyway)")
    parser.add_argument("--max-mb", type=float, default=30.0,
                        help="refuse weights larger than this (default 30)")
    parser.add_argument("--max-positions", type=int, default=None, metavar="N",
                        help="a transformers-layout model's max_position_embeddings: the "
                             "longest canvas the engine gives it (default: as trained)")
    args = parser.parse_args(argv)
    try:
        record = export_model(args.model, args.out, args.dtype, args.max_mb,
                              max_positions=args.max_positions)
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: record[k] for k in ("source", "dtype", "parameters", "weights_mb")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
