"""Progress bars that read well in a terminal and in a job's log file.

In a terminal this is tqdm's bar. In a log file (a Snakemake job's stderr goes to its log), tqdm
would write every refresh after a carriage return, all on one physical line, and print the final
state twice (once at the last update, once more on ``close``). Here each refresh is a line of its
own, at most every ``mininterval`` seconds (default 10), and the final state is printed once.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class progress_bar(tqdm):  # noqa: N801 - used like tqdm, whose name is lower case too
    """``tqdm`` with line-per-refresh output when the stream is not a terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        stream = kwargs.setdefault("file", sys.stderr)
        self._to_terminal = bool(getattr(stream, "isatty", lambda: False)())
        self._shown_n: float | None = None
        if not self._to_terminal:
            kwargs.setdefault("mininterval", 10.0)
        kwargs.setdefault("dynamic_ncols", self._to_terminal)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self._to_terminal:
            return super().display(msg, pos)
        if msg == "" or self.n == self._shown_n:  # a clear, or the state already printed
            return False
        self._shown_n = self.n
        self.fp.write(f"{self.__str__() if msg is None else msg}\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if self.disable or self._to_terminal:
            return super().close()
        self.display()  # the final state, unless the last update printed it already
        self.leave = False
        return super().close()
