"""The model families astdiffuse runs, one `FamilySpec` each, in one table (`SPECS`).

A spec says how a checkpoint is recognised (config.json's model_type / architectures and the
tokens its tokenizer files publish), which native transformers layout it loads into
(`engine.model.layouts`: no remote code), whether its logit i predicts token i + 1 (shift),
its special tokens (mask, the tokens that end or delete a span, the expand token), the frame
its canvas was trained with, and its authors' sampling settings, per known checkpoint, with
their source. Everything else (detection, loading, the tokenizer's roles, `pull`'s short names,
the README's table) is derived from this table; adding a family is adding a spec and its test.
Sources: each family's public repository, read for these facts (docs/real-models.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from .adapter import UnsupportedModelError
from .configuration import MODEL_TYPE
from .layouts import (LAYOUTS, LLADA_MOE_TYPES, UnsupportedLayoutError, dream_config,
                      llada_config, llada_layout_problems, qwen2_config, qwen3_config)

__all__ = ["AUTHORS_ONLY", "Checkpoint", "checkpoints_table", "families_table", "FAMILIES", "FamilySpec", "NATIVE_FAMILIES",
           "SAMPLING_DEFAULTS", "SPECS", "UnsupportedLayoutError", "checkpoint_by_name",
           "detect_family", "dream_config", "family_spec", "llada_config", "native_spec",
           "qwen2_config", "qwen3_config", "sampling_for"]

# The engine's own additions to the published samplers, switched off: anchored order, parallel
# decoding above a confidence threshold, parse-guided repair (`--as-published`).
AUTHORS_ONLY = {"anchored": False, "threshold": 1.0, "repair_rounds": 0}


@dataclass(frozen=True)
class Checkpoint:
    """A published checkpoint of a family: its hub id, `pull`'s short name, what it needs and
    its authors' sampling settings (`InfillOptions` fields) with where they come from."""

    repo: str
    short: str
    size: str  # parameters
    languages: str
    hardware: str  # where it runs at an editor's pace
    download: str  # bf16 / fp32 safetensors as published
    sampling: dict = field(default_factory=dict)
    source: str = ""
    speed: str = "not measured (no GPU lent yet; docs/real-models.md)"  # one statement's infill


@dataclass(frozen=True)
class FamilySpec:
    """One family. Token fields are token strings, looked up in the checkpoint's tokenizer."""

    name: str
    title: str
    model_types: frozenset = frozenset()  # config.json model_type, lower case
    architectures: frozenset = frozenset()  # any of config.json's architectures
    needs_tokens: tuple = ()  # tokens its tokenizer must have (DreamOn: <|expand|>)
    needs_mask_token: bool = False  # its tokenizer must name a mask token (Open-dCoder)
    layout: str | None = None  # engine.model.layouts name; None: ours or transformers' own
    shift: bool = False  # logit i predicts token i + 1 (initialised from an autoregressive LM)
    mask_token: str | None = None  # fallback when neither config.json nor the tokenizer says
    mask_id: int | None = None  # published id, when nothing on disk names the mask
    mask_ids_by_type: dict = field(default_factory=dict)  # model_type -> its own published id
    end_tokens: tuple = ()  # end (or delete) a span wherever the tokenizer's roles stand
    expand_token: str | None = None  # DreamOn: one mask becomes two
    frame: tuple = (None, None)  # tokenizer roles put before / after the canvas ("bos_token")
    frame_note: str = ""
    sampling: dict = field(default_factory=dict)  # the family's authors' InfillOptions fields
    sampling_source: str = ""
    checkpoints: tuple = ()

    @property
    def native(self) -> bool:
        return self.layout is not None


_DREAM_TYPES = frozenset({"dream"})
_DREAM_ARCHS = frozenset({"DreamModel"})
_QWEN_ENDS = ("<|endoftext|>",)

