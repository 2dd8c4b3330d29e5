"""Preemption: SIGTERM / SIGUSR1 on any rank -> all ranks checkpoint at the same step boundary.

The handler only sets a flag; ``should_stop()`` all-reduces it (MAX, one tiny collective per
step) so every rank sees the same answer at the same step and they checkpoint together.
"""

from __future__ import annotations

import os
import signal

import torch
import torch.distributed as dist

# EX_TEMPFAIL: "try again later"; torchrun restarts on any non-zero exit, and SLURM/submitit
# requeue on preemption themselves. Documented in the README.
REQUEUE_EXIT_CODE = 75


class PreemptionFlag:
    def __init__(self, signals=(signal.SIGTERM, signal.SIGUSR1)) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous = {}
        for s in signals:
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test harnesses)
                pass

    def _handle(self, signum, frame) -> None:
        if self.requested:
            # a second signal (e.g. torchrun escalating while we wait in a collective on a
            # dead peer): stop now, the default way
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def should_stop(self) -> bool:
        flag = torch.tensor([1 if self.requested else 0], dtype=torch.int32)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
