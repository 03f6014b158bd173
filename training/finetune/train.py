"""The training loop of `python -m training.finetune`: set up data, model, optimizer and
(under torchrun) the process group; step, evaluate, log, checkpoint, resume, save the result."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from engine.infill.engine import cpu_has_native_bf16, resolve_device

from ..tokenizer import tokenizer_fingerprint
from .args import OPTIM_MUST_MATCH, RESUME_MUST_MATCH, FinetuneArgs
from .checkpoint import (CheckpointError, latest_checkpoint, load_weights,
                         read_optimizer_state, save_checkpoint, weights_digest)
from .collate import Collator
from .data import BatchOrder, RunData, prepare_data
from .distributed import (DistInfo, barrier, clip_gradients, full_optimizer_state,
                          full_state_dict, gradient_sync, init_distributed,
                          load_full_optimizer_state, local_tensors, mean_across, shutdown,
                          sum_across, unwrap, wrap_model)
from .metrics import MetricsLog, Progress, Throughput
from .models import (TrainableModel, build_trainable, loss_of, model_tokenizer_dir, save_final,
                     trainable_state)
from .plot import plot_losses

EVAL_RATES = (0.1, 0.3, 0.5, 0.7, 0.9)  # random masking of the held-out windows, cycled
EVAL_INFILL_RATE = 0.15  # one editor-sized hole per held-out window


def learning_rate(step: int, args) -> float:
    """Linear warm-up to the peak, then cosine decay to min_lr_ratio of it at the last step."""
    o = args.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, o.steps - o.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * cosine)


def _autocast(dtype: str, device: torch.device):
    """bf16 autocast where the hardware computes bf16 natively (auto), or when asked."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    native = (torch.cuda.is_bf16_supported() if device.type == "cuda"
              else cpu_has_native_bf16())
    if dtype == "auto" and not native:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _check_resumable(out: Path, args: FinetuneArgs) -> None:
    saved_path = out / "args.json"
    if not saved_path.is_file():
        raise CheckpointError(f"{out} has no args.json: it is not a run directory to resume")
    saved = json.loads(saved_path.read_text())
    current = args.to_dict()
    differ = [f"{group}.{key}" for group in RESUME_MUST_MATCH
              for key in set(saved.get(group, {})) | set(current[group])
              if saved.get(group, {}).get(key) != current[group].get(key)]
    differ += [f"optim.{key}" for key in OPTIM_MUST_MATCH
               if saved.get("optim", {}).get(key) != current["optim"][key]]
    if differ:
        raise CheckpointError(
            f"--resume with settings other than the run in {out} was started with "
            f"({', '.join(sorted(differ))}); resume with the same settings (they are in "
            f"{saved_path}), or start a new run in another --out")


def _optimizer(model: torch.nn.Module, args: FinetuneArgs) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.optim.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.optim.lr, betas=(0.9, 0.98), eps=1e-8)


class Evaluator:
    """Held-out loss on fixed masked validation windows (the same masks at every evaluation and
    in every run, whatever the training masking): mean cross-entropy per masked token under
    random masking at EVAL_RATES, and under one infill hole per window."""

    def __init__(self, data: RunData, collator: Collator, windows: int, seed: int):
        chosen = data.validation[:max(1, windows)]
        self.batches = []
        for kind in ("random", "infill"):
            rng = np.random.default_rng([seed, 7, 0 if kind == "random" else 1])
            for start in range(0, len(chosen), 16):
                part = chosen[start:start + 16]
                rates = np.asarray([EVAL_RATES[(start + i) % len(EVAL_RATES)]
                                    if kind == "random" else EVAL_INFILL_RATE
                                    for i in range(len(part))], dtype=np.float64)
                self.batches.append((kind, collator.collate(
                    part, rates * collator.masking.max_rate, rng, names=(kind,),
                    probs=np.ones(1))))

    @torch.no_grad()
    def __call__(self, model, device, autocast) -> dict:
        was_training = model.training
        model.eval()
        totals: dict[str, list[float]] = {}
        for kind, batch in self.batches:
            batch = batch.to(device)
            with autocast:
                _, nelbo, _ = loss_of(model, batch, "mean")
            counted = float(batch.masked.sum())
            acc = totals.setdefault(kind, [0.0, 0.0])
            acc[0] += float(nelbo) * counted
            acc[1] += counted
        model.train(was_training)
        return {f"eval_{'loss' if k == 'random' else 'infill_loss'}": v[0] / max(v[1], 1)
                for k, v in totals.items()}