SPECS: tuple[FamilySpec, ...] = (
    FamilySpec(
        name="anchored", title="astdiffuse's anchored diffusion model (the shipped default)",
        model_types=frozenset({MODEL_TYPE.lower()}), end_tokens=("<|pad|>", "<|endoftext|>"),
        frame_note="no frame: trained on windows cut from files"),
    FamilySpec(
        name="dreamon", title="DreamOn (Dream-Coder trained for variable-length infill)",
        model_types=_DREAM_TYPES, architectures=_DREAM_ARCHS, needs_tokens=("<|expand|>",),
        layout="qwen2", shift=True, mask_token="<|mask|>", mask_id=151666,
        end_tokens=_QWEN_ENDS, expand_token="<|expand|>", frame=("bos_token", "eos_token"),
        frame_note="[bos] + prefix + masks + suffix + [eos] (DreamOn README, demo/quickstart.py)",
        sampling={"order": "entropy", "temperature": 0.2, "top_p": 0.9, "length_candidates": 1},
        sampling_source="DreamOn README: alg entropy, temperature 0.2, top_p 0.9; one canvas, "
                        "its length found by expanding and deleting",
        checkpoints=(Checkpoint("Dream-org/DreamOn-v0-7B", "dreamon-7b", "7.6B", "Python",
                                "GPU, 24 GB+ (bf16)", "15 GB"),)),
    FamilySpec(
        name="diffucoder", title="DiffuCoder (Apple; Dream layout, pads with <|dlm_pad|>)",
        model_types=_DREAM_TYPES, architectures=_DREAM_ARCHS, needs_tokens=("<|dlm_pad|>",),
        layout="qwen2", shift=True, mask_token="<|mask|>", mask_id=151666,
        end_tokens=("<|endoftext|>", "<|dlm_pad|>"), frame=("bos_token", None),
        frame_note="bos first (Dream's evaluation: add_bos_token)",
        sampling={"order": "entropy", "temperature": 0.2, "top_p": 0.95},
        sampling_source="ml-diffucoder README (base): alg entropy, temperature 0.2, top_p 0.95",
        checkpoints=(
            Checkpoint("apple/DiffuCoder-7B-Instruct", "diffucoder-7b-instruct", "7.6B",
                       "code, mostly Python", "GPU, 24 GB+ (bf16)", "15 GB",
                       {"order": "entropy", "temperature": 0.3, "top_p": 0.95},
                       "ml-diffucoder inference_demo.py: temperature 0.3, top_p 0.95, entropy"),
            Checkpoint("apple/DiffuCoder-7B-cpGRPO", "diffucoder-7b-cpgrpo", "7.6B",
                       "code, mostly Python", "GPU, 24 GB+ (bf16)", "15 GB",
                       {"order": "entropy", "temperature": 0.4, "top_p": 0.95},
                       "ml-diffucoder README (cpGRPO): temperature 0.4, top_p 0.95, entropy"),
            Checkpoint("apple/DiffuCoder-7B-Base", "diffucoder-7b-base", "7.6B",
                       "code, mostly Python", "GPU, 24 GB+ (bf16)", "15 GB"),
        )),
    FamilySpec(
        name="dream", title="Dream / Dream-Coder (HKU; Qwen2.5 made bidirectional)",
        model_types=_DREAM_TYPES, architectures=_DREAM_ARCHS, layout="qwen2", shift=True,
        mask_token="<|mask|>", mask_id=151666, end_tokens=_QWEN_ENDS, frame=("bos_token", None),
        frame_note="bos first (Dream's evaluation adds it: 'bos always unmask')",
        sampling={"order": "entropy", "temperature": 0.2, "top_p": 0.95},
        sampling_source="Dream README: alg entropy, temperature 0.2, top_p 0.95",
        checkpoints=(
            Checkpoint("Dream-org/Dream-Coder-v0-Instruct-7B", "dream-coder-7b-instruct",
                       "7.6B", "code (Python, JS, C++, Java, ...)", "GPU, 24 GB+ (bf16)",
                       "15 GB", {"order": "entropy", "temperature": 0.1, "top_p": 0.95},
                       "Dream-Coder README: temperature 0.1, top_p 0.95, alg entropy"),
            Checkpoint("Dream-org/Dream-Coder-v0-Base-7B", "dream-coder-7b-base", "7.6B",
                       "code (Python, JS, C++, Java, ...)", "GPU, 24 GB+ (bf16)", "15 GB",
                       {"order": "entropy", "temperature": 0.1, "top_p": 0.95},
                       "Dream-Coder README: temperature 0.1, top_p 0.95, alg entropy"),
            Checkpoint("Dream-org/Dream-v0-Instruct-7B", "dream-7b-instruct", "7.6B",
                       "text and code", "GPU, 24 GB+ (bf16)", "15 GB",
                       {"order": "entropy", "temperature": 0.1, "top_p": 0.9},
                       "Dream eval_instruct/eval.sh: temperature 0.1, top_p 0.9, entropy"),
            Checkpoint("Dream-org/Dream-v0-Base-7B", "dream-7b-base", "7.6B", "text and code",
                       "GPU, 24 GB+ (bf16)", "15 GB"),
        )),
    FamilySpec(
        name="coda", title="CoDA (Salesforce; Qwen3 with q/k norms made bidirectional)",
        model_types=frozenset({"coda"}), architectures=frozenset({"CoDALanguageModel"}),
        layout="qwen3", shift=True, mask_token="<|mask|>", mask_id=151669,
        end_tokens=("<|endoftext|>", "<|im_end|>"),
        frame_note="no frame (its tokenizer adds no bos; prompts start with the text)",
        sampling={"order": "entropy", "temperature": 0.1, "top_p": 0.9},
        sampling_source="CoDA evaluation/lm_eval/eval_mbpp_humaneval.sh: alg entropy, "
                        "temperature 0.1, top_p 0.9",
        checkpoints=(
            Checkpoint("Salesforce/CoDA-v0-Instruct", "coda-1.7b-instruct", "1.7B",
                       "code, mostly Python", "GPU, or a fast CPU (bf16)", "7 GB (fp32)"),
            Checkpoint("Salesforce/CoDA-v0-Base", "coda-1.7b-base", "1.7B",
                       "code, mostly Python", "GPU, or a fast CPU (bf16)", "7 GB (fp32)"),
        )),
    FamilySpec(
        name="llada", title="LLaDA 8B / LLaDA 1.5 / iLLaDA (GSAI-ML; Llama blocks)",
        model_types=frozenset({"llada", "illada"}),
        architectures=frozenset({"LLaDAModelLM", "ILLaDAForCausalLM"}), layout="llada",
        mask_token="<|mdm_mask|>", mask_id=126336, mask_ids_by_type={"illada": 5},
        end_tokens=("<|endoftext|>", "<|eot_id|>"), frame=("bos_token", None),
        frame_note="<|startoftext|> first (its chat template and SFT data start with bos)",
        sampling={"order": "confidence", "temperature": 0.0},
        sampling_source="LLaDA generate.py: low_confidence remasking, temperature 0",
        checkpoints=(
            Checkpoint("GSAI-ML/LLaDA-8B-Instruct", "llada-8b-instruct", "8B", "text and code",
                       "GPU, 24 GB+ (bf16)", "16 GB"),
            Checkpoint("GSAI-ML/LLaDA-8B-Base", "llada-8b-base", "8B", "text and code",
                       "GPU, 24 GB+ (bf16)", "16 GB"),
            Checkpoint("GSAI-ML/LLaDA-1.5", "llada-1.5", "8B", "text and code",
                       "GPU, 24 GB+ (bf16)", "16 GB"),
        )),
    FamilySpec(
        name="open-dcoder", title="Open-dCoder (Open-dLLM; Qwen2.5-Coder made bidirectional)",
        model_types=frozenset({"qwen2"}), architectures=frozenset({"Qwen2ForCausalLM"}),
        needs_mask_token=True, layout="qwen2", shift=True, end_tokens=_QWEN_ENDS,
        frame_note="no frame: prefix + masks + suffix (Open-dLLM eval/eval_infill)",
        sampling={"order": "confidence", "temperature": 0.6, "top_p": 0.95},
        sampling_source="Open-dLLM eval/eval_infill/run_eval.sh: temperature 0.6, top_p 0.95 "
                        "(its p2 sampler ranks by the drawn token's probability)",
        checkpoints=(Checkpoint("fredzzp/open-dcoder-0.5B", "open-dcoder-0.5b", "0.5B",
                                "Python", "a laptop CPU", "1-2 GB",
                                speed="34 s on 2 AVX-512-BF16 cores (`--as-published`), 101 s "
                                      "with repair; random weights of its shape"),)),
    FamilySpec(
        name="masked-lm", title="any masked LM transformers knows (ModernBERT, ...)",
        frame=("cls_token", "sep_token"), frame_note="[CLS] ... [SEP], as BERT-style models "
                                                      "are trained"),
)
FAMILY_SPECS = {spec.name: spec for spec in SPECS}
FAMILIES = tuple(FAMILY_SPECS)
NATIVE_FAMILIES = tuple(spec.name for spec in SPECS if spec.native)
SAMPLING_DEFAULTS = {spec.name: dict(spec.sampling) for spec in SPECS if spec.sampling}
# Masks of families that only run their own code, used when config.json names none.
REMOTE_MASK_IDS = {"llada2_moe": 156895, "lladamoe": 156895}


