"""The paper's experiment grid, defined once (the Makefile's reproduce-table lists, the tables and
the tests read it; a test checks the Makefile against it), and its reported Macro-F1
(docs/method.md section 5), shown next to ours in the tables."""

DATASETS = ("bionlp2004", "tweetner7_2020", "mit_restaurant", "hurricane_irma_2017", "cyclone_idai_2019", "sst5")
BASELINES = ("ce", "focal", "dice", "icf")  # the baseline losses (baseline_loss=...)
ABLATION_DATASETS = ("bionlp2004", "hurricane_irma_2017")  # paper Table 2
ABLATIONS = ("full", "no_resampling", "no_meta_weight", "no_neighbor_boost")  # ablation=...
DISPLAY = {
    "bionlp2004": "BioNLP",
    "tweetner7_2020": "TweetNER7-2020",
    "mit_restaurant": "MIT-Restaurant",
    "hurricane_irma_2017": "Irma17",
    "cyclone_idai_2019": "Idai19",
    "sst5": "SST-5",
}
# dataset -> (HAMR, best baseline, which baseline); BERT-based encoders, seeds and std unknown
MAIN = {
    "bionlp2004": (72.7, 70.6, "Dice"),
    "tweetner7_2020": (60.2, 59.0, "Dice/LNR"),
    "mit_restaurant": (81.1, 80.4, "Dice"),
    "hurricane_irma_2017": (73.4, 72.7, "ICF"),
    "cyclone_idai_2019": (65.7, 63.8, "ICF"),
    "sst5": (57.0, 56.3, "ICF"),
}
# method -> {dataset: Macro-F1}; from a secondary summary, not verified against the paper
ABLATION = {
    "hamr_full": {"bionlp2004": 72.7, "hurricane_irma_2017": 73.4},
    "hamr_no_resampling": {"bionlp2004": 71.4, "hurricane_irma_2017": 72.1},
    "hamr_no_meta_weight": {"bionlp2004": 70.9, "hurricane_irma_2017": 71.8},
    "hamr_no_neighbor_boost": {"bionlp2004": 71.8, "hurricane_irma_2017": 72.5},
}
