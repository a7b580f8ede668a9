"""What to do with images and segmentations: explore a data set (:mod:`~phaseseg.analysis.eda`),
measure cells (:mod:`~phaseseg.analysis.measure`), draw overlays
(:mod:`~phaseseg.analysis.overlays`) and write self-contained HTML reports
(:mod:`~phaseseg.analysis.report`)."""
