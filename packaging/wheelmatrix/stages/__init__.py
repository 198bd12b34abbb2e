"""Build stages: cell builds (:mod:`.cells`), assembly (:mod:`.assemble`), repair (:mod:`.repair`),
deterministic wheel files (:mod:`.wheelfile`) and the build record (:mod:`.record`); then the check
(:mod:`.check`) and staged publishing (:mod:`.publish`, :mod:`.verify`, :mod:`.ship`)."""
