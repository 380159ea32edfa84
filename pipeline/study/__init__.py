"""The study: aggregation of every evaluation table into the study's tables (:mod:`.aggregate`) and
the HTML report (:mod:`.report`)."""
