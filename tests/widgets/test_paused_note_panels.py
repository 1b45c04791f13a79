"""Slow motion steps by itself, so calls made meanwhile print no "press Play or Step" note;
a pause by hand afterwards does (issue 9)."""

from __future__ import annotations

import asyncio

import widgets


def notes(capsys) -> list[str]:
    out, err = capsys.readouterr()
    assert "the lab is paused" not in err  # ordinary output, never on stderr
    return [line for line in out.splitlines() if "the lab is paused" in line]


async def test_slow_motion_calls_print_no_paused_note_but_a_manual_pause_does(lab, capsys):
    stub = lab.env.COUNTER.getByName("a")
    view = widgets.watch(lab, stub, speed=20, timeline=False)
    assert lab.paused
    assert await asyncio.wait_for(stub.increment(), 20) == 1  # stepped by the slow motion
    assert notes(capsys) == []
    view.controls.play_at(10)  # a new speed: the old loop's end must not turn the note back on
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(stub.increment(), 20) == 2
    assert notes(capsys) == []
    view.full_speed()
    assert lab.scheduler.note_paused_calls
    lab.pause()
    call = stub.increment()
    assert notes(capsys) == ["the lab is paused: COUNTER:a.increment() waits until you press "
                             "Play or Step (lab.resume() / await lab.step())"]
    lab.resume()
    assert await call == 3
    view.close()
