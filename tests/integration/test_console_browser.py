"""The console in headless Chromium: a run trained here with the tinker SDK shows on the runs
page, its loss curve has one point per step and grows while the run trains (without a reload),
deleting a checkpoint on the run's page removes it from the REST listing, and another user's key
sees none of it."""

import os

import pytest
import tinker
from selenium.webdriver.common.by import By
from tinker import types

from sdk_helpers import TINY, sft_datum

ANN, BOB = "tml-browser-ann", "tml-browser-bob"


@pytest.fixture(scope="module")
def console(anvil_server):
    from console_browser import Console, chromium, chromium_installed

    if not chromium_installed():
        message = "Chromium and its driver are not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    driver = chromium()
    yield Console(driver, anvil_server.base_url)
    driver.quit()


@pytest.fixture(scope="module")
def ann(anvil_server):
    service = tinker.ServiceClient(base_url=anvil_server.base_url, api_key=ANN)
    yield service
    service.close("success").result()


def _train(trainer: tinker.TrainingClient, steps: int) -> None:
    data = [sft_datum(list(range(30, 50)))]
    for _ in range(steps):
        trainer.forward_backward(data, "cross_entropy").result()
        trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()


def _run_cells(console, run_id: str) -> list[str] | None:
    """The texts of the run's row on the runs page, None while it is not there."""
    return console.driver.execute_script(
        """const row = [...document.querySelectorAll('#runs tbody tr')].find(r => r.dataset.runId === arguments[0]);
           return row ? [...row.children].map(cell => cell.textContent) : null;""",
        run_id,
    )


def _checkpoint(checkpoint_id: str) -> str:
    return f"#checkpoints tbody tr[data-checkpoint='{checkpoint_id}']"


def test_a_run_shows_and_its_curve_grows_while_it_trains(console, ann):
    trainer = ann.create_lora_training_client(base_model=TINY, rank=4, seed=3).result()
    _train(trainer, 2)
    console.open("/console")
    console.sign_in(ANN)
    cells = console.wait(lambda d: _run_cells(console, trainer.model_id))
    assert cells[0] == trainer.model_id and cells[1] == TINY and cells[2] == "4" and cells[-1] == "loaded"
    console.wait(lambda d: _run_cells(console, trainer.model_id)[5] == "2")  # steps done

    console.click(trainer.model_id, By.LINK_TEXT)
    console.wait(lambda d: console.curve_points("loss:sum") == 2)
    assert console.curve_points("grad_norm:mean") == 2
    console.driver.execute_script("window.notReloaded = true")
    _train(trainer, 3)
    console.wait(lambda d: console.curve_points("loss:sum") == 5)
    assert console.driver.execute_script("return window.notReloaded") is True
    label = console.driver.find_element(By.CSS_SELECTOR, "#charts figure[data-metric='loss:sum'] svg").get_attribute("aria-label")
    assert label.startswith("loss:sum: 5 points") and "at step 5" in label
    assert console.driver.find_element(By.CSS_SELECTOR, "[data-fact='Steps done']").text == "5"


def test_checkpoint_actions_on_the_page_are_those_of_the_rest_api(console, ann, anvil_server):
    trainer = ann.create_lora_training_client(base_model=TINY, rank=4, seed=4).result()
    _train(trainer, 1)
    kept = trainer.save_state("browser-kept").result().path
    doomed = trainer.save_weights_for_sampler("browser-doomed").result().path
    rest = tinker.RestClient(base_url=anvil_server.base_url, api_key=ANN)
    console.open(f"/console/run?id={trainer.model_id}")
    console.sign_in(ANN)

    def shown(checkpoint_id: str) -> bool:
        return bool(console.driver.find_elements(By.CSS_SELECTOR, _checkpoint(checkpoint_id)))

    console.wait(lambda d: shown("sampler_weights/browser-doomed") and shown("weights/browser-kept"))
    console.click(_checkpoint("sampler_weights/browser-doomed") + " button.danger")
    console.driver.switch_to.alert.accept()
    console.wait(lambda d: not shown("sampler_weights/browser-doomed"))
    listed = rest.list_checkpoints(trainer.model_id).result().checkpoints
    assert [c.tinker_path for c in listed] == [kept]

    kept_row = _checkpoint("weights/browser-kept")
    console.click(f"{kept_row} button[aria-label='Publish weights/browser-kept']")
    console.wait(lambda d: d.find_element(By.CSS_SELECTOR, f"{kept_row} td:nth-of-type(5)").text == "yes")
    ttl = console.wait(lambda d: d.find_element(By.CSS_SELECTOR, f"{kept_row} form.ttl input"))
    ttl.send_keys("3600")
    console.click(f"{kept_row} form.ttl button[type=submit]")
    console.wait(lambda d: d.find_element(By.CSS_SELECTOR, f"{kept_row} td:nth-of-type(4)").text != "never")
    (listed,) = rest.list_checkpoints(trainer.model_id).result().checkpoints
    assert listed.public and listed.expires_at is not None


def test_another_users_key_sees_none_of_it(console, ann, anvil_server):
    """...but what Ann published, listed apart as others' checkpoints."""
    trainer = ann.create_lora_training_client(base_model=TINY, rank=4, seed=5).result()
    _train(trainer, 1)
    trainer.save_state("browser-private").result()
    shared = trainer.save_weights_for_sampler("browser-shared").result().path
    tinker.RestClient(base_url=anvil_server.base_url, api_key=ANN).publish_checkpoint_from_tinker_path(shared).result()
    console.open("/console")
    console.sign_in(BOB)
    console.wait(lambda d: console.driver.find_element(By.ID, "runs-empty").is_displayed())
    assert console.driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr") == []
    console.wait(lambda d: shared in console.texts("#published tbody th"))
    assert not [path for path in console.texts("#published tbody th") if "browser-private" in path]
    console.open(f"/console/run?id={trainer.model_id}")
    notice = console.wait(lambda d: d.find_element(By.ID, "notice").text)
    assert "not found" in notice
    assert console.driver.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr") == []
    assert console.curve_points("loss:sum") == 0
    assert trainer.model_id not in console.driver.find_element(By.ID, "content").text.replace(
        console.driver.find_element(By.ID, "run-id").text, "")


def test_a_refused_key_keeps_the_sign_in_form(console):
    console.open("/console")
    console.driver.execute_script("sessionStorage.clear()")
    console.driver.refresh()
    field = console.wait(lambda d: d.find_element(By.ID, "api-key"))
    field.send_keys("not-a-key")
    console.driver.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    error = console.wait(lambda d: d.find_element(By.ID, "signin-error").text)
    assert "X-API-Key" in error
    assert not console.driver.find_element(By.ID, "content").is_displayed()
