"""Exercise 06b · shard by the unit of consistency: the starter that lesson 06 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_router`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab.exercises import check_router


def route(env, room, user):
    return env.ROOMS.getByName("global")     # one object for the whole chat service


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_router(route)))
