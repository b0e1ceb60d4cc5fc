"""The docs site's reference pages, from the settings models, the command parsers and schemas/.

``python -m controller.docgen docs/reference`` writes them; ``make docs`` runs it
before ``mkdocs build``, so the pages can never drift from the code they describe.
"""
