"""The bare generator in a process of its own: one prompt per line in, seconds per image out.

The fair baseline for the end-to-end benches: a generate worker also draws in its own
process, so timing the bare generator inside a bench process (with its fake servers and
threads) would compare unlike things. Settings come from the environment, as a worker's do.

    echo "a red fox --size 256x256 --steps 20 --seed 1" | python -m bench.bare
"""

from __future__ import annotations

import sys
import time

from bots.grammar import parse
from bots.limits import Limits
from generator.engine import Engine
from settings import Settings


def main() -> None:
    settings = Settings(_env_file=None)
    limits = Limits.from_settings(settings)
    engine = Engine.from_settings(settings)
    engine.warm_up()
    print("ready", flush=True)
    for line in sys.stdin:
        request = parse(line.strip(), limits)
        begin = time.perf_counter()
        engine.generate(request)
        print(f"{time.perf_counter() - begin:.6f}", flush=True)


if __name__ == "__main__":
    main()
