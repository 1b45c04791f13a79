"""Exercise 10 · a latency budget per region: the starter that lesson 10 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_placement`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab.exercises import check_placement


def route(env, room, user):
    return env.ROOMS.getByName("global")     # one chat object for the whole world


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_placement(route)))
