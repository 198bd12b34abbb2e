"""Build stages: cell builds (:mod:`.cells`), assembly (:mod:`.assemble`), repair (:mod:`.repair`),
deterministic wheel files (:mod:`.wheelfile`) and the build record (:mod:`.record`)."""
