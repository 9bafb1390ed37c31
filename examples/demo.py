"""The main demo: start a local anvil server, fine-tune the built-in tiny model through the official
tinker SDK, sample from it, then run a few RL steps. Runs on a laptop CPU in about a minute.

    python examples/demo.py
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rl_loop  # noqa: E402
import sl_loop  # noqa: E402
from gateway.local_server import AnvilServer  # noqa: E402


def main() -> None:
    os.environ.setdefault("TINKER_API_KEY", "tml-demo")
    with tempfile.TemporaryDirectory(prefix="anvil-demo-") as data_dir:
        print(f"starting anvil serve (data in {data_dir}) ...")
        with AnvilServer(Path(data_dir)) as server:
            print(f"anvil is serving at {server.base_url}\n\n== supervised fine-tuning ==")
            sl_loop.main(server.base_url)
            print("\n== reinforcement learning ==")
            rewards = rl_loop.main(server.base_url, steps=16)
            print(f"\nmean reward: first 4 steps {sum(rewards[:4]) / 4:.3f}, last 4 steps {sum(rewards[-4:]) / 4:.3f}")


if __name__ == "__main__":
    main()
