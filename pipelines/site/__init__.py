"""The static site: a run's finished classes as HTML pages (:mod:`.gallery`), with the concepts that classes
share (:mod:`.shared`); Jinja2 ``templates/`` and the CSS/JS ``assets/`` are package data.

It reads only what the class run wrote (``class.json`` through :class:`pipelines.run.record.ClassRecord`, the
banks through :class:`concepts.ConceptBank`), so pages can be rebuilt without a model.
"""
