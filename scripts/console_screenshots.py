"""Regenerate the console's screenshots in docs/console/ (runs.png, run.png, server.png) from a
real server: a fresh `anvil serve` in a temporary data dir, a tiny run trained with the tinker
SDK, and Debian's Chromium (headless, through Selenium) at a laptop's window size.

    .venv/bin/python scripts/console_screenshots.py [--out docs/console]
"""

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import tinker
from selenium.webdriver.common.by import By
from tinker import types

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from console_browser import WINDOW, Console, chromium  # noqa: E402  (the tests' browser set-up)
from gateway.local_server import AnvilServer  # noqa: E402
from sdk_helpers import TINY, sft_datum  # noqa: E402

KEY, OTHER_KEY = "tml-screenshots", "tml-screenshots-colleague"
TEXT = list(range(40, 72))


def train(trainer: tinker.TrainingClient, steps: int, learning_rate: float = 5e-3) -> None:
    data = [sft_datum(TEXT), sft_datum(TEXT[::-1])]
    for _ in range(steps):
        trainer.forward_backward(data, "cross_entropy").result()
        trainer.optim_step(types.AdamParams(learning_rate=learning_rate)).result()


def sample(sampler: tinker.SamplingClient, requests: int) -> None:
    for _ in range(requests):
        sampler.sample(types.ModelInput.from_ints(TEXT[:8]), 4, types.SamplingParams(max_tokens=32)).result()


def until(done: threading.Event, work, *args) -> None:
    while not done.is_set():
        work(*args)


def stage(server: AnvilServer) -> str:
    """Runs and checkpoints to show; returns the run to open."""
    service = tinker.ServiceClient(base_url=server.base_url, api_key=KEY)
    rest = tinker.RestClient(base_url=server.base_url, api_key=KEY)
    earlier = service.create_lora_training_client(base_model=TINY, rank=8, seed=1).result()
    train(earlier, 3)
    main = service.create_lora_training_client(base_model=TINY, rank=4, seed=0, user_metadata={"recipe": "sft"}).result()
    train(main, 12)
    main.save_state("step-12").result()
    train(main, 12)
    final = main.save_weights_for_sampler("final").result().path
    rest.publish_checkpoint_from_tinker_path(final).result()
    rest.set_checkpoint_ttl_from_tinker_path(main.save_state("step-24").result().path, 7 * 24 * 3600).result()
    sample(service.create_sampling_client(model_path=final).result(), 1)

    colleague = tinker.ServiceClient(base_url=server.base_url, api_key=OTHER_KEY)
    theirs = colleague.create_lora_training_client(base_model=TINY, rank=4, seed=7).result()
    train(theirs, 2)
    shared = theirs.save_weights_for_sampler("shared-baseline").result().path
    tinker.RestClient(base_url=server.base_url, api_key=OTHER_KEY).publish_checkpoint_from_tinker_path(shared).result()
    return main.model_id


def shoot(console: Console, path: Path) -> None:
    """The whole page, at the laptop window's width."""
    width = WINDOW[0]
    console.driver.set_window_size(*WINDOW)
    for _ in range(5):  # the window's outer size is not its viewport's: grow until all of it shows
        shown, whole = console.driver.execute_script(
            "return [innerHeight, document.documentElement.scrollHeight]")
        if shown >= whole:
            break
        console.driver.set_window_size(width, console.driver.get_window_size()["height"] + whole - shown)
    time.sleep(0.5)
    console.driver.save_screenshot(str(path))
    print("wrote", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir, AnvilServer(Path(data_dir), args=["--sampler-engine", "torch"]) as server:
        run_id = stage(server)
        driver = chromium()
        try:
            console = Console(driver, server.base_url)
            console.open("/console")
            console.sign_in(KEY)
            console.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2)
            console.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#published tbody tr"))
            shoot(console, args.out / "runs.png")

            console.open(f"/console/run?id={run_id}")
            console.wait(lambda d: console.curve_points("loss:sum") == 24)
            console.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr")) == 3)
            shoot(console, args.out / "run.png")

            # training while the server page measures, so its rates are a running server's
            service = tinker.ServiceClient(base_url=server.base_url, api_key=KEY)
            busy = service.create_lora_training_client(base_model=TINY, rank=4, seed=2).result()
            sampler = service.create_sampling_client(base_model=TINY).result()
            done = threading.Event()
            workers = [threading.Thread(target=until, args=(done, train, busy, 1)),
                       threading.Thread(target=until, args=(done, sample, sampler, 1))]
            for worker in workers:
                worker.start()
            try:
                console.open("/console/server")
                time.sleep(11)
                shoot(console, args.out / "server.png")
            finally:
                done.set()
                for worker in workers:
                    worker.join()
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
