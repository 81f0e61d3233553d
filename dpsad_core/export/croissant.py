"""``croissant.json``: Croissant 1.0 metadata for a bundle, with the Responsible-AI fields filled.

The file describes the bundle's files (labels.csv, the optional .npz and the grid as FileObjects with
their sha256; the PNG images as a FileSet, each covered by the signed MANIFEST) and two record sets:
one row per image from labels.csv, and the images themselves with their class read from the folder.
The RAI fields say honestly how the data was made: sampled from a generator trained with
differential privacy (or, for a research export, without it), and what that does not guarantee.
"""

from __future__ import annotations

from typing import Any

from dpsad_core.export.layout import GRID, IMAGES_DIR, LABELS, NOT_DP_STAMP, NPZ
from dpsad_core.export.names import size_text

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"

#: The Croissant 1.0 JSON-LD context (as in the specification and mlcroissant), plus the RAI prefix.
CONTEXT: dict[str, Any] = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty", "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field",
    "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet",
    "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField",
    "path": "cr:path", "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex",
    "repeated": "cr:repeated", "replace": "cr:replace", "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/", "separator": "cr:separator",
    "source": "cr:source", "subField": "cr:subField", "transform": "cr:transform",
}


def build_croissant(*, name: str, report: dict[str, Any], file_hashes: dict[str, str],
                    created: str) -> dict[str, Any]:
    """The Croissant document for a bundle.

    Parameters
    ----------
    name
        The bundle's name (its folder name).
    report
        The privacy report (``report.build_report``): the guarantee, the run, the dataset.
    file_hashes
        ``{relative path: sha256}`` of labels.csv and, when present, samples.npz and the grid.
    created
        ISO date-time of the export.
    """
    guarantee = report["guarantee"]
    private = guarantee["differentially_private"]
    distribution: list[dict[str, Any]] = [
        _file_object(LABELS, "text/csv", file_hashes[LABELS], "one row per image: file_name, label, class_name"),
        {"@type": "cr:FileSet", "@id": "image-files", "name": "image-files", "encodingFormat": "image/png",
         "includes": f"{IMAGES_DIR}/*/*.png",
         "description": "the synthetic images, one folder per class; each file's sha256 is in the signed MANIFEST"},
    ]
    if NPZ in file_hashes:
        distribution.append(_file_object(NPZ, "application/octet-stream", file_hashes[NPZ],
                                         "NumPy archive: images (uint8), labels, class_names"))
    if GRID in file_hashes:
        distribution.append(_file_object(GRID, "image/png", file_hashes[GRID], "a few samples per class"))
    title = f"Synthetic images from run {report['run']['run_id']}"
    if not private:
        title = f"{NOT_DP_STAMP}: {title}"
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": name,
        "description": f"{title}. {_guarantee_sentence(report)}",
        "url": f"file:{name}",
        "license": "https://creativecommons.org/licenses/by/4.0/",
        "version": "1.0.0",
        "datePublished": created,
        "creator": {"@type": "sc:Organization",
                    "name": f"DP-SAD Workbench {report['software']['export']['dpsad_core']}"},
        "citeAs": f"Synthetic dataset {name}, exported by DP-SAD Workbench from run {report['run']['run_id']} "
                  f"(signer {report['signer']['fingerprint']})",
        "keywords": ["synthetic data", "differential privacy" if private else NOT_DP_STAMP, "images"],
        "isAccessibleForFree": True,
        "distribution": distribution,
        "recordSet": [_labels_record_set(), _images_record_set()],
        **_rai_fields(report),
    }


def _file_object(path: str, encoding: str, sha256: str, description: str) -> dict[str, Any]:
    return {"@type": "cr:FileObject", "@id": path, "name": path, "contentUrl": path, "encodingFormat": encoding,
            "sha256": sha256, "description": description}


def _labels_record_set() -> dict[str, Any]:
    def column(name: str, data_type: str, description: str) -> dict[str, Any]:
        return {"@type": "cr:Field", "@id": f"samples/{name}", "name": name, "description": description,
                "dataType": data_type, "source": {"fileObject": {"@id": LABELS}, "extract": {"column": name}}}

    return {"@type": "cr:RecordSet", "@id": "samples", "name": "samples",
            "description": "one record per synthetic image",
            "field": [column("file_name", "sc:Text", "path of the PNG inside the bundle"),
                      column("label", "sc:Integer", "class index the image was sampled for"),
                      column("class_name", "sc:Text", "class name")]}


def _images_record_set() -> dict[str, Any]:
    def from_files(name: str, data_type: str, extract: dict[str, Any], description: str,
                   transform: dict[str, Any] | None = None) -> dict[str, Any]:
        source: dict[str, Any] = {"fileSet": {"@id": "image-files"}, "extract": extract}
        if transform is not None:
            source["transform"] = transform
        return {"@type": "cr:Field", "@id": f"images/{name}", "name": name, "description": description,
                "dataType": data_type, "source": source}

    return {"@type": "cr:RecordSet", "@id": "images", "name": "images",
            "description": "the image files, with the class folder each is in",
            "field": [from_files("image", "sc:ImageObject", {"fileProperty": "content"}, "the synthetic image"),
                      from_files("class_folder", "sc:Text", {"fileProperty": "fullpath"},
                                 "the class folder the image is in",
                                 {"regex": f"^(?:.*/)?{IMAGES_DIR}/([^/]+)/[^/]+$"})]}


