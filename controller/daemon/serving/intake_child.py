"""``python -m controller.daemon.serving.intake_child``: the intake's process
(:mod:`.intake_process`), started by the daemon, never by hand."""

from controller.daemon.serving.intake_process import main

if __name__ == "__main__":
    main()
