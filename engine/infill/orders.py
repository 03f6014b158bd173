"""What a denoising step draws from and in which order positions unmask, as the published
samplers compute them (Dream's, DreamOn's, Open-dLLM's and CoDA's `sample_tokens`): the logits
are divided by the temperature, cut to the top-p nucleus, and the drawn token, its confidence,
the margin and the entropy all come from that tempered, filtered distribution.

`ORDERS` is the table of unmasking orders: name -> priority function (larger goes first).
"""

from __future__ import annotations

import torch

TOP_KS = (64, 1024)  # the nucleus is looked for among this many tokens first, then all


def sampling_distribution(logits: torch.Tensor, temperature: float,
                          top_p: float) -> torch.Tensor:
    """[N, V] float logits -> [N, V] probabilities after temperature and top-p, exactly as
    `top_p_logits` of the published samplers: tokens sorted by probability are kept while the
    mass before them is <= top_p (the first always). Temperature 0 leaves the logits as they
    are (the draw is then the argmax)."""
    z = logits / temperature if temperature > 0 else logits
    if top_p < 1.0 and z.shape[0]:
        keep = _nucleus(z, top_p)
        z = z.masked_fill(~keep, float("-inf"))
    return torch.softmax(z, dim=-1)


def _nucleus(z: torch.Tensor, top_p: float) -> torch.Tensor:
    """bool [N, V]: the top-p nucleus of each row of z. The most likely TOP_KS[0] tokens are
    sorted first; a row whose nucleus reaches past them is looked at again among TOP_KS[1],
    then whole (a 150k-token vocabulary is sorted only for a row that needs it)."""
    keep = torch.zeros_like(z, dtype=torch.bool)
    rows = torch.arange(z.shape[0], device=z.device)
    total = torch.logsumexp(z, dim=-1, keepdim=True)
    for k in (*TOP_KS, z.shape[-1]):
        k = min(k, z.shape[-1])
        top, index = z[rows].topk(k, dim=-1)  # sorted, descending
        p_top = (top - total[rows]).exp()
        kept = (p_top.cumsum(-1) - p_top) <= top_p
        keep[rows] = torch.zeros_like(z[rows], dtype=torch.bool).scatter_(1, index, kept)
        wide = kept[:, -1] & (k < z.shape[-1])  # the nucleus may reach past the k-th token
        if not bool(wide.any()):
            break
        rows = rows[wide]
    return keep


def draw(probs: torch.Tensor, temperature: float,
         generator: torch.Generator) -> torch.Tensor:
    """A token per row [N]: sampled from `probs` [N, V], or its argmax at temperature 0."""
    if temperature <= 0 or probs.shape[0] == 0:
        return probs.argmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _confidence(probs: torch.Tensor, p_drawn: torch.Tensor) -> torch.Tensor:
    return p_drawn  # Dream's maskgit_plus, LLaDA's low_confidence, Open-dLLM's p2


def _margin(probs: torch.Tensor, p_drawn: torch.Tensor) -> torch.Tensor:
    top2 = probs.topk(2, dim=-1).values  # Dream's topk_margin
    return top2[..., 0] - top2[..., 1]


def _entropy(probs: torch.Tensor, p_drawn: torch.Tensor) -> torch.Tensor:
    # Dream's entropy order ranks by sum p log(p + 1e-10); exp of it keeps that order and
    # stays in (0, 1], so the anchored order can scale it
    return (probs * (probs + 1e-10).log()).sum(-1).exp()


ORDERS = {"confidence": _confidence, "margin": _margin, "entropy": _entropy}