def _guarantee_sentence(report: dict[str, Any]) -> str:
    guarantee = report["guarantee"]
    if report.get("mechanism"):
        mechanism = report["mechanism"]
        return (f"Generated by {mechanism['name']} with ({guarantee['epsilon']:.4g}, {guarantee['delta']:.3g})-"
                f"differential privacy per {guarantee['unit_of_privacy']} over {mechanism['queries']} queries "
                f"(k {mechanism['k']}, q {mechanism['q']:g}, sigma {mechanism['sigma']:g}, lambda "
                f"{mechanism['lambda']:g}) on a private dataset that was never trained on; see privacy-report.json.")
    if not guarantee["differentially_private"]:
        return (f"{NOT_DP_STAMP}: parts of the generator were trained on the private data without protection "
                f"({', '.join(guarantee['nonprivate_parts'])}); these images may reproduce private records. "
                "For research only; do not share outside the institution.")
    return (f"Sampled from a generator trained with ({guarantee['epsilon']:.4g}, {guarantee['delta']:.3g})-"
            f"differential privacy per {guarantee['unit_of_privacy']} on a private dataset; see privacy-report.json.")


def _rai_fields(report: dict[str, Any]) -> dict[str, Any]:
    guarantee = report["guarantee"]
    dataset = report["dataset"]
    private = guarantee["differentially_private"]
    mechanisms = "; ".join(_mechanism_text(m) for m in report["mechanisms"]) or "none"
    collection = (f"Not collected: every image was sampled from a class-conditional diffusion model (recipe "
                  f"{report['run']['recipe']}) trained on the private dataset '{dataset['name']}' "
                  f"({size_text(dataset)}, fingerprint "
                  f"{dataset['fingerprint']}). Labels are the classes the images were sampled for, not annotations.")
    mechanism = report.get("mechanism")
    if mechanism:
        collection = (f"Not collected: every image was generated by {mechanism['name']}: public model "
                      f"'{mechanism['public_model']}' (trained on public data '{mechanism['public_dataset']}' only), "
                      f"conditioned on a noisy mean of k = {mechanism['k']} neighbours retrieved from a subsample "
                      f"(q = {mechanism['q']:g}) of an index of the private dataset '{dataset['name']}' "
                      f"({size_text(dataset)}, fingerprint {dataset['fingerprint']}); noise sigma "
                      f"{mechanism['sigma']:g}, noise multiplier {mechanism['noise_multiplier']:.4g}, sensitivity "
                      f"{mechanism['sensitivity']:.4g}, lambda {mechanism['lambda']:g}, {mechanism['queries']} "
                      "queries. The private images were never trained on. Labels are the queried classes "
                      "(or 'example query'), not annotations.")
    if private:
        what = "The retrieval that conditioned every image is" if mechanism else "The generator's training is"
        sensitive = (f"The images are synthetic. {what} ({guarantee['epsilon']:.4g}, "
                     f"{guarantee['delta']:.3g})-differentially private per {guarantee['unit_of_privacy']}: no single "
                     "private record has more than a bounded influence on these images. Differential privacy "
                     "does not hide population-level facts the private data shows, and the images may still look "
                     "like real medical or personal images.")
    else:
        sensitive = (f"{NOT_DP_STAMP}. Parts trained on the private data without noise "
                     f"({', '.join(guarantee['nonprivate_parts'])}): the images may memorise and reproduce private "
                     "records, which may contain personal or sensitive information.")
    limitations = ("Synthetic images from a small model trained under a privacy budget: lower fidelity and diversity "
                   "than the private data, classes may be confused, rare features are likely missing. "
                   "Differentially private training degrades utility more for small classes and small datasets. "
                   f"Random number generator of the noise and sampling: {guarantee['secure_rng_note']}.")
    return {
        "rai:dataCollection": collection,
        "rai:dataCollectionType": "Synthetic data generation (differentially private retrieval, DP-RDM)" if mechanism
        else "Synthetic data generation (differentially private diffusion model)" if private
        else f"Synthetic data generation ({NOT_DP_STAMP})",
        "rai:dataPreprocessingProtocol": (f"Private images at {dataset.get('resolution')} x "
                                          f"{dataset.get('resolution')} px, scaled to "
                                          f"[-1, 1]; privacy mechanisms: {mechanisms}."),
        "rai:dataLimitations": limitations,
        "rai:dataBiases": ("The generator reproduces the biases of the private dataset (who was imaged, with which "
                           "devices, the class balance) and adds its own: DP noise and clipping suppress "
                           "under-represented groups and classes more than common ones."),
        "rai:personalSensitiveInformation": sensitive,
        "rai:dataUseCases": ("Prototyping, teaching, and developing models or pipelines before access to the real "
                             "data; not for clinical decisions or for estimating clinical performance."),
        "rai:dataSocialImpact": ("Lets analysts share data-like material without sharing patients' records; "
                                 "results obtained on synthetic images must be validated on real data."),
        "rai:dataReleaseMaintenancePlan": "A fixed export; the signed MANIFEST and privacy report identify it.",
        "rai:hasSyntheticData": True,
    }


def _mechanism_text(mechanism: dict[str, Any]) -> str:
    clip = mechanism.get("clip_norm")
    clip_text = f", clip {clip:g}" if isinstance(clip, (int, float)) else ""
    return (f"{mechanism['part']}: sampled Gaussian, noise multiplier {mechanism['noise_multiplier']:.4g}, "
            f"sample rate {mechanism['sample_rate']:.4g}, {mechanism['steps']} steps{clip_text}")
