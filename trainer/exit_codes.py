"""The trainer's exit codes: what the programs that run it (horovodrun, the local supervisor, Azure ML) act on.

Kept free of imports so a supervisor can read them without loading torch.
"""

EXIT_INVALID = 2  # invalid arguments, data or checkpoint: retrying will not help
EXIT_PREEMPTED = 75  # sysexits.h's EX_TEMPFAIL: preempted after a checkpoint; a next attempt resumes
