"""The arguments of `python -m training.finetune`: documented dataclasses, one per concern, and
named recipes that set many of them at once. The CLI and `--help` are generated from these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

MASKINGS = ("random", "ast-tier", "ast-span", "infill", "mix")
SCHEDULES = ("linear", "treediff")
PARALLEL = ("auto", "none", "ddp", "fsdp")
DTYPES = ("auto", "fp32", "bf16")


def arg(default, help: str, *, choices: tuple[str, ...] | None = None, metavar: str | None = None):
    """A dataclass field whose `help` (and choices) the CLI shows."""
    meta = {"help": help, "choices": choices, "metavar": metavar}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


ARCHITECTURES = ("anchored", "qwen2")
OBJECTIVES = ("diffusion", "ar")


@dataclass
class ModelArgs:
    """Model: what to train."""

    model: str = arg("small", "a preset (tiny, small, base) to train from scratch, or a "
                     "directory / local transformers model to fine-tune", metavar="PRESET|PATH")
    use_anchor: bool = arg(True, "anchored model (anchor network + denoiser) when training from "
                           "scratch; --no-use-anchor trains the plain MDLM baseline")
    model_set: list = arg([], "override a preset's config argument, e.g. hidden_size=128 "
                          "(repeatable; scratch only)", metavar="KEY=VALUE")
    dtype: str = arg("auto", "training precision: auto (bf16 autocast on a CUDA GPU with bf16, "
                     "fp32 otherwise), fp32, bf16", choices=DTYPES)
    trust_remote_code: bool = arg(False, "allow a transformers model's own code (off: only "
                                  "natively supported architectures load)")
    architecture: str = arg("anchored", "network trained from a preset: anchored (ours), or "
                            "qwen2 (transformers' Qwen2 at the preset's size, tied embeddings, "
                            "bidirectional with the one-position logit shift as Open-dCoder; "
                            "the engine loads it as the open-dcoder family)",
                            choices=ARCHITECTURES)
    objective: str = arg("diffusion", "diffusion (masked diffusion) or ar (next-token warm "
                         "start: causal attention, every position's loss; qwen2 only; continue "
                         "with --objective diffusion from its final/)", choices=OBJECTIVES)


@dataclass
class DataArgs:
    """Data: where the training text comes from."""

    data: str | None = arg(None, "a shard cache (python -m training.shards), a corpus manifest "
                           "(python -m training.corpus --out), or any directory of source "
                           "files; default: this Python's standard library", metavar="PATH")
    languages: str = arg("python", "languages of the source files (comma-separated, or all)")
    tokenizer: str | None = arg(None, "tokenizer directory; default: the fine-tuned model's own, "
                                "or one trained on the corpus into OUT/tokenizer", metavar="DIR")
    vocab_size: int = arg(8192, "vocabulary of a tokenizer trained for a run from scratch")
    seq_len: int = arg(256, "tokens per training window")
    max_files: int | None = arg(None, "use only the first N training files (quick runs)",
                                metavar="N")


@dataclass
class MaskingArgs:
    """Masking: how the training inputs are corrupted."""

    masking: str = arg("infill", "random (MDLM), ast-tier / ast-span (TreeDiff), infill (whole "
                       "nodes with pads, as an editor selects them), or mix", choices=MASKINGS)
    mix: str = arg("infill=0.5,ast-tier=0.3,random=0.2", "strategy weights for --masking mix")
    schedule: str = arg("linear", "noise schedule: linear (MDLM, t ~ U(eps, 1), 1/t weighted "
                        "loss) or treediff (cosine-annealed base rate, mean loss)",
                        choices=SCHEDULES)
    schedule_eps: float = arg(1e-3, "smallest rate of the linear schedule")
    max_rate: float = arg(1.0, "cap on each example's masking rate (the infill task lives at "
                          "low rates: 0.3-0.5 spends more of the budget there)")
    max_spans: int | None = arg(None, "infill: holes per example at most (none: as many as "
                                "the budget takes)", metavar="N")
    max_pad: int = arg(8, "infill: pad tokens appended inside a hole, uniform in 0..N")


@dataclass
class AnchorArgs:
    """Anchoring: AnchorTree weights of the anchor loss (anchored models only)."""

    anchoring: bool = arg(True, "add the anchor term (keywords and identifiers, weighted by "
                          "depth) to the loss; --no-anchoring trains the anchor network only "
                          "through the denoiser")
    anchor_gamma: float = arg(1.0, "weight of a shallow anchor")
    anchor_decay: float = arg(0.9, "weight factor per level of depth below --anchor-d0")
    anchor_d0: int = arg(2, "depth down to which anchors keep the full weight")


@dataclass
class OptimArgs:
    """Optimisation: AdamW, warm-up and cosine decay, the seed."""

    steps: int = arg(1000, "optimizer steps in all (a resumed run continues to this)")
    stop_at: int | None = arg(None, "end the run (evaluated, final/ saved) at this step while "
                              "the learning-rate schedule stays planned to --steps: how a run "
                              "--max-minutes stopped and then finished early is reproduced",
                              metavar="STEP")
    batch_size: int = arg(16, "windows per process per micro-batch")
    grad_accum: int = arg(1, "micro-batches per optimizer step")
    lr: float = arg(1e-3, "peak learning rate (AdamW)")
    min_lr_ratio: float = arg(0.1, "final learning rate as a share of the peak (cosine decay)")
    warmup_steps: int = arg(50, "linear warm-up steps")
    weight_decay: float = arg(0.01, "AdamW weight decay")
    grad_clip: float = arg(1.0, "clip the gradient norm to this (0: off)")
    seed: int = arg(0, "seeds the initialisation, the data order and every mask")


@dataclass
class LoraArgs:
    """LoRA (peft): train low-rank adapters instead of all weights."""

    lora: bool = arg(False, "train LoRA adapters (peft) and merge them into the saved model")
    lora_r: int = arg(16, "adapter rank")
    lora_alpha: int = arg(32, "adapter scaling numerator (scale = alpha / r)")
    lora_dropout: float = arg(0.05, "dropout on the adapters' input")
    lora_targets: str = arg("all-linear", "modules to adapt: all-linear or comma-separated names")


@dataclass
class RunArgs:
    """Run: output, checkpoints, logging, devices."""

    out: str = arg("runs/finetune", "run directory: checkpoints, metrics.jsonl, loss.png, final/",
                   metavar="DIR")
    resume: bool = arg(False, "continue the run in --out from its last checkpoint")
    checkpoint_every: int = arg(100, "steps between checkpoints (also written at the end)")
    keep_checkpoints: int = arg(2, "checkpoints kept (older ones are deleted)")
    eval_every: int = arg(100, "steps between held-out evaluations (0: only at the end)")
    eval_windows: int = arg(64, "validation windows in the held-out loss")
    log_every: int = arg(10, "steps between metrics lines")
    max_minutes: float | None = arg(None, "stop (with a checkpoint) after this much wall time; "
                                    "--resume continues", metavar="M")
    device: str = arg("auto", "auto, cpu, cuda or cuda:N (torchrun: each process its LOCAL_RANK)")
    threads: int | None = arg(None, "torch CPU threads (default: torch's choice)", metavar="N")
    parallel: str = arg("auto", "multi-process training under torchrun: ddp, fsdp, or auto (ddp "
                        "when WORLD_SIZE > 1)", choices=PARALLEL)
    record_ranks: bool = arg(False, "each process writes OUT/ranks/rank-N.jsonl: the training "
                             "examples it read at every step and, at the end, a SHA-256 of its "
                             "copy (DDP) or shard (FSDP) of the trained weights")
    progress: bool = arg(True, "progress bar on stderr")
    plot: bool = arg(True, "write loss.png at the end")


GROUPS = (ModelArgs, DataArgs, MaskingArgs, AnchorArgs, OptimArgs, LoraArgs, RunArgs)


@dataclass
class FinetuneArgs:
    """Everything a run needs; saved as OUT/args.json beside the checkpoints."""

    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    masking: MaskingArgs = field(default_factory=MaskingArgs)
    anchor: AnchorArgs = field(default_factory=AnchorArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    run: RunArgs = field(default_factory=RunArgs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FinetuneArgs":
        built = {}
        for f, group_class in zip(fields(cls), GROUPS):
            known = {g.name for g in fields(group_class)}
            built[f.name] = group_class(**{k: v for k, v in data.get(f.name, {}).items()
                                           if k in known})
        return cls(**built)

    @classmethod
    def from_flat(cls, values: dict) -> "FinetuneArgs":
        """From one flat mapping of field name -> value (what the CLI parses)."""
        built = {}
        for f, group_class in zip(fields(cls), GROUPS):
            built[f.name] = group_class(**{g.name: values[g.name] for g in fields(group_class)
                                           if g.name in values})
        return cls(**built)


# Settings that change what a run computes: a resumed run must have the same ones.
RESUME_MUST_MATCH = ("model", "data", "masking", "anchor", "lora")
OPTIM_MUST_MATCH = ("batch_size", "grad_accum", "seed")

RECIPES: dict[str, dict] = {
    # Seconds on a CPU: the tests and a first check that a setup works.
    "smoke": dict(model="tiny", seq_len=64, batch_size=4, steps=20, warmup_steps=2,
                  checkpoint_every=10, eval_every=10, eval_windows=8, log_every=5,
                  vocab_size=1024, max_files=40),
    # The shipped default model on a 2-core CPU (docs/training.md): small preset, the editor's
    # task distribution (whole nodes at low rates).
    "cpu": dict(model="small", seq_len=256, batch_size=16, steps=3000, lr=1e-3,
                warmup_steps=100, masking="mix", max_rate=0.6, checkpoint_every=100,
                eval_every=200),
    # A lent GPU: the base preset, longer windows, bf16.
    "gpu": dict(model="base", seq_len=512, batch_size=64, steps=20000, lr=6e-4,
                warmup_steps=500, masking="mix", checkpoint_every=1000, eval_every=1000,
                dtype="auto"),
}


def group_fields():
    """(group class, field) pairs in CLI order."""
    for group_class in GROUPS:
        for f in fields(group_class):
            yield group_class, f
