"""DP-RDM: adapt a public diffusion model to a private domain through private retrieval (docs/method.md §2).

The private data is never trained on. A retrieval-augmented diffusion model trained on public data is
steered at generation time by a differentially private summary of the private records nearest to each
query (Lebensold et al. 2024, arXiv 2403.14421).

- :mod:`~dpsad_core.rdm.planner`: what M queries cost, how many a budget buys (pure accounting).
- :mod:`~dpsad_core.rdm.mechanism`: one query: Poisson subsample, k nearest, noisy mean, mix.
- :mod:`~dpsad_core.rdm.encoder`: the frozen image encoder, trained on public data only.
- :mod:`~dpsad_core.rdm.index`: the private index (embeddings of the private set, never exported).
- :mod:`~dpsad_core.rdm.model`: the engine's UNet with cross-attention to a set of embeddings, and loading it.
- :mod:`~dpsad_core.rdm.training`: training the encoder and the model on public data.
- :mod:`~dpsad_core.rdm.generation`: answering queries within a budget, into a run folder.

Torch is imported only by the modules that need it (encoder, model, training, generation).
"""

from __future__ import annotations

from dpsad_core.rdm.mechanism import answer_query, neighbour_mean, poisson_subsample
from dpsad_core.rdm.planner import RdmPlan, RetrievalSettings, plan_queries, queries_for_budget, sigma_for_budget

__all__ = [
    "RdmPlan",
    "RetrievalSettings",
    "answer_query",
    "neighbour_mean",
    "plan_queries",
    "poisson_subsample",
    "queries_for_budget",
    "sigma_for_budget",
]