class RankRecord:
    """OUT/ranks/rank-N.jsonl when --record-ranks: each process's example indices per step and,
    at the end, a digest of its weights (a copy under DDP, a shard under FSDP), so a user or a
    test can check that processes read different examples and stay in step."""

    def __init__(self, directory: Path, info: DistInfo, resume_step: int | None,
                 enabled: bool):
        self.info, self.enabled = info, enabled
        if enabled:
            directory.mkdir(parents=True, exist_ok=True)
        self.log = MetricsLog(directory / f"rank-{info.rank}.jsonl", resume_step, enabled)

    def batch(self, step: int, indices: list[int]) -> None:
        self.log.write({"kind": "batch", "step": step, "rank": self.info.rank,
                        "world": self.info.world, "examples": indices})

    def weights(self, step: int, model: torch.nn.Module) -> None:
        if self.enabled:
            self.log.write({"kind": "weights", "step": step, "rank": self.info.rank,
                            "world": self.info.world, "mode": self.info.mode,
                            "sha256": weights_digest(local_tensors(model))})


def _gathered_copy(model: TrainableModel, args: FinetuneArgs, tokenizer_dir: Path,
                   info: DistInfo) -> TrainableModel | None:
    """The model with whole weights to save: itself, or under FSDP (every process gathers, rank
    0 gets the weights) a fresh unsharded copy on rank 0's CPU with them loaded."""
    if info.mode != "fsdp":
        return model
    state = full_state_dict(model, info)
    if not info.is_main:
        return None
    copy = build_trainable(args, tokenizer_dir)
    missing, unexpected = copy.load_state_dict(state, strict=False)
    tied = {name for name, _ in copy.named_parameters(remove_duplicate=False)} - \
        {name for name, _ in copy.named_parameters()}
    if unexpected or set(missing) - tied:
        raise CheckpointError(f"the weights gathered from the FSDP shards do not fit the model "
                              f"(missing {sorted(set(missing) - tied)[:3]}, unexpected "
                              f"{unexpected[:3]}); report this with the model you trained")
    return copy


def run(args: FinetuneArgs) -> dict:
    """Train as `args` say; returns the summary also written to OUT/summary.json."""
    began = time.perf_counter()
    out = Path(args.run.out).expanduser()
    device = resolve_device(args.run.device)
    info = init_distributed(args.run.parallel, device.type)
    try:
        return _run(args, out, device, info, began)
    finally:
        shutdown(info)


