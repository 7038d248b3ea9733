"""The value function's regression: minibatch Adam on 0.5 (V(s) - R)^2, here or in a process.

``fit_value`` is the regression itself. ``BackgroundFit`` runs it in a second process on
weights in shared memory, so that the fit on batch k overlaps the collection of batch k+1:
acting needs only the policy, and the values of batch k+1 are computed after its collection,
so waiting for the fit there gives the same result as fitting before collecting. The caller
draws the epochs' permutations, in the same order either way, so both give the same weights
bit for bit (tested).
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import torch
import torch.multiprocessing as mp
from torch import Tensor

from trpo_ng import backprop
from trpo_ng.adam import Adam
from trpo_ng.policies import ValueFunction


def fit_value(
    value_fn: ValueFunction,
    optimizer: Adam,
    obs_BD: Tensor,
    ret_B: Tensor,
    perms: Sequence[Tensor],
    *,
    minibatch_size: int,
    lr: float,
) -> float:
    """One Adam step per minibatch of each permutation in ``perms`` (an epoch each); returns
    the mean loss of the last epoch.

    With an encoder without weights (everything but the CNN) the features are computed once
    and the MLP's gradient by hand (``trpo_ng.backprop``), the same gradient at a third of
    autograd's cost on small minibatches; otherwise by autograd."""
    net = value_fn.net
    by_hand = backprop.supports(net) and not any(True for _ in value_fn.encoder.parameters())
    if by_hand:
        with torch.no_grad():
            obs_BD = value_fn.features(obs_BD)
    losses: list[Tensor] = []
    for perm in perms:
        losses = []
        for idx_b in perm.split(minibatch_size):
            obs_bD, ret_b = obs_BD[idx_b], ret_B[idx_b]
            if by_hand:
                loss, grads = backprop.squared_error_and_grad(net, obs_bD, ret_b)
            else:
                loss = 0.5 * (value_fn(obs_bD) - ret_b).square().mean()
                grads = list(torch.autograd.grad(loss, optimizer.params))
            optimizer.step(grads, lr)
            losses.append(loss.detach())
    return float(torch.stack(losses).mean()) if losses else 0.0


# Linux: fork, the child starts at once and shares the trainer's pages, and a script needs no
# `if __name__ == "__main__":` guard. Elsewhere fork is unsafe; spawn imports torch (a second or
# two) and re-imports the main script, which then needs that guard.
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
GUARD_HINT = ', or a script without `if __name__ == "__main__":`'


class BackgroundFit:
    """``fit_value`` in a child process, on ``value_fn``'s and ``optimizer``'s tensors moved
    to shared memory. ``submit`` starts a fit and returns at once; ``wait`` blocks until it is
    done and returns its loss. Nothing may read or write the weights between the two.

    The process starts at the first ``submit`` and ends with ``close``. Until it is up (a fork
    at once, a spawn after importing torch), ``submit`` fits here, so no batch waits for it;
    the result is the same either way."""

    def __init__(self, value_fn: ValueFunction, optimizer: Adam) -> None:
        self.value_fn, self.optimizer = value_fn, optimizer
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        self._ready = False
        self._done_here: float | None = None  # the loss of a fit that ran in this process
        self.pending = False

    def start(self) -> None:
        """Start the process now, if it is not running (``submit`` starts it otherwise)."""
        if self._conn is None:
            self._conn = self._launch()

    def _launch(self) -> Connection:
        self.value_fn.share_memory()
        for t in (*self.optimizer.exp_avg, *self.optimizer.exp_avg_sq, *self.optimizer.steps):
            t.share_memory_()
        ctx = mp.get_context(START_METHOD)
        parent, child = ctx.Pipe()
        args = (child, parent, self.value_fn, self.optimizer)
        self._process = ctx.Process(target=_serve, args=args, daemon=True, name="trpo-ng-value")
        self._process.start()
        child.close()
        return parent

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the process has started and takes fits (waiting up to ``timeout`` s)."""
        if not self._ready and self._conn is not None and self._conn.poll(timeout):
            self._receive()  # its hello
            self._ready = True
        return self._ready

    def submit(
        self,
        obs_BD: Tensor,
        ret_B: Tensor,
        perms: Sequence[Tensor],
        *,
        minibatch_size: int,
        lr: float,
    ) -> None:
        if self.pending:
            raise RuntimeError("a value fit is already running; wait() for it first")
        self.start()
        if self.ready() and perms:  # no epochs: nothing to hand over
            assert self._conn is not None
            arrays = (obs_BD.numpy(), ret_B.numpy(), torch.stack(list(perms)).numpy())
            self._conn.send((*arrays, minibatch_size, lr))
        else:
            self._done_here = fit_value(
                self.value_fn,
                self.optimizer,
                obs_BD,
                ret_B,
                perms,
                minibatch_size=minibatch_size,
                lr=lr,
            )
        self.pending = True

    def wait(self) -> float:
        if not self.pending:
            raise RuntimeError("no value fit is running")
        self.pending = False
        if self._done_here is not None:
            loss, self._done_here = self._done_here, None
            return loss
        return self._receive()

    def _receive(self) -> float:
        assert self._conn is not None
        try:
            ok, result = self._conn.recv()
        except (EOFError, OSError):
            self.close()
            hint = "" if START_METHOD == "fork" else GUARD_HINT
            raise RuntimeError(
                f"the value-fit process died (killed, out of memory?{hint})"
            ) from None
        if not ok:
            raise RuntimeError(f"the value fit failed in its process:\n{result}")
        return result

    def close(self) -> None:
        """Ends the process (after a running fit, which is then lost: ``wait`` first)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
            self._process = None
        self._ready, self._done_here, self.pending = False, None, False


def _serve(
    conn: Connection, trainers_end: Connection, value_fn: ValueFunction, optimizer: Adam
) -> None:
    """The child: says hello, then fits on every message until the pipe closes; answers
    (ok, loss or error). One torch thread: a forked child must not start OpenMP threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    trainers_end.close()  # else the trainer closing its end would not end this loop
    torch.set_num_threads(1)
    conn.send((True, 0.0))
    while True:
        try:
            obs, ret, perms, minibatch_size, lr = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = (
                True,
                fit_value(
                    value_fn,
                    optimizer,
                    torch.from_numpy(obs),
                    torch.from_numpy(ret),
                    list(torch.from_numpy(perms)),
                    minibatch_size=minibatch_size,
                    lr=lr,
                ),
            )
        except Exception:
            answer = False, traceback.format_exc()
        try:
            conn.send(answer)
        except OSError:  # the trainer closed the pipe without waiting
            return
