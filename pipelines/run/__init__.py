"""The class run: what turns one class's images into its explanation, and many classes into a run.

- :mod:`.explain`: :func:`explain_class`, one class through Stages 1-3, in memory or into a class folder;
  :func:`run_class` is the same path writing a class folder, as the CLI does. :mod:`.stages`: one function
  and one result dataclass per stage.
- :mod:`.classes`: :func:`run_classes`, many classes on one process or many (torchrun), ``run.json``.
- :mod:`.config` (the settings), :mod:`.jobs` (which classes, which images), :mod:`.cache` and :mod:`.stamp`
  (what a cached result was made from), :mod:`.lock` (one run per folder).
- Stage 3's parts: :mod:`.inversion`, :mod:`.mosaic`, :mod:`.overlays` (concept maps over photos),
  :mod:`.deletion` (the ranking's causal checks), :mod:`.layouts` (cluster graph).
- What a finished class is: :mod:`.record` (``class.json``, typed), :mod:`.result` (a class folder in a
  notebook) and :mod:`.plots` (the page's charts as matplotlib figures, from the same record).

The site that presents finished classes is :mod:`pipelines.site`; the command line, :mod:`pipelines.cli`.
"""
