#!/usr/bin/env python3
"""make_small_model.py --full with the random tensors drawn in parallel processes.

The same file, byte for byte: make_small_model.make_full still plans the
tensors, writes them (st_stream, in name order, with its metadata), reads a few
back and writes the .json description. Only its random_weight calls are
answered from a pool of processes that run the same random_weight ahead of the
writer, in the writer's order; every tensor has its own generator seeded from
its name, so the process that draws it does not change its values. The
read-back check (verify_full) runs after the writer and gets the serial
random_weight, so it compares the file with serial draws.

scripts/gpu-check.sh uses it on the device machine (16 cores), where the
serial writer would spend a minute on one core; the equality with
make_small_model.py --full was checked on the whole 6.9 GB file
(docs/gpu-check.md).

Run: python tools/reference/make_full_parallel.py [PATH] [--jobs N]
"""

import argparse
import collections
import multiprocessing
import os
import sys
import time

import torch

import make_small_model as M

SERIAL_RANDOM_WEIGHT = M.random_weight


def _draw(item):
    name, shape = item
    return name, SERIAL_RANDOM_WEIGHT(name, shape).numpy()


def _one_thread():
    torch.set_num_threads(1)


def drawn_ahead(pool, items, window):
    """pool's _draw of items, in order, with at most `window` tensors in flight."""
    items = iter(items)
    pending = collections.deque(pool.apply_async(_draw, (it,)) for _, it in zip(range(window), items))
    while pending:
        done = pending.popleft().get()
        nxt = next(items, None)
        if nxt is not None:
            pending.append(pool.apply_async(_draw, (nxt,)))
        yield done


def make_full(path, jobs):
    serial_plan_full = M.plan_full
    with multiprocessing.get_context("spawn").Pool(jobs, initializer=_one_thread) as pool:
        ahead = {}

        def plan_full():
            models, shapes, cfgs = serial_plan_full()
            ahead["it"] = drawn_ahead(pool, ((n, shapes[n]) for n in sorted(shapes)), 2 * jobs)
            return models, shapes, cfgs

        def random_weight(name, shape):
            nxt = next(ahead["it"], None) if "it" in ahead else None
            if nxt is None:  # the writer is done: the read-back check draws serially
                return SERIAL_RANDOM_WEIGHT(name, shape)
            if nxt[0] != name:
                raise RuntimeError(f"drawn {nxt[0]} but the writer asks for {name}")
            return torch.from_numpy(nxt[1])

        M.plan_full, M.random_weight = plan_full, random_weight
        try:
            M.make_full(path)
        finally:
            M.plan_full, M.random_weight = serial_plan_full, SERIAL_RANDOM_WEIGHT


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", nargs="?", default=M.DEFAULT_FULL)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: every core)")
    args = ap.parse_args()
    torch.manual_seed(M.SEED)  # as make_small_model.main
    t0 = time.time()
    make_full(args.path, max(1, args.jobs))
    print(f"{args.jobs} processes, {time.time() - t0:.1f} s in all")


if __name__ == "__main__":
    sys.exit(main())
