"""Evaluation: recogniser embeddings (:mod:`.embed`), retrieval and Rank-k / mAP (:mod:`.retrieval`),
and the visual metrics and behavioural diagnostics of generated videos (:mod:`.metrics`, computed by
:mod:`.visual_metrics` and :mod:`.diagnostics` on frames aligned by :mod:`.alignment`)."""
