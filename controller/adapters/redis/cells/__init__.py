"""A cell of the aggregate store, as Redis holds it and as the daemon adds it up: the
layout of its unit bucket lanes (:mod:`.layout`), a read's strings of lanes added up
(:mod:`.lanes`), and the partition owner's copies its flushes write from (:mod:`.copies`).
"""
