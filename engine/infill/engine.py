"""The infill engine: one loaded model and tokenizer that turns an `InfillRequest` into ranked
candidates (canvas -> sampler -> parse-guided repair -> edits). Local and remote engines share
this interface: `infill(request, progress=..., cancelled=...) -> InfillResult`."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

from ..errors import AstdiffuseError
from ..model.adapter import ModelLoadError, ModelNotFoundError, MaskedLMDenoiser, load_denoiser
from ..syntax import SourceDocument, masked_spans
from .candidates import (DecodedRow, decode_row, judge, rank_key, ranked, repair_positions,
                         span_edits)
from .canvas import build_canvas
from .exact import EXACT_MODE, exact_spans
from .expand import ExpandingSampler, rows_from_state, state_tensors
from .request import Candidate, InfillOptions, InfillRequest, InfillResult, Timings
from .sampler import DiffusionSampler, InfillCancelled, RowGroup, SamplerState
from .vocab import OTHER, InfillTokenizer

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_model"
PARTIAL_MASK = "\u2591"  # how a still-masked token shows in progress text


class DeviceUnavailableError(AstdiffuseError):
    """The requested device does not exist on this machine."""


@dataclass
class ProgressEvent:
    """One denoising step, for a progress bar and a live view of the spans (msgpack-clean)."""

    step: int
    total: int  # estimate: steps done + steps the schedule still plans
    spans: list[str]  # current text of each span in the first canvas row, masks as PARTIAL_MASK
    phase: str = "denoise"  # denoise | repair


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; a named device that is missing is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError as err:
        raise DeviceUnavailableError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device {name!r} was asked for but this machine has no "
                                     "CUDA GPU visible to torch; use --device cpu or auto")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise DeviceUnavailableError(f"device {name!r} does not exist: torch sees "
                                     f"{torch.cuda.device_count()} GPU(s), cuda:0 and up")
    if resolved.type not in ("cpu", "cuda"):
        raise DeviceUnavailableError(f"device {name!r} is not supported; use auto, cpu or cuda")
    return resolved


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that has it (fp16 otherwise); on a CPU bf16 when it computes bf16 natively
    (AVX512-BF16 or AMX: about 1.7x faster than fp32 here, docs/inference.md), else fp32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 dot-product instructions (Linux: /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


class InfillEngine:
    """A model, its tokenizer and a device. Build with `InfillEngine.load(...)`, or from a model
    object and tokenizer already in memory (tests, training's evaluation)."""

    def __init__(self, model, tokenizer, *, device: str | torch.device | None = None,
                 name: str = ""):
        self.device = resolve_device(device) if device is not None else model.device
        if model.device != self.device:  # a model handed over on another device moves
            model = model.to(self.device)
        self.model = model
        self.tokenizer = tokenizer if isinstance(tokenizer, InfillTokenizer) \
            else InfillTokenizer(tokenizer)
        if self.tokenizer.mask_id != model.mask_token_id:
            raise ModelLoadError(
                f"the tokenizer's mask token id is {self.tokenizer.mask_id} but the model's is "
                f"{model.mask_token_id}; load the tokenizer that was saved with the model")
        if self.tokenizer.vocab_size > model.vocab_size:
            raise ModelLoadError(f"the tokenizer has {self.tokenizer.vocab_size} tokens but the "
                                 f"model only {model.vocab_size}")
        self.name = name
        config = getattr(model, "config", None) or getattr(getattr(model, "model", None),
                                                           "config", None)
        self.max_tokens = int(getattr(config, "max_position_embeddings", 0) or 0) or None

    @classmethod
    def load(cls, model: str | Path | None = None, *, device: str = "auto",
             dtype: torch.dtype | None = None, trust_remote_code: bool = False,
             family: str | None = None, device_map: str | dict | None = None
             ) -> "InfillEngine":
        """Load a saved model directory, or a hub id already in the local cache (offline only),
        or the shipped default model when `model` is None: our anchored model, a Dream /
        DiffuCoder / LLaDA checkpoint (native classes, `family` overrides the detection), or a
        transformers masked LM (see `engine.model.load_denoiser`)."""
        target = resolve_device(device)
        dtype = dtype or default_dtype(target)
        if model is None:
            if not (DEFAULT_MODEL_DIR / "config.json").is_file():
                raise ModelNotFoundError(
                    "default", f"no default model is installed at {DEFAULT_MODEL_DIR}; pass a "
                               "model directory (--model PATH) trained with `python -m "
                               "training.finetune`")
            model = DEFAULT_MODEL_DIR
        denoiser = load_denoiser(model, device=target, dtype=dtype,
                                 trust_remote_code=trust_remote_code, family=family,
                                 device_map=device_map)
        # a native model was loaded with its published tokenizer: the same one, not built again
        tokenizer = getattr(denoiser, "tokenizer", None) or _load_tokenizer(_model_dir(model))
        # The model knows its mask id (config.json) when its tokenizer does not name one; a
        # native family's is resolved by its loader (config, tokenizer, the family's token).
        mask = getattr(tokenizer, "mask_token_id", None)
        if mask is None or getattr(denoiser, "spec", None) is not None:
            mask = getattr(denoiser, "mask_token_id", None)
        spec = family_of(denoiser)
        config = getattr(denoiser, "config", None)
        fallback = {k: getattr(config, k, None) for k in ("bos_token_id", "eos_token_id")}
        infill_tokenizer = InfillTokenizer(
            tokenizer, mask_token_id=mask, end_tokens=spec.end_tokens,
            expand_token=spec.expand_token, frame=spec.frame, fallback_ids=fallback)
        engine = cls(denoiser, infill_tokenizer,
                     device=None if device_map is not None else target, name=str(model))
        return engine

    @property
    def sampling_defaults(self) -> dict:
        """`InfillOptions` fields the model's family samples best with (Dream: entropy order,
        temperature 0.2; LLaDA: greedy); empty for our own models."""
        return dict(getattr(self.model, "sampling_defaults", None) or {})

    def default_options(self, **overrides) -> InfillOptions:
        """`InfillOptions` with this model's family defaults, then `overrides`, applied."""
        return InfillOptions(**{**self.sampling_defaults, **overrides})

    def infill(self, request: InfillRequest,
               progress: Callable[[ProgressEvent], None] | None = None,
               cancelled: Callable[[], bool] | None = None) -> InfillResult:
        """Infill every span of `request` jointly; `progress` gets a `ProgressEvent` per step and
        `cancelled` is polled between steps (InfillCancelled when it returns True)."""
        outcome, = self.infill_many([request], [progress], [cancelled])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def infill_many(self, requests: list[InfillRequest],
                    progress: list[Callable[[ProgressEvent], None] | None] | None = None,
                    cancelled: list[Callable[[], bool] | None] | None = None,
                    ) -> list[InfillResult | AstdiffuseError]:
        """Infill several requests (several documents) in one batch: their canvases share every
        model call, each keeps its own options, seed, language, progress and cancellation. A
        request that fails (a bad range, cancelled) gets its error in its place of the list; the
        others go on. Requests that disagree on `use_cache` / `cache_refresh` run in turns.

        A request decodes as it would alone except for the approximate context cache: its
        refreshes follow the batch's steps, and repair starts once the whole batch decoded, so
        with `cache_refresh` > 1 a batched result can differ from the solo one (both are
        samples of the same procedure; with `cache_refresh=1` they agree)."""
        progress = progress or [None] * len(requests)
        cancelled = cancelled or [None] * len(requests)
        out: list = [None] * len(requests)
        jobs: dict[tuple, list[_Job]] = {}
        for index, request in enumerate(requests):
            try:
                job = self._prepare(index, request, progress[index], cancelled[index])
            except AstdiffuseError as err:
                out[index] = err
                continue
            key = (job.options.use_cache, job.options.cache_refresh)
            jobs.setdefault(key, []).append(job)
        for batch in jobs.values():
            try:
                self._run(batch)
            except AstdiffuseError as err:  # every request cancelled
                for job in batch:
                    job.error = job.error or err
            for job in batch:
                out[job.index] = job.error or self._finish(job)
        return out

    def _prepare(self, index: int, request: InfillRequest, progress, cancelled) -> "_Job":
        began = time.perf_counter()
        request.check()
        options = request.options
        doc = SourceDocument(request.text, request.language)
        ranges = [(r.start, r.end) for r in request.ranges]
        exact = request.mode == EXACT_MODE
        spans = exact_spans(doc, ranges) if exact else masked_spans(doc, ranges, request.mode)
        budget = min(options.context_tokens, self.max_tokens or options.context_tokens)
        if self._expanding(options):  # room for the spans to grow into
            budget = max(16, budget - options.expand_budget * len(spans))
        canvas = build_canvas(doc, spans, self.tokenizer, budget=budget,
                              length_count=options.length_candidates,
                              length_hint=options.length_hint, lengths=options.lengths,
                              samples=options.samples, keep_anchors=options.keep_anchors,
                              cut_at_spans=exact)
        timings = Timings(canvas_tokens=canvas.input_ids.shape[1], batch=canvas.rows)
        timings.canvas_ms = _ms(began)
        return _Job(index=index, request=request, options=options, doc=doc, canvas=canvas,
                    exact=exact, timings=timings, began=began, progress=progress,
                    cancelled=cancelled)

    def _run(self, jobs: list["_Job"]) -> None:
        """Decode and repair `jobs` as one batch: their canvases stacked (right-padded to the
        longest), one `RowGroup` each."""
        device = self.device
        width = max(job.canvas.input_ids.shape[1] for job in jobs)
        ids, attention, editable, groups = [], [], [], []
        bracket = None
        row = 0
        for job in jobs:
            canvas = job.canvas
            pad = width - canvas.input_ids.shape[1]
            ids.append(torch.nn.functional.pad(canvas.input_ids, (0, pad),
                                               value=self.tokenizer.pad_id))
            attention.append(torch.nn.functional.pad(canvas.attention_mask, (0, pad)))
            editable.append(torch.nn.functional.pad(canvas.editable, (0, pad)))
            job.offset = row
            row += canvas.rows
            anchor_classes = None
            if job.options.anchored:
                anchor_classes = _padded(self.tokenizer.anchor_classes(job.doc.language),
                                         self.model.vocab_size, device, OTHER)
                if bracket is None:
                    bracket = _padded(self.tokenizer.bracket_delta(), self.model.vocab_size,
                                      device, 0)
            job.group = RowGroup(job.offset, row, job.options,
                                 torch.Generator(device=device).manual_seed(job.options.seed),
                                 anchor_classes=anchor_classes, on_step=job.step_callback(self),
                                 cancelled=job.cancelled)
            groups.append(job.group)
        ids = torch.cat(ids).to(device)
        editable = torch.cat(editable).to(device)
        masked = (ids == self.tokenizer.mask_id) & editable
        state = SamplerState(ids=ids, attention_mask=torch.cat(attention).to(device),
                             editable=editable, masked=masked,
                             logp=torch.zeros(ids.shape, dtype=torch.float32, device=device))
        for job in jobs:
            job.state = state
            job.generated = masked[job.rows].clone()
            job.timings.masked_tokens = int(job.generated.sum())
            job.timings.batch_requests = len(jobs)
        sampler = DiffusionSampler(self.model, groups=groups, bracket_delta=bracket)

        sampling_began = time.perf_counter()
        try:
            if any(self._expanding(job.options) for job in jobs):
                state = self._decode_expanding(jobs, state, groups)
                sampler = DiffusionSampler(self.model, groups=groups, bracket_delta=bracket)
            else:
                sampler.run(state, [job.planned_steps(job.generated) for job in jobs])
        finally:
            self._settle(jobs, sampler)
        sampling_ms = _ms(sampling_began)

        repair_began = time.perf_counter()
        live = [job for job in jobs if job.error is None]
        for job in live:
            job.phase = "repair"
            job.decoded = self._judge_all(job, state.ids.cpu())
        for round_ in range(max((job.options.repair_rounds for job in live), default=0)):
            remasked = [job for job in live
                        if round_ < job.options.repair_rounds and self._remask_broken(job)]
            if not remasked:
                break
            try:
                sampler.run(state, [job.planned_steps(state.masked[job.rows]) for job in jobs])
            finally:
                self._settle(jobs, sampler)
            ids_cpu = state.ids.cpu()
            for job in remasked:
                if job.error is None:
                    job.decoded = self._judge_all(job, ids_cpu, previous=job.decoded)
            live = [job for job in live if job.error is None]
        repair_ms = _ms(repair_began)
        for job in jobs:
            job.timings.sampling_ms, job.timings.repair_ms = sampling_ms, repair_ms
            job.timings.forward_passes = state.forward_passes
            job.timings.full_passes = state.full_passes

    def _expanding(self, options: InfillOptions) -> bool:
        """Whether a request decodes with variable-length spans (a model with an expand token,
        and a budget to grow by)."""
        return self.tokenizer.expand_id is not None and options.expand_budget > 0

    def _decode_expanding(self, jobs: list["_Job"], state: SamplerState,
                          groups: list[RowGroup]) -> SamplerState:
        """Decode the stacked batch with `ExpandingSampler` (spans grow and shrink); the jobs'
        canvases take the rows' final layout and a new state holds the decoded batch."""
        slots = [list(slot) for job in jobs for slot in job.canvas.slots]
        rows = rows_from_state(state.ids.cpu(), state.attention_mask.cpu(), state.masked.cpu(),
                               slots)
        sampler = ExpandingSampler(self.model, mask_id=self.tokenizer.mask_id,
                                   expand_id=self.tokenizer.expand_id,
                                   end_ids=self.tokenizer.end_ids, pad_id=self.tokenizer.pad_id,
                                   groups=groups)
        by_group = {id(job.group): job for job in jobs}

        def on_step(group, step, total, mine):
            job = by_group[id(group)]
            if job.progress is not None:
                spans = self.partial_text(mine[0].slots(len(job.canvas.spans)), mine[0].tokens)
                job.progress(ProgressEvent(step, total, spans, job.phase))

        sampler.run(rows, [job.planned_steps(job.generated) for job in jobs], on_step)
        ids, attention, editable, masked, logp, generated = state_tensors(rows,
                                                                          self.tokenizer.pad_id)
        device = self.device
        new = SamplerState(ids=ids.to(device), attention_mask=attention.to(device),
                           editable=editable.to(device), masked=masked.to(device),
                           logp=logp.to(device), steps=state.steps + sampler.forward_passes,
                           forward_passes=state.forward_passes + sampler.forward_passes,
                           full_passes=state.full_passes + sampler.forward_passes)
        for job in jobs:
            mine = rows[job.rows]
            job.canvas = dataclasses.replace(
                job.canvas, input_ids=ids[job.rows], attention_mask=attention[job.rows],
                editable=editable[job.rows],
                slots=[row.slots(len(job.canvas.spans)) for row in mine])
            job.state = new
            job.generated = generated[job.rows].to(device)
        return new

    @staticmethod
    def _settle(jobs: list["_Job"], sampler: DiffusionSampler) -> None:
        """A job whose group stopped (its flag was set) ends with InfillCancelled."""
        for job in jobs:
            if job.group.stopped and job.error is None:
                job.error = InfillCancelled("infill cancelled")

    def _remask_broken(self, job: "_Job") -> bool:
        """Remask the error regions of the job's broken rows; whether any position was. No
        row is repaired once the job has as many distinct valid candidates as it returns."""
        if len({d.new_source for d in job.decoded if d.valid}) >= job.options.candidates:
            return False
        any_ = False
        logp = job.state.logp[job.rows].cpu()
        # only what the model wrote: keep_anchors' kept tokens stay as the user wrote them
        ours = job.generated.cpu().tolist()
        for decoded in job.decoded:
            if decoded.valid:
                continue
            positions = [p for p in repair_positions(job.canvas, decoded, logp)
                         if ours[decoded.row][p]]
            if positions:
                index = torch.tensor(positions, device=self.device)
                row = job.offset + decoded.row
                job.state.masked[row, index] = True
                job.state.ids[row, index] = self.tokenizer.mask_id
                job.rounds[decoded.row] += 1
                any_ = True
        return any_

    def _finish(self, job: "_Job") -> InfillResult:
        options, state = job.options, job.state
        candidates = self._rank(job)
        valid = bool(candidates) and candidates[0].valid
        kept = candidates[:options.candidates]
        if valid:
            count = sum(c.valid for c in kept)
            message = f"{count} valid candidate{'s' if count != 1 else ''}"
        else:
            rule = "parses" if job.exact else "parses and keeps the node kinds"
            message = (f"no valid infill: none of {len(candidates)} candidates {rule} after "
                       f"{options.repair_rounds} repair rounds; the candidates are returned for "
                       "inspection only")
        job.timings.total_ms = _ms(job.began)
        return InfillResult(candidates=kept, valid=valid, message=message, steps=job.group.steps,
                            timings=job.timings, model=self.name, device=str(self.device))

    def _judge_all(self, job: "_Job", ids: torch.Tensor,
                   previous: list[DecodedRow] | None = None) -> list[DecodedRow]:
        ids = ids[job.rows, :job.canvas.input_ids.shape[1]]
        out = []
        for row in range(job.canvas.rows):
            if previous is not None and previous[row].valid:
                out.append(previous[row])  # untouched by the repair round
                continue
            out.append(judge(job.doc, job.canvas,
                             decode_row(job.canvas, ids, row, self.tokenizer,
                                        template=job.options.keep_anchors),
                             kind_rule=not job.exact))
        return out

    def _rank(self, job: "_Job") -> list[Candidate]:
        """Candidates in `ranked` order; rows that decoded to the same document count once.
        A candidate's score is the mean log-probability of the tokens it wrote into the text
        (the pads that ended its spans do not count: a model sure of its pads would otherwise
        rank a nearly empty row first); an empty infill scores by its pads."""
        logp = job.state.logp[job.rows].cpu()
        generated = job.generated.cpu()
        seen: dict[bytes, Candidate] = {}
        for decoded in job.decoded:
            mask = generated[decoded.row]
            written = [p for span in decoded.positions for p in span if bool(mask[p])]
            row = logp[decoded.row]
            score = float(row[written].mean()) if written else \
                float(row[mask].mean()) if bool(mask.any()) else 0.0
            candidate = Candidate(
                text=decoded.new_source.decode("utf-8", errors="replace"),
                spans=span_edits(job.doc, job.canvas, decoded), score=score,
                parses=decoded.parses, same_kind=all(decoded.same_kind),
                repair_rounds=job.rounds[decoded.row])
            best = seen.get(decoded.new_source)
            if best is None or rank_key(candidate) > rank_key(best):
                seen[decoded.new_source] = candidate
        return ranked(seen.values())

    def partial_text(self, slots: list[tuple[int, int]], ids) -> list[str]:
        """The current text of each span of one canvas row: `slots` its (start, length) per
        span, `ids` its tokens ([L] tensor or list), masks shown as PARTIAL_MASK."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        drop = self.tokenizer.special_ids
        out = []
        for start, length in slots:
            pieces, run = [], []
            for token in ids[start:start + length]:
                if token == self.tokenizer.mask_id:
                    if run:
                        pieces.append(self.tokenizer.decode(run))
                        run = []
                    pieces.append(PARTIAL_MASK)
                elif token not in drop:
                    run.append(token)
            if run:
                pieces.append(self.tokenizer.decode(run))
            out.append("".join(pieces))
        return out


@dataclass
class _Job:
    """One request on its way through a batch: its canvas, its rows of the shared state and
    what became of them."""

    index: int  # place in the caller's list
    request: InfillRequest
    options: InfillOptions
    doc: SourceDocument
    canvas: object
    exact: bool
    timings: Timings
    began: float
    progress: Callable[[ProgressEvent], None] | None
    cancelled: Callable[[], bool] | None
    offset: int = 0  # first row in the batch
    group: RowGroup | None = None
    state: SamplerState | None = None
    generated: torch.Tensor | None = None  # bool [rows, L]: positions first decoded
    decoded: list[DecodedRow] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    phase: str = "denoise"
    error: AstdiffuseError | None = None

    def __post_init__(self):
        self.rounds = [0] * self.canvas.rows

    @property
    def rows(self) -> slice:
        return slice(self.offset, self.offset + self.canvas.rows)

    def planned_steps(self, masked: torch.Tensor) -> int:
        """The options' steps, or half the masked tokens of the job's longest row."""
        longest = int(masked.sum(-1).max()) if masked.numel() else 0
        return self.options.steps or max(1, math.ceil(longest / 2))

    def step_callback(self, engine: "InfillEngine"):
        if self.progress is None:
            return None

        def on_step(step: int, total: int, state: SamplerState) -> None:
            spans = engine.partial_text(self.canvas.slots[0], state.ids[self.offset])
            self.progress(ProgressEvent(step, total, spans, self.phase))
        return on_step


def _model_dir(model) -> Path:
    """The directory holding the model's files (a hub id: its snapshot in the local cache)."""
    from ..model.adapter import _local_dir

    return _local_dir(str(model))


def _load_tokenizer(source: Path):
    """Our tokenizer.json (with its special tokens set), else the tokenizer files the model's
    repository publishes, built natively (`engine.model.tokenizer_files`: never its code)."""
    from ..model.tokenizer_files import load_published_tokenizer
    from ..tokens import load_tokenizer

    path = Path(str(source))
    if (path / "tokenizer.json").is_file() and _is_ours(path):
        return load_tokenizer(path)
    try:
        return load_published_tokenizer(path)
    except AstdiffuseError as err:
        raise ModelLoadError(str(err)) from err


def family_of(denoiser):
    """The `FamilySpec` of a loaded denoiser: its own, else ours or the masked-LM one."""
    from ..model.families import family_spec

    spec = getattr(denoiser, "spec", None)
    if spec is not None:
        return spec
    return family_spec("masked-lm" if isinstance(denoiser, MaskedLMDenoiser) else "anchored")


def _is_ours(path: Path) -> bool:
    import json

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    from ..model.configuration import MODEL_TYPE

    return config.get("model_type") == MODEL_TYPE


def _padded(table, size: int, device: torch.device, fill: int) -> torch.Tensor:
    """A per-token table as a tensor over the model's vocabulary; ids the tokenizer lacks get
    `fill`."""
    out = torch.full((size,), fill, dtype=torch.int8)
    n = min(size, len(table))
    out[:n] = torch.from_numpy(table[:n])
    return out.to(device)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 3)
