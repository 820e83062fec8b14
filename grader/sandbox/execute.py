"""SandboxedExecute: nbgrader's Execute, run in the sandbox kernel, and hardened.

* kernel: ``SandboxKernelManager`` (bubblewrap, see kernel.py); ``sandbox=False`` keeps
  every other protection below with a plain local kernel (used to measure overhead);
* ``timeout``: wall time per cell (s); ``notebook_timeout``: wall time for the notebook;
  each cell gets ``min(timeout, what is left of notebook_timeout)``;
* a timed-out cell is interrupted (message mode: works for loops that swallow
  KeyboardInterrupt too); if the kernel does not answer within ``recover_grace`` s, or
  dies (os._exit, segfault, quit(), out of memory), a fresh sandbox kernel is started
  and the cells that ran cleanly before are replayed (their outputs are kept as they
  were), so the rest of the notebook is still graded; the failing cell gets an error
  output that says what happened. If that fails too (or the notebook time is used up)
  every remaining code cell gets an error output (0 points for its tests) and grading
  goes on with the next notebook: nbgrader never sees a dead kernel and never drops
  the notebook;
* ``max_cell_output_bytes`` and ``max_notebook_output_bytes``: output budgets, counted
  over every output message as it arrives (display updates, clear_output and widget
  messages included, so many cells or redrawn displays cannot evade them); past a
  budget the rest is dropped, with one ``[output truncated: ...]`` line naming it; the
  client also refuses single messages over ``SandboxKernelClient.max_message_bytes``;
* an error that comes from a budget (MemoryError, a full scratch disk, a file too
  large) gets a ``[budget exceeded: ...]`` line naming the budget;
* the iopub timeout that makes stock nbgrader abort a notebook is only a warning here.
* after the last cell the kernel is killed, not asked to shut down (nothing waits for it).
* a kernel that cannot start at all is the grader's failure, never the submission's (the
  kernelspec is built by the sandbox and no student code has run yet): it is noted in
  ``START_FAILURES`` and ``grader.worker.grade`` raises, so the notebook is tried again.
"""
from __future__ import annotations

import copy
import json
import time

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.client import NotebookClient
from nbformat.v4 import new_output
from traitlets import Bool, Enum, Float, Integer

from nbgrader.preprocessors import Execute

from .kernel import SandboxKernelManager

START_FAILURES: list[str] = []  # this process's kernels that could not start (see above)

TIMEOUT_ENAME = "CellTimeoutError"
_COUNTED = {"stream", "display_data", "execute_result", "update_display_data", "clear_output"}


