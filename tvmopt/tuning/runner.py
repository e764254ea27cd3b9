"""The runner role: time built candidates here (LocalRunner) or on a tracker's devices (RPCRunner)."""

from __future__ import annotations

from .._compat import derived_object, ms
from .builder import NOT_MEASURED
from .interrupt import ignore_sigint


def _evaluator(number: int, repeat: int, min_repeat_ms: int):
    return ms.runner.EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms,
                                     enable_cpu_cache_flush=False)


def local_runner(number: int, repeat: int, min_repeat_ms: int, timeout_sec: float = 30.0):
    """MetaSchedule's LocalRunner (its worker pool already persists across batches)."""
    return ms.runner.LocalRunner(timeout_sec=timeout_sec, evaluator_config=_evaluator(number, repeat, min_repeat_ms),
                                 f_alloc_argument=_alloc_arguments_local, initializer=ignore_sigint)


@derived_object
class StoppableRunner(ms.runner.PyRunner):
    """Hands candidates to `runner` one at a time and leaves the rest unmeasured once the session
    is stopping: LocalRunner.run times a whole batch before it returns, seconds a Ctrl-C would wait."""

    def __init__(self, runner, progress):
        super().__init__()
        self.runner = runner
        self.progress = progress

    def run(self, runner_inputs: list) -> list:
        from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

        futures = []
        for runner_input in runner_inputs:
            if self.progress.stopping:
                futures.append(LocalRunnerFuture(error_message=NOT_MEASURED))
            else:
                futures += list(self.runner.run([runner_input]))
        return futures


def rpc_runner(host: str, port: int, key: str, number: int, repeat: int, min_repeat_ms: int,
               max_workers: int = 1, session_timeout_sec: float = 60.0):
    """MetaSchedule's RPCRunner: candidates measured on devices registered with a TVM RPC tracker."""
    rpc = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                              session_timeout_sec=session_timeout_sec)
    return ms.runner.RPCRunner(rpc_config=rpc, evaluator_config=_evaluator(number, repeat, min_repeat_ms),
                               max_workers=max_workers, f_alloc_argument=_alloc_arguments_from_host)


def _fill_for_measure(tensor) -> None:
    """Random floats; integers 0/1, because integer inputs are often indices.

    Workaround: MetaSchedule fills int tensors with arbitrary random values; for gather/take
    kernels (every embedding lookup) those indices are out of bounds, the measuring process
    segfaults, and the task ends with no valid record at all.
    """
    import numpy as np

    dtype = np.dtype(str(tensor.dtype))
    shape = tuple(int(d) for d in tensor.shape)
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        data = rng.standard_normal(shape).astype(dtype)
    else:
        data = rng.integers(0, 2, shape).astype(dtype)
    tensor.copyfrom(data)


def _alloc_arguments_local(device, args_info, alloc_repeat: int) -> list:
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common

    return alloc_argument_common(_fill_for_measure, device, args_info, alloc_repeat)


def _alloc_arguments_from_host(session, device, args_info, alloc_repeat: int) -> list:
    """Fill candidate inputs with host-side data copied to the device.

    Workaround (besides the index problem above): RPCRunner's default asks the device for
    tvm.contrib.random, which lives in TVM's compiler library; a runtime-only device (a Pi,
    our emulated root) has none.
    """
    return _alloc_arguments_local(device, args_info, alloc_repeat)
