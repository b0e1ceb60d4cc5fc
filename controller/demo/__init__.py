"""``rollout-controller demo``: the whole product on one machine, in one command.

* :mod:`~controller.demo.run`: the order of a run, start to summary, and its exit code;
* :mod:`~controller.demo.session`: the live part against the running controller;
* :mod:`~controller.demo.scenario`: the flags, the plan, the fault, the controller config;
* :mod:`~controller.demo.apps`: simulated apps on the real ``FlagClient`` and ``EventEmitter``;
* :mod:`~controller.demo.watch` and :mod:`~controller.demo.tracking`: what the controller
  published, logged and folded per flag;
* :mod:`~controller.demo.snapshot`, :mod:`~controller.demo.screens` and
  :mod:`~controller.demo.terminal`: what is on screen, as data, as rich renderables, on a terminal.

The services come from :mod:`controller.dev.embedded`; the controller runs as a child
process, so the demo exercises exactly what an operator deploys.
"""