def _mib(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB" if n else "the limit"


class SandboxedExecute(Execute):
    timeout = Integer(30, help="wall-time limit per cell, seconds").tag(config=True)
    notebook_timeout = Integer(600, help="wall-time limit per notebook, seconds").tag(config=True)
    max_cell_output_bytes = Integer(100_000, help="output bytes kept per cell").tag(config=True)
    max_notebook_output_bytes = Integer(1_000_000, help="output bytes kept per notebook").tag(
        config=True)
    recover_grace = Float(3.0, help="seconds a timed-out kernel gets to answer").tag(config=True)
    sandbox = Bool(True, help="run the kernel in bubblewrap (False: plain kernel)").tag(
        config=True)
    restart_on_failure = Bool(True, help="restart + replay after a dead/stuck kernel").tag(
        config=True)
    raise_on_iopub_timeout = Bool(False).tag(config=True)
    interrupt_on_timeout = Bool(True).tag(config=True)
    shell_timeout_interval = Integer(1).tag(config=True)
    # the kernel is disposable: killed once the last cell has replied, it saves the
    # graceful shutdown's wait, and no atexit hook of the student's code runs before
    # the verdict reads the records
    shutdown_kernel = Enum(["graceful", "immediate"], default_value="immediate").tag(
        config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.sandbox:
            self.kernel_manager_class = SandboxKernelManager

    # ---------------------------------------------------------------- timeouts
    def _get_timeout(self, cell):
        budget = getattr(self, "_cell_budget", None)
        return budget if budget else super()._get_timeout(cell)

    # ---------------------------------------------------------------- outputs
    def process_message(self, msg, cell, cell_index):
        """Count every output-bearing message (streams, displays, display updates,
        clear_output, widget messages) against the cell's and the notebook's output
        budgets; past either, drop it (errors always pass: they decide points)."""
        kind = msg["msg_type"]
        if kind not in _COUNTED and not kind.startswith("comm") or kind == "error":
            return super().process_message(msg, cell, cell_index)
        content = msg.get("content", {})
        if kind == "stream":
            size = len(content.get("text", "").encode("utf-8", "replace"))
        else:
            size = len(json.dumps(content, default=str)) + sum(
                len(b) for b in msg.get("buffers") or [])
        used = self._out_bytes.get(cell_index, 0)
        room = min(self.max_cell_output_bytes - used,
                   self.max_notebook_output_bytes - self._nb_out_bytes)
        if size <= room:
            self._out_bytes[cell_index] = used + size
            self._nb_out_bytes += size
            return super().process_message(msg, cell, cell_index)
        if cell_index in self._truncated:
            return None
        self._truncated.add(cell_index)
        if kind == "stream" and room > 0:
            msg = copy.deepcopy(msg)
            msg["content"]["text"] = msg["content"]["text"][:room]
            super().process_message(msg, cell, cell_index)
        self._out_bytes[cell_index] = used + max(room, 0)
        self._nb_out_bytes += max(room, 0)
        cell_room = self.max_cell_output_bytes - used
        if cell_room <= self.max_notebook_output_bytes - self._nb_out_bytes:
            what = (f"this cell produced more than {self.max_cell_output_bytes} bytes of "
                    "output (the output budget per cell)")
        else:
            what = (f"this notebook produced more than {self.max_notebook_output_bytes} bytes "
                    "of output (the output budget per notebook)")
        # display_data, not a stream: stream coalescing and LimitOutput would cut it
        note = new_output("display_data", data={"text/plain": f"[output truncated: {what}]"})
        cell.outputs.append(note)
        return note

    def _name_budgets(self, cell) -> None:
        """Say which budget a cell's error came from (memory, disk, file size)."""
        seen = " ".join(f"{o.get('ename', '')}: {o.get('evalue', '')}" for o in cell.outputs
                        if o.get("output_type") == "error")
        km = self.km
        notes = []
        if "MemoryError" in seen:
            notes.append(f"kernel memory ({_mib(getattr(km, 'memory_limit', 0))} address space)")
        if "No space left on device" in seen:
            notes.append(f"scratch disk ({_mib(getattr(km, 'scratch_size', 0))} working "
                         f"folder, {_mib(getattr(km, 'tmp_size', 0))} /tmp)")
        if "File too large" in seen:
            notes.append(f"file size ({_mib(getattr(km, 'fsize_limit', 0))} per file)")
        for what in notes:
            cell.outputs.append(new_output("display_data", data={
                "text/plain": f"[budget exceeded: {what}]"}))

    # ---------------------------------------------------------------- kernel
    def _start_kernel(self) -> None:
        if self.km is None:
            self.km = self.create_kernel_manager()
        self._cell_budget = None
        self.start_new_kernel()
        self.start_new_kernel_client()
        info = self.wait_for_reply(self.kc.kernel_info())
        if info is not None and "language_info" in info["content"]:
            self.nb.metadata["language_info"] = info["content"]["language_info"]
        if hasattr(self.km, "mark_processes"):
            self.km.mark_processes()

    def _start_kernel_retrying(self) -> None:
        """``_start_kernel``, once more after a pause if CPython raised SystemError. In
        Python 3.11 all threads share the AST constructor's state (python/cpython#106905):
        in a Dask worker, the thread that reports a failed task formats its traceback
        with ``ast`` while this one starts the next kernel (traitlets reads values with
        ``ast.literal_eval``), and the start fails with "AST constructor recursion depth
        mismatch"; each failure's report could then break the next try."""
        try:
            self._start_kernel()
        except SystemError as exc:
            self.log.warning("sandbox: kernel start failed (%s); trying once more", exc)
            self._stop_kernel()
            time.sleep(1)
            self._start_kernel()

    def _stop_kernel(self) -> None:
        if self.km is None:
            return
        try:
            self._cleanup_kernel()
        except Exception as e:  # noqa: BLE001 - a dying kernel must not stop grading
            self.log.warning("sandbox: kernel cleanup: %s", e)
            try:
                self.km.cleanup_resources()
            except Exception:  # noqa: BLE001
                pass
        self.km = None
        self.kc = None

    def _responsive(self, grace: float) -> bool:
        try:
            self._cell_budget = max(1, int(round(grace)))
            reply = self.wait_for_reply(self.kc.kernel_info())
            return reply is not None
        except DeadKernelError:
            return False
        except Exception:  # noqa: BLE001
            return False
        finally:
            self._cell_budget = None

    def _reap(self) -> int:
        """Kill processes the cell left behind; how many there were."""
        reap = getattr(self.km, "reap_strays", None)
        if reap is None:
            return 0
        try:
            n = reap()
        except Exception as e:  # noqa: BLE001
            self.log.warning("sandbox: reaping strays: %s", e)
            return 0
        if n:
            self.log.warning("sandbox: killed %d stray processes of the kernel", n)
        return n

    def _remaining(self) -> float:
        return self.notebook_timeout - (time.monotonic() - self._nb_start)

    def _restart_and_replay(self, upto: int) -> str | None:
        """Fresh kernel, replay the clean cells before ``upto``. None, or why it failed.
        Replayed output does not count against the output budgets a second time."""
        self._stop_kernel()
        if not self.restart_on_failure:
            return "the kernel was lost"
        try:
            self._start_kernel()
        except Exception as e:  # noqa: BLE001
            return f"the kernel could not be restarted ({type(e).__name__})"
        spent = (dict(self._out_bytes), self._nb_out_bytes, set(self._truncated))
        try:
            return self._replay(upto)
        finally:
            self._out_bytes, self._nb_out_bytes, self._truncated = spent

    def _replay(self, upto: int) -> str | None:
        for idx in self._ok_cells:
            if idx >= upto:
                break
            left = self._remaining()
            if left <= 1:
                return "the notebook time limit was reached while restarting the kernel"
            self._cell_budget = int(max(1, min(self.timeout, left)))
            shadow = copy.deepcopy(self.nb.cells[idx])
            try:
                self.execute_cell(shadow, idx, store_history=True)
            except Exception as e:  # noqa: BLE001
                return f"re-running the earlier cells failed ({type(e).__name__})"
            if any(o.get("output_type") == "error" for o in shadow.get("outputs", [])):
                return "re-running the earlier cells failed"
        self.log.warning("sandbox: kernel restarted, %d cells replayed", len(self._ok_cells))
        return None

    @staticmethod
    def _error(ename: str, evalue: str):
        return new_output("error", ename=ename, evalue=evalue,
                          traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])

    # ---------------------------------------------------------------- main loop
    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._nb_start = time.monotonic()
        self._ok_cells: list[int] = []
        self._out_bytes: dict[int, int] = {}
        self._nb_out_bytes = 0
        self._truncated: set[int] = set()
        self._cell_budget = None
        broken: str | None = None
        try:
            try:
                self._start_kernel_retrying()
            except Exception as e:  # noqa: BLE001
                broken = f"the grading kernel could not start ({type(e).__name__}: {e})"
                START_FAILURES.append(broken)
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                if broken is None and self._remaining() <= 1:
                    broken = (f"the notebook time limit ({self.notebook_timeout} s) was "
                              "reached before this cell ran")
                    self._stop_kernel()
                if broken is not None:
                    cell.outputs = [self._error("NotExecuted", f"not run: {broken}")]
                    cell.execution_count = None
                    continue
                self._cell_budget = int(max(1, min(self.timeout, self._remaining())))
                limit = self._cell_budget
                failure = None
                try:
                    self.preprocess_cell(cell, resources, index)
                except DeadKernelError:
                    failure = "died"
                except CellTimeoutError:
                    failure = "stuck"
                except Exception as e:  # noqa: BLE001 - e.g. garbled messages from forks
                    self.log.warning("sandbox: cell %d: %s: %s", index, type(e).__name__, e)
                    failure = "broken"
                finally:
                    self._cell_budget = None
                    strays = self._reap()
                if strays and not failure:
                    failure = "forked"
                outs = cell.get("outputs", [])
                timed_out = any(o.get("output_type") == "error" and o.get("ename") == TIMEOUT_ENAME
                                for o in outs)
                exceeded = getattr(self.km, "exceeded", None)
                if failure == "died" and exceeded:
                    cell.outputs = outs + [self._error(
                        "BudgetExceeded",
                        f"the kernel was stopped while running this cell: it went over the "
                        f"{exceeded} budget; the cells after it were run in a fresh kernel")]
                elif failure == "died":
                    cell.outputs = outs + [self._error(
                        "KernelDied",
                        "the Python kernel died while running this cell (os._exit, exit(), a "
                        "crash such as a segfault, or the memory limit); the cells after it "
                        "were run in a fresh kernel")]
                elif failure == "broken":
                    cell.outputs = outs + [self._error(
                        "KernelError",
                        "the kernel's messages for this cell could not be read; the cells "
                        "after it were run in a fresh kernel")]
                elif failure == "forked" and not timed_out:
                    cell.outputs = outs + [self._error(
                        "ProcessLimit",
                        f"this cell left {strays} processes running; they were killed and "
                        "the cells after it were run in a fresh kernel (grading code must "
                        "not start processes)")]
                elif timed_out or failure == "stuck":
                    cell.outputs = [o for o in outs if not (
                        o.get("output_type") == "error" and o.get("ename") in (
                            TIMEOUT_ENAME, "KeyboardInterrupt"))]
                    cell.outputs.append(self._error(
                        TIMEOUT_ENAME,
                        f"this cell was stopped after {limit} s (the time limit per cell): an "
                        "infinite loop, or code far slower than it needs to be"))
                    if failure in ("stuck", "forked") or not self._responsive(self.recover_grace):
                        failure = "stuck"
                self._name_budgets(cell)
                if failure:
                    why = self._restart_and_replay(index)
                    if why is not None:
                        broken = why
                        self._stop_kernel()
                elif not any(o.get("output_type") == "error" for o in cell.outputs):
                    self._ok_cells.append(index)
        finally:
            self._stop_kernel()
        self.set_widgets_metadata()
        return self.nb, self.resources