def family_spec(name: str) -> FamilySpec:
    try:
        return FAMILY_SPECS[name]
    except KeyError:
        raise UnsupportedModelError(f"unknown model family {name!r}; expected one of "
                                    f"{', '.join(FAMILIES)}") from None


def _expected() -> str:
    return "; ".join(
        f"{spec.name} ({spec.title}: model_type "
        f"{' / '.join(sorted(spec.model_types)) or 'any masked LM'}"
        f"{', tokenizer with ' + ', '.join(spec.needs_tokens) if spec.needs_tokens else ''}"
        f"{', tokenizer with a mask token' if spec.needs_mask_token else ''})"
        for spec in SPECS)


def detect_family(config: dict, family: str | None = None, tokens: frozenset = frozenset(),
                  has_mask_token: bool = False) -> str:
    """The family of a raw config.json dict and the tokens its tokenizer files publish
    (`tokens`; `has_mask_token`: the tokenizer names a mask). An explicit `family` skips
    detection. Raises `UnsupportedLayoutError` for a recognised family in a layout that cannot
    load natively (LLaDA-MoE, LLaDA 2.x) and `UnsupportedModelError` for anything else, naming
    what was found and what is expected."""
    if family is not None:
        return family_spec(family).name
    model_type = str(config.get("model_type") or "")
    kind = model_type.lower()
    architectures = [str(a) for a in config.get("architectures") or []]
    if kind in LLADA_MOE_TYPES or any("moe" in a.lower() and "llada" in a.lower()
                                 for a in architectures) or (
            kind == "llada" and llada_layout_problems(config)):
        problems = llada_layout_problems(config) or ["a mixture-of-experts layout"]
        raise UnsupportedLayoutError(
            f"this LLaDA-style model (model_type {model_type!r}, architectures {architectures}) "
            f"cannot load natively: {'; '.join(problems)}. Supported natively: dense LLaDA 8B / "
            "1.5 / iLLaDA. It can run its own code: pass trust_remote_code=True "
            "(--trust-remote-code, astdiffuse.trustRemoteCode) if you trust it")
    for spec in SPECS:
        if spec.name == "masked-lm":
            continue
        named = kind in spec.model_types or any(a in spec.architectures for a in architectures)
        if not named:
            continue
        if any(token not in tokens for token in spec.needs_tokens):
            continue
        if spec.needs_mask_token and not has_mask_token:
            continue
        return spec.name
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked-lm"
    hint = ""
    if kind == "qwen2":
        hint = (" A qwen2 checkpoint is read as Open-dCoder only when its tokenizer has a mask "
                "token; this one has none, so it is a plain autoregressive LM.")
    raise UnsupportedModelError(
        f"cannot tell which kind of model this is (model_type {model_type or None!r}, "
        f"architectures {architectures or None}, tokenizer tokens checked: "
        f"{', '.join(sorted(t for s in SPECS for t in s.needs_tokens))}).{hint} Expected one "
        f"of: {_expected()}. Pass family=... (--family) to choose one; a model with its own "
        "code (auto_map) loads with trust_remote_code=True")


