"""Exercise 10 · a latency budget per region: a solution (for instructors).

It passes every scenario of ``check_placement`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/10_placement_solutions.ipynb.
"""

from durable_lab.exercises import check_placement


def route(env, room, user):
    home = room.split("/")[0]                # rooms are named "<home region>/<topic>"
    # Shard key: the room (the unit of consistency). Location: its home region, whoever
    # creates it. Only the call that creates the object reads the hint; passing it on every
    # call costs nothing and means no traveller can place the room far from its members.
    return env.ROOMS.getByName(room, locationHint=home)


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_placement(route)))