def _run(args: FinetuneArgs, out: Path, device: torch.device, info: DistInfo,
         began: float) -> dict:
    if device.type == "cuda" and info.world > 1:
        device = torch.device("cuda", info.local_rank)
    if args.run.threads:
        torch.set_num_threads(args.run.threads)
    checkpoints = out / "checkpoints"
    resume = latest_checkpoint(checkpoints) if args.run.resume else None
    if args.run.resume:
        if resume is None:
            raise CheckpointError(f"nothing to resume: {checkpoints} holds no complete "
                                  "checkpoint; start the run without --resume")
        _check_resumable(out, args)
    elif latest_checkpoint(checkpoints) is not None:
        raise CheckpointError(f"{out} already holds a run; continue it with --resume or choose "
                              "another --out (nothing was overwritten)")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resume is None:
            (out / "args.json").write_text(json.dumps(args.to_dict(), indent=1) + "\n")
    barrier(info)

    show = args.run.progress and info.is_main
    tokenizer_dir = model_tokenizer_dir(args.model)
    data = None
    if info.is_main:
        data = prepare_data(args.data, out, tokenizer_dir, progress=show)
    barrier(info)
    if not info.is_main:
        data = prepare_data(args.data, out, tokenizer_dir, progress=False, build=False)

    tokenizer_sha256 = tokenizer_fingerprint(data.tokenizer_dir)
    model = build_trainable(args, data.tokenizer_dir)
    model.to(device)
    start = 0
    if resume is not None:
        if resume.state.get("tokenizer_sha256") != tokenizer_sha256:
            raise CheckpointError(f"{resume.directory} was trained with another tokenizer than "
                                  f"{data.tokenizer_dir}; resume with the run's own data")
        load_weights(resume, model)  # every process, before FSDP shards the weights
        start = resume.step
    wrapped = wrap_model(model, info, device)
    optimizer = _optimizer(model, args)  # after wrapping: FSDP replaces the parameters
    if resume is not None:
        load_full_optimizer_state(model, optimizer, read_optimizer_state(resume), info)

    from engine.tokens import load_tokenizer

    tokenizer = load_tokenizer(data.tokenizer_dir)
    config = unwrap(model).config
    uses_anchor = bool(getattr(config, "use_anchor", False)) and model.kind == "anchored"
    collator = Collator(args.masking, args.anchor, seq_len=args.data.seq_len,
                        mask_id=tokenizer.mask_token_id, pad_id=tokenizer.pad_token_id,
                        total_steps=args.optim.steps,
                        use_anchor_weights=uses_anchor and args.anchor.anchoring)
    evaluator = Evaluator(data, collator, args.run.eval_windows, args.optim.seed)
    per_process = args.optim.batch_size * args.optim.grad_accum
    order = BatchOrder(len(data.train), per_process, args.optim.seed, info.rank, info.world)
    autocast = _autocast(args.model.dtype, device)
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log = MetricsLog(out / "metrics.jsonl", resume_step=start if resume else None,
                     enabled=info.is_main)
    if info.is_main and resume is None:
        log.write({"kind": "setup", "step": 0, "params": params, "trainable": trained,
                   "train_examples": len(data.train), "validation_examples": len(data.validation),
                   "data": data.description, "device": str(device), "world": info.world,
                   "autocast_bf16": not isinstance(autocast, contextlib.nullcontext)})
    end = min(args.optim.steps, args.optim.stop_at or args.optim.steps)  # --stop-at ends early
    progress = Progress(end, start, show, quiet=not info.is_main)
    ranks = RankRecord(out / "ranks", info, start if resume else None, args.run.record_ranks)
    progress.write(f"{'resuming at step ' + str(start) if resume else 'training'}: "
                   f"{params / 1e6:.2f} M parameters ({trained / 1e6:.2f} M trained), "
                   f"{len(data.train):,} windows from {data.description}, {info.world} "
                   f"process(es) on {device}, out {out}")

    def checkpoint(step: int, summary: dict) -> None:
        nonlocal saved_at
        # Under FSDP every process takes part in gathering the shards; rank 0 writes.
        weights = trainable_state(model, full_state_dict(model, info)
                                  if info.mode == "fsdp" else None)
        optimizer_state = full_optimizer_state(model, optimizer, info)
        if info.is_main:
            save_checkpoint(checkpoints, step, weights, optimizer_state, {
                "args": args.to_dict(), "model_config": config.to_dict(),
                "tokenizer_sha256": tokenizer_sha256, "summary": summary},
                keep=args.run.keep_checkpoints)
        barrier(info)
        saved_at = step

    throughput, last_eval, stopped_early, saved_at = Throughput(), {}, False, start
    loss_value = nelbo_value = anchor_value = float("nan")
    wrapped.train()
    step = start
    for step in range(start, end):
        lr = learning_rate(step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        indices = order.step(step)
        ranks.batch(step + 1, indices)
        totals = [0.0, 0.0, 0.0]
        for micro in range(args.optim.grad_accum):
            part = indices[micro * args.optim.batch_size:(micro + 1) * args.optim.batch_size]
            rng = np.random.default_rng([args.optim.seed, step, info.rank, micro])
            torch.manual_seed(args.optim.seed * 1_000_003 + step * 101 + info.rank * 7 + micro)
            batch = collator([data.train[i] for i in part], step, rng).to(device)
            with gradient_sync(wrapped, info, micro == args.optim.grad_accum - 1):
                with autocast:
                    loss, nelbo, anchor_loss = loss_of(wrapped, batch, collator.loss_weighting)
                (loss / args.optim.grad_accum).backward()
            throughput.add(batch.tokens)
            for k, value in enumerate((loss, nelbo, anchor_loss)):
                totals[k] += float(value.detach()) / args.optim.grad_accum
        if args.optim.grad_clip > 0:
            clip_gradients(model, args.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if not all(math.isfinite(x) for x in totals):
            raise CheckpointError(f"the loss became {totals[0]} at step {done}; lower --lr and "
                                  "resume from the last checkpoint (--resume)")
        loss_value, nelbo_value, anchor_value = totals
        postfix = {}
        if done % args.run.log_every == 0 or done == end:
            tokens_per_s = sum_across(throughput.read(), info, device)
            loss_value, nelbo_value, anchor_value = (mean_across(x, info, device)
                                                     for x in totals)
            record = {"kind": "train", "step": done, "loss": loss_value, "nelbo": nelbo_value,
                      "anchor_loss": anchor_value, "lr": lr, "tokens_per_s": tokens_per_s,
                      "epoch": round(order.epoch_of(done), 4),
                      "elapsed_s": round(time.perf_counter() - began, 1)}
            log.write(record)
            postfix = {"loss": f"{loss_value:.3f}", "tok_s": f"{tokens_per_s:,.0f}"}
        progress.update(**postfix)
        if args.run.eval_every and done % args.run.eval_every == 0 and done != end:
            last_eval = evaluator(wrapped, device, autocast)
            log.write({"kind": "eval", "step": done, **last_eval})
            progress.write(f"step {done}: " + ", ".join(f"{k} {v:.3f}"
                                                         for k, v in last_eval.items()))
        minutes = (time.perf_counter() - began) / 60
        out_of_time = args.run.max_minutes is not None and minutes >= args.run.max_minutes
        if info.world > 1:
            out_of_time = mean_across(float(out_of_time), info, device) > 0
        if done % args.run.checkpoint_every == 0 or out_of_time:
            checkpoint(done, {"loss": loss_value, **last_eval})
        if out_of_time:
            stopped_early = True
            progress.write(f"stopping after {minutes:.1f} min (--max-minutes) at step {done}; "
                           f"continue with --resume")
            break
    else:
        done = max(start, end)
    progress.close()

    summary = {"steps": done, "target_steps": args.optim.steps, "loss": loss_value,
               "nelbo": nelbo_value, "anchor_loss": anchor_value, "params": params,
               "trainable": trained, "stopped_early": stopped_early,
               "seconds": round(time.perf_counter() - began, 1), "out": str(out)}
    if not stopped_early:
        summary.update(evaluator(wrapped, device, autocast))
        log.write({"kind": "eval", "step": done, **{k: summary[k] for k in summary
                                                     if k.startswith("eval_")}})
        if saved_at != done:
            checkpoint(done, summary)
        ranks.weights(done, model)
        final_model = _gathered_copy(model, args, data.tokenizer_dir, info)
        if info.is_main:
            summary["final"] = str(save_final(final_model, data.tokenizer_dir, out / "final"))
    if info.is_main:
        if args.run.plot:
            plotted = plot_losses(out / "metrics.jsonl", out / "loss.png")
            summary["plot"] = str(plotted) if plotted else None
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(json.dumps(summary))
    barrier(info)
    return summary


__all__ = ["learning_rate", "run"]