def native_spec(family: str, config: dict):
    """(model class, native config, checkpoint name -> native name) of a native family."""
    spec = family_spec(family)
    if spec.layout is None:
        raise UnsupportedModelError(f"family {family!r} has no native loader; native families: "
                                    f"{', '.join(NATIVE_FAMILIES)}")
    layout = LAYOUTS[spec.layout]
    return layout.model_class, layout.native_config(config), layout.rename


def checkpoint_by_name(name: str | Path) -> tuple[FamilySpec, Checkpoint] | None:
    """The known checkpoint `name` is: a short name, a hub id, a directory named after the
    checkpoint, or its snapshot in the hub cache (models--Org--Name/snapshots/...)."""
    text = str(name).rstrip("/")
    parts = Path(text).parts
    candidates = {text.lower()}
    if parts:
        candidates.add(parts[-1].lower())
    for part in parts:
        if part.startswith("models--"):
            candidates.add(part[len("models--"):].replace("--", "/").lower())
    for spec in SPECS:
        for checkpoint in spec.checkpoints:
            keys = {checkpoint.short.lower(), checkpoint.repo.lower(),
                    checkpoint.repo.split("/")[-1].lower()}
            if keys & candidates:
                return spec, checkpoint
    return None


def sampling_for(family: str, name: str | Path | None = None) -> tuple[dict, str]:
    """The authors' sampling settings for `family` (and the checkpoint `name`, when it is a
    known one) with their source."""
    spec = family_spec(family)
    known = checkpoint_by_name(name) if name is not None else None
    if known is not None and known[0].name == family and known[1].sampling:
        return dict(known[1].sampling), known[1].source
    return dict(spec.sampling), spec.sampling_source


