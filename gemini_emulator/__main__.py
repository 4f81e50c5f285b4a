"""``python -m gemini_emulator --port N --policy F``: run the emulator until interrupted.

A port that cannot be bound (in use, or privileged) is one line on stderr and exit 1."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import sys
from pathlib import Path

from gemini_emulator.policy import Policy
from gemini_emulator.server import Emulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gemini_emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument(
        "--policy", type=Path, help="policy JSON file (see gemini_emulator/policy.py)"
    )
    parser.add_argument("--api-key", help="accept only this API key (default: any non-empty)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        policy = Policy.from_file(args.policy) if args.policy else Policy()
    except (OSError, ValueError) as e:
        parser.error(f"--policy {args.policy}: {e}")
    try:
        emulator = Emulator(policy, port=args.port, api_key=args.api_key)
    except (OSError, OverflowError) as e:
        in_use = isinstance(e, OSError) and e.errno == errno.EADDRINUSE
        reason = "port in use" if in_use else getattr(e, "strerror", None) or str(e)
        print(f"gemini emulator: cannot listen on 127.0.0.1:{args.port}: {reason}", file=sys.stderr)
        sys.exit(1)
    print(f"gemini emulator listening on {emulator.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        emulator.serve_forever()


if __name__ == "__main__":
    main()
