"""advbounds.progress: a job's log gets one line per refresh and the final state once."""

from __future__ import annotations

import io

from advbounds.progress import progress_bar


def test_in_a_log_file_the_final_state_is_printed_once_and_each_refresh_is_a_line():
    stream = io.StringIO()
    bar = progress_bar(total=5, file=stream, desc="train", mininterval=0)
    for _ in range(5):
        bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert sum("5/5" in line for line in lines) == 1, text
    assert len(lines) == 6 and all(line.startswith("train:") for line in lines)


def test_an_iterable_bar_ends_with_its_final_state():
    stream = io.StringIO()
    assert list(progress_bar(range(3), file=stream, desc="x")) == [0, 1, 2]
    assert stream.getvalue().splitlines()[-1].startswith("x: 100%")


def test_a_disabled_bar_prints_nothing():
    stream = io.StringIO()
    for _ in progress_bar(range(3), file=stream, disable=True):
        pass
    assert stream.getvalue() == ""
