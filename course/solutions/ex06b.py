"""Exercise 06b · shard by the unit of consistency: a solution (for instructors).

It passes every scenario of ``check_router`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/06_contention_sharding_solutions.ipynb.
"""

from durable_lab.exercises import check_router


def route(env, room, user):
    return env.ROOMS.getByName(room)         # one object per room: the unit of consistency


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_router(route)))
