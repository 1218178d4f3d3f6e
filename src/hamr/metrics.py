"""The project's one definition of Macro-F1 (and the scores reported beside it).

NER: entity-level F1 by seqeval, macro-averaged over entity types, in seqeval's default
(conlleval-compatible) mode as the authors' code, or strict IOB2; word-level tags (the first
sub-word's prediction). Classification: scikit-learn's macro F1, the unweighted mean of
per-class F1. And the one rule for a run that did not learn (:func:`collapsed`).
"""

from __future__ import annotations


def classification_scores(y_true: list[int], y_pred: list[int], label_names: list[str]) -> dict:
    """Scores of class ids; ``per_class_f1`` covers every class in ``label_names``."""
    # imported here, as seqeval below: scikit-learn takes seconds to import, and every `hamr.train`
    # process (a config error, a skipped finished run) imports this module
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    ids = list(range(len(label_names)))
    _, _, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class_f1": {name: float(f1[i]) for i, name in enumerate(label_names)},
        "support": {name: int(support[i]) for i, name in enumerate(label_names)},
    }


def ner_scores(true_tags: list[list[str]], pred_tags: list[list[str]], mode: str = "default") -> dict:
    """Entity-level scores of tag sequences; ``accuracy`` is token-level."""
    from seqeval.metrics import accuracy_score as token_accuracy
    from seqeval.metrics import classification_report
    from seqeval.metrics import f1_score as entity_f1
    from seqeval.scheme import IOB2

    kwargs = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0, **kwargs)
    types = sorted(k for k in report if not k.endswith(" avg"))
    return {
        "macro_f1": float(entity_f1(true_tags, pred_tags, average="macro", zero_division=0, **kwargs)),
        "micro_f1": float(entity_f1(true_tags, pred_tags, average="micro", zero_division=0, **kwargs)),
        "accuracy": float(token_accuracy(true_tags, pred_tags)),
        "per_class_f1": {t: float(report[t]["f1-score"]) for t in types},
        "support": {t: int(report[t]["support"]) for t in types},
    }


def zero_f1_classes(scores: dict) -> int:
    """How many classes (entity types) have F1 0 in ``scores`` (one of this module's score dicts)."""
    return sum(f1 == 0 for f1 in scores["per_class_f1"].values())


def collapsed(dev_scores: dict) -> bool:
    """Whether a run collapsed, by a rule that reads no test data: at its tested checkpoint (the
    epoch chosen on dev) more than half of the classes (entity types) have dev F1 0, so the model
    separates fewer than half of them (stuck on one or two prediction modes). A rare class missed
    by a run that learned the rest does not count: on Cyclone-Idai with 1,000 training examples
    healthy runs have exactly half of the 10 classes at 0, the runs stuck from epoch 1 nine."""
    return zero_f1_classes(dev_scores) > len(dev_scores["per_class_f1"]) / 2