def checkpoints_table() -> str:
    """The README's table of the published checkpoints `pull` knows (markdown)."""
    lines = ["| short name | hub id | family | size | languages | runs on | download | "
             "one statement |", "|---|---|---|---|---|---|---|---|"]
    for spec in SPECS:
        for c in spec.checkpoints:
            lines.append(f"| `{c.short}` | {c.repo} | {spec.name} | {c.size} | {c.languages} | "
                         f"{c.hardware} | {c.download} | {c.speed} |")
    return "\n".join(lines)


def families_table() -> str:
    """docs/real-models.md's table of the families (markdown), from `SPECS`."""
    def code(values) -> str:
        return ", ".join(f"`{v}`" for v in values if v) or "-"

    lines = ["| family | recognised by | loads as | shift | mask | end tokens | expand | frame | "
             "authors' sampling (source) |", "|---|---|---|---|---|---|---|---|---|"]
    for spec in SPECS:
        named = code(sorted(spec.model_types) + sorted(spec.architectures)) \
            if spec.model_types or spec.architectures else "a masked LM transformers knows"
        extra = [f"tokenizer has {code(spec.needs_tokens)}"] if spec.needs_tokens else []
        if spec.needs_mask_token:
            extra.append("tokenizer names a mask token")
        layout = LAYOUTS[spec.layout].model_class.__name__ if spec.layout else \
            ("AnchoredDiffusionModel" if spec.name == "anchored" else "AutoModelForMaskedLM")
        mask = f"`{spec.mask_token}` ({spec.mask_id})" if spec.mask_token and spec.mask_id \
            else "the tokenizer's"
        sampling = ", ".join(f"{k} {v}" for k, v in spec.sampling.items()) or "the engine's"
        cells = ["`" + spec.name + "`", "; ".join([named, *extra]), layout,
                 "yes" if spec.shift else "no", mask, code(spec.end_tokens),
                 code([spec.expand_token]), spec.frame_note,
                 sampling + (f" ({spec.sampling_source})" if spec.sampling_source else "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
