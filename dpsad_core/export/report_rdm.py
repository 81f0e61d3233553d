"""The parts of a privacy report that describe a DP-RDM run (docs/method.md §2).

A DP-RDM run trains nothing on the private data: a public retrieval-augmented diffusion model is
conditioned on a noisy mean of k neighbours retrieved from a Poisson subsample of the private index.
Its report names that mechanism and its parameters, the public model it used instead of a private
model's hash, and says in plain words what the guarantee covers and what it does not.
Everything here comes from the run's ``result.json`` and ``config.json``: data-independent settings
and the accountant's values, never the index or a class size.
"""

from __future__ import annotations

from typing import Any

from dpsad_core.privacy.plain_words import likelihood_factor
from dpsad_core.runs.records import RunConfigRecord, RunResult

MECHANISM_NAME = "DP-RDM private retrieval (Lebensold et al. 2024, arXiv 2403.14421; docs/method.md §2)"


def rdm_mechanism_section(result: RunResult, config: RunConfigRecord) -> dict[str, Any]:
    """The report's ``mechanism`` section: the retrieval mechanism, its parameters and the public model."""
    mechanism = result.mechanism or {}
    public = result.public_model or config.public_model or {}
    k, sigma = int(mechanism["k"]), float(mechanism["sigma"])
    return {
        "name": MECHANISM_NAME,
        "k": k, "q": mechanism["q"], "sigma": sigma, "lambda": mechanism["lambda"],
        "noise_multiplier": mechanism["noise_multiplier"],
        "noise_multiplier_formula": f"sigma * k / 2 = {sigma:g} * {k} / 2 = {sigma * k / 2:g}",
        "sensitivity": mechanism["sensitivity"],
        "sensitivity_formula": f"2 / k = 2 / {k} = {2 / k:.4g} (L2, of the mean of k unit-norm neighbours)",
        "queries": mechanism["queries"],
        "query_mode": mechanism.get("query_mode"), "guidance": mechanism.get("guidance"),
        "sampler": mechanism.get("sampler"),
        "public_model": public.get("name"),
        "public_dataset": public.get("public_dataset") or (config.public_dataset or {}).get("name"),
        "encoder": f"the frozen image encoder of public model {public.get('name')!r}",
        "encoder_digest": public.get("encoder_digest"),
        "per_query": "Poisson-subsample the private index with rate q, take the k nearest neighbours of the query "
                     "embedding, scale each to unit norm, average, add N(0, sigma^2 I), mix with the query "
                     "(lambda), and generate one image with the public model conditioned on the result",
        "accounting": "each query is a sampled Gaussian mechanism (rate q, noise multiplier sigma*k/2); the "
                      "queries compose (RDP and PRV accountants, the smaller bound certified)",
    }


def rdm_plain_language(result: RunResult) -> dict[str, list[str]]:
    """What a private DP-RDM run's guarantee means and does not mean, in plain words."""
    epsilon, delta = result.epsilon, result.delta
    if epsilon is None:  # pragma: no cover - plain_language answers for a run that is not private
        raise ValueError(f"run {result.run_id} is not private: it has no guarantee to explain")
    mechanism = result.mechanism or {}
    unit = result.unit_of_privacy
    record = "patient (all of that patient's images together)" if unit == "patient" else "image (with its label)"
    queries = mechanism["queries"]
    means = [
        "The private images were never trained on. A diffusion model trained on public data only made every image; "
        "the private images were only embedded, once, by a frozen public encoder into a retrieval index that stays "
        "on the exporting machine.",
        f"Each of the {queries} images the run generated (this bundle holds all or some of them) answered one "
        f"query: the public model was conditioned on the average of "
        f"k = {mechanism['k']} neighbours retrieved from a random subsample (rate q = {mechanism['q']:g}) of the "
        f"private index, with Gaussian noise (sigma = {mechanism['sigma']:g}) added.",
        f"The guarantee covers the retrieval of every one of the {queries} queries, composed: take any single "
        f"{record} in the private dataset; whether it was in the index or not, every possible set of these images "
        f"has almost the same probability: at most e^epsilon = {likelihood_factor(epsilon)} times more or less "
        f"likely, except with a probability of at most delta = {delta:.3g}.",
        "Choosing a subset of the generated images for this bundle costs nothing more: no new image was made.",
    ]
    does_not_mean = [
        "It does not cover the public model or its public training data, nor the example query images you supplied: "
        "they are assumed public and are not protected.",
        "It does not cover the private index (embeddings of the private images) or anything else in the local run "
        "folder: only what is in this bundle is.",
        "It does not hide facts about the population the data shows; it limits what can be learned about one record.",
        "It does not make the images realistic or useful: a public model conditioned on noisy retrieval can drift "
        "from the private domain; check utility before relying on them.",
        f"epsilon = {epsilon:.4g} is an upper bound from the accountant; it is not a measured attack success rate.",
        "It assumes the run's random choices (each query's subsample and noise, and its noisy count) stay secret: they "
        "came from a cryptographically secure generator with a fresh key that never left the exporting machine.",
    ]
    if unit == "image":
        does_not_mean.append("The unit is the image: a person with several images in the private data is protected "
                             "at roughly that many times epsilon, not epsilon.")
    return {"means": means, "does_not_mean": does_not_mean}


def rdm_html(section: dict[str, Any], escape, fmt) -> str:
    """The HTML table of the DP-RDM mechanism (``escape`` and ``fmt`` from ``report_html``)."""
    rows = [("mechanism", section["name"]), ("k (neighbours)", section["k"]), ("q (subsample rate)", section["q"]),
            ("sigma (noise std)", section["sigma"]), ("lambda (mix with the query)", section["lambda"]),
            ("noise multiplier", section["noise_multiplier_formula"]),
            ("sensitivity", section["sensitivity_formula"]), ("queries (images generated)", section["queries"]),
            ("public model", section["public_model"]), ("public data", section["public_dataset"]),
            ("encoder", f"{section['encoder']} (digest {section['encoder_digest']})"),
            ("sampler", section["sampler"])]
    body = "".join(f"<tr><th>{escape(name)}</th><td>{escape(fmt(value) if not isinstance(value, str) else value)}"
                   "</td></tr>" for name, value in rows)
    return (f"<h2>How the images were made: DP-RDM</h2><p class='muted'>{escape(section['per_query'])}. "
            f"{escape(section['accounting'])}.</p><table>{body}</table>")
