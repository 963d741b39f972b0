"""Sentences that say what was done to the data, from the data record alone.

The report, `inspect` and the terminal all say the same thing the same way, and only what
the record shows was actually done (a split the source gave is "kept as given", never
described by the settings that were not used).
"""

from __future__ import annotations

from visionbench import display
from visionbench.rundir.documents import ClassVariance, DataRecord

# What predicts the test split of a cross-validated run, in words (the report says it too).
TESTED_BY_REFIT = "the model refit on every non-test image"
TESTED_BY_ENSEMBLE = "the mean of the fold models' probabilities"


def describe_splits(data: DataRecord) -> str:
    """How the train/validation/test splits were made, and which images were kept
    together (`split.group_by`)."""
    sentence = _how_split(data)
    groups = data.groups
    if sentence and groups:
        sentence += (f" Groups by {groups.by}: {groups.groups:,} ("
                     f"{groups.groups_of_several:,} of several images; "
                     f"{groups.without_group:,} image(s) in none) stay whole in every split "
                     "made here.")
    return sentence


def _how_split(data: DataRecord) -> str:
    policy = data.split_policy
    if not policy:
        return ""
    given = ", ".join(f"{name} {sum(counts.values()):,}"
                      for name, counts in data.source_splits.items() if name)
    seed = policy.seed
    if policy.folds:
        test = ("the source's test split is kept as given and untouched"
                if policy.test == "given" else _carved("test", policy.test, "of all images",
                                                       seed))
        return (f"Splits: {test}; the other images were cut into {policy.folds} folds "
                f"(stratified, seed {seed}, duplicates kept in one fold) for "
                f"{policy.folds}-fold cross-validation: each model is trained once per "
                "fold with that fold as validation, its validation predictions are the "
                "out-of-fold ones, and the test split is predicted by "
                + (TESTED_BY_ENSEMBLE if policy.test_with == "fold_ensemble"
                   else TESTED_BY_REFIT) + ".")
    kept = [name for name, share in (("test", policy.test), ("validation", policy.val))
            if share == "given"]
    # Folders written before the record said what was done hold "given" beside a pool:
    # they read as the shares they state.
    if (policy.given == "pool" and given and policy.test != "given"
            and policy.val != "given"):
        return (f"Splits: the source's splits ({given}) were pooled, then test "
                f"{policy.test:.0%} of all images and validation {policy.val:.0%} of the "
                f"rest, stratified, seed {seed}; duplicate images always land in the same "
                "split.")
    parts = []
    if kept:
        parts.append(f"the source's {' and '.join(kept)} split{'s' if len(kept) > 1 else ''} "
                     f"{'are' if len(kept) > 1 else 'is'} kept as given"
                     + (" and untouched" if "test" in kept else ""))
    if "test" not in kept:
        # Test is carved before validation, from every image that is not a given validation one.
        parts.append(_carved("test", policy.test, "of the training images" if kept else
                             "of all images", seed))
    if "validation" not in kept:
        parts.append(_carved("validation", policy.val, "of the training images", seed))
    sentence = "Splits: " + "; ".join(parts) + "."
    if "test" not in kept or "validation" not in kept:
        sentence += " Duplicate images always land in the same split."
    return sentence


def _carved(name: str, fraction: float | str, of: str, seed: int) -> str:
    if not fraction:
        return f"no {name} split"
    return f"{name} is {fraction:.0%} {of}, stratified, seed {seed}"


def describe_limit(data: DataRecord) -> str:
    """'Limited to N images per class and source split (of M: ...)' when
    `split.limit_per_class` cut the data, else an empty string."""
    policy = data.split_policy
    if policy is None or not policy.limit_per_class:
        return ""
    limit, before = policy.limit_per_class, policy.before_limit or {}
    used = sum(data.totals.values())
    found = sum(before.values())
    return (f"Limited to {limit:,} images per class and source split "
            f"(split.limit_per_class): {used:,} images used of {found:,} labelled ("
            + ", ".join(f"{name} {count:,}" for name, count in before.items())
            + "); every count, duplicate finding and score describes this subset.")


def describe_class_separation(variance: ClassVariance) -> str:
    """The class variance analysis in words: what each ratio measures, in one sentence each.

    Example:
        >>> describe_class_separation(ClassVariance(
        ...     computed_on=["train"], pixel_scale="uint8", per_class={},
        ...     inter_variance_study=1.0, fisher_ratio=0.25, ratio_study=19.4))[:46]
        'Class separation in raw pixels: Fisher ratio 0'
    """
    fisher, summed = variance.fisher_ratio, variance.ratio_study
    text = (f"Class separation in raw pixels: Fisher ratio {display.number(fisher)} "
            "(between-class over within-class variance of the flattened images, weighted by "
            "class size; 0 when the class mean images coincide, higher when classes differ "
            "more than images within a class do).")
    if summed is not None:
        text += (f" Between-class variance over the sum of the within-class variances: "
                 f"{display.number(summed, 2)} (this ratio grows with the number of images: "
                 "compare it only between datasets of the same size).")
    return text


def describe_duplicate_search(data: DataRecord) -> str:
    """How duplicates were searched, in one sentence, and how image ids name images."""
    found = data.duplicates
    text = "Exact duplicates: identical decoded pixels."
    if found is not None and found.near_threshold is not None:
        text += (f" Near duplicates: perceptual hashes at most {found.near_threshold} of 64 "
                 "bits apart whose grey pixels also correlate at least "
                 f"{found.near_similarity or 0:g}")
        rejected = found.near_candidates_rejected
        text += (f" ({rejected:,} pair(s) with close hashes but other pixels were not counted)."
                 if rejected else ".")
    if data.ids_note:
        text += f" Image ids: {data.ids_note}."
    return text
