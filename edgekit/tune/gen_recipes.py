"""What ``edgekit tune`` tries for a decoder: the recipes (int4 linears at each group size, int8 linears, an int4 or
int8 table), each as a built-in generation target without a budget of its own, and each candidate's record as it goes
(:class:`~edgekit.tune.search.Tried` with perplexity and tokens per second).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..manifest_tune import TuneCandidate
from .search import Tried

if TYPE_CHECKING:
    from ..manifest_generation import GenerationSection
    from ..targets import Target

LINEARS = ("8da4w", "int8")
ALIASES = {"8da8w": "int8", "int4": "8da4w"}  # the manifest's names for the same recipes
GROUP_SIZES = (32, 64, 128)
EMBEDDINGS = ("int4", "int8")
DEFAULT_MAX_PPL_INCREASE = 50.0


@dataclass(frozen=True)
class GenRecipe:
    """One generation candidate: the linears' precision, the int4 group size, the embedding table's precision."""

    linears: str  # 8da4w | int8 (8da8w)
    group_size: int
    embeddings: str  # int4 | int8

    @property
    def name(self) -> str:
        if self.linears == "8da4w":
            return f"8da4w-g{self.group_size}-emb{self.embeddings}"
        return f"int8-emb{self.embeddings}" + (f"-g{self.group_size}" if self.embeddings == "int4" else "")

    def target(self) -> Target:
        """The built-in generation target with this recipe, and no budget of its own: tune judges the budget."""
        from ..targets import load_target

        base = load_target("xnnpack-llm-8da4w" if self.linears == "8da4w" else "xnnpack-llm-int8")
        return base.replace(
            name=f"tune-{self.name}",
            quantize__group_size=self.group_size,
            quantize__embeddings=self.embeddings,
            budget__max_ppl_increase_pct=None,
        )

    def to_dict(self) -> dict[str, str | int]:
        return {"linears": self.linears, "group_size": self.group_size, "embeddings": self.embeddings}


def plan(linears: Sequence[str], group_sizes: Sequence[int], embeddings: Sequence[str]) -> list[GenRecipe]:
    """Every combination asked for (the int4 group size matters to int8 linears only through an int4 table; an
    all-int8 program takes the default 32, which it does not use, so its build key is the same whatever is asked)."""
    out: list[GenRecipe] = []
    for lin in linears:
        for emb in embeddings:
            sizes = group_sizes if lin == "8da4w" or emb == "int4" else (32,)
            for g in sizes:
                r = GenRecipe(lin, int(g), emb)
                if r not in out:
                    out.append(r)
    return out


@dataclass
class TriedRecipe(Tried):
    """A generation candidate's journey (:class:`~edgekit.tune.search.Tried`), recorded with perplexity and tokens/s."""

    recipe: GenRecipe

    @property
    def increase(self) -> float | None:
        return self.manifest.generation.ppl_increase_pct if self.manifest else None

    @property
    def uses_int4(self) -> bool:
        return self.recipe.linears == "8da4w" or self.recipe.embeddings == "int4"

    def record(self) -> TuneCandidate:
        m, p = self.manifest, self.profile
        f = m.generation.fidelity if m else None
        return TuneCandidate(
            name=self.recipe.name,
            recipe=self.recipe.to_dict(),
            status=self.status,
            reason=self.reason,
            size_bytes=m.program.shipped_bytes if m else None,
            p50_ms=p.p50 if p else None,
            p90_ms=p.p90 if p else None,
            peak_rss_mb=p.peak_rss_mb if p else None,
            build_s=self.build_s,
            cached=self.cached,
            perplexity=m.generation.perplexity_program if m else None,
            ppl_increase_pct=self.increase,
            decode_tokens_per_s=p.decode_tokens_per_s if p else None,
            kld_mean=f.kld_mean if f else None,
            same_top1=f.same_top1 if f else None,
        )


@dataclass(frozen=True)
class GenBudget:
    """A generation tune's fidelity budget, every figure against the model handed in on llama.cpp's protocol (the
    build's verify): the perplexity increase, and optionally the mean KL divergence and the same-top-1 share."""

    max_ppl_increase: float = DEFAULT_MAX_PPL_INCREASE  # percent
    max_kld: float | None = None  # nats
    min_top1: float | None = None  # percent

    def misses(self, g: GenerationSection) -> list[str]:
        """What the program misses, each in a few words (empty: within)."""
        out = []
        if g.ppl_increase_pct > self.max_ppl_increase:
            out.append(
                f"perplexity {g.ppl_increase_pct:+.1f}% misses --max-ppl-increase {self.max_ppl_increase:g} by "
                f"{g.ppl_increase_pct - self.max_ppl_increase:.1f} points"
            )
        f = g.fidelity
        if self.max_kld is not None and (f is None or f.kld_mean > self.max_kld):
            out.append(
                "no KLD measured (a package from before llama.cpp's protocol)"
                if f is None
                else f"mean KLD {f.kld_mean:.4f} is over --max-kld {self.max_kld:g}"
            )
        if self.min_top1 is not None and (f is None or 100 * f.same_top1 < self.min_top1):
            out.append(
                "no same top-1 measured"
                if f is None
                else f"same top-1 {100 * f.same_top1:.1f}% is under --min-top1 {self.min_top1:g}"
            )
        return out

    def describe(self) -> str:
        parts = [f"perplexity ≤ +{self.max_ppl_increase:g}%"]
        if self.max_kld is not None:
            parts.append(f"mean KLD ≤ {self.max_kld:g}")
        if self.min_top1 is not None:
            parts.append(f"same top-1 ≥ {self.min_top1:g}%")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, float]:
        d = {"max_ppl_increase_pct": self.max_ppl_increase, "max_kld": self.max_kld, "min_top1_pct": self.min_top1}
        return {k: v for k, v in d.items() if v is not None}
