"""The web console: server-rendered pages, SVG charts and the few static files they load.

Pure rendering (no I/O): the daemon gathers the data, the HTTP adapter serves
the pages; :mod:`controller.console.charts` is shared with written reports.
"""
