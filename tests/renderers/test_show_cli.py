"""`python -m renderers show` prints an example's tokens with their weights."""

import json
import os
import subprocess
import sys

from renderers import get_renderer

CONVERSATION = {
    "messages": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
    ]
}


def _run_show(model_path, project_root, conversation_path, *options):
    command = [sys.executable, "-m", "renderers", "show", "--model", str(model_path), *options, str(conversation_path)]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=project_root)


def _show(model_path, project_root, tmp_path, *options, conversation=CONVERSATION):
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps(conversation))
    result = _run_show(model_path, project_root, path, *options)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_show_marks_trained_text_without_colours(qwen3_tokenizer, qwen3_tokenizer_path, project_root, tmp_path):
    out = _show(qwen3_tokenizer_path, project_root, tmp_path, "--no-color", "--tokens")

    assert "\033[" not in out
    assert "renderer: qwen3" in out  # recommended from the folder name
    assert "legend: [[text]] = trained (weight > 0), unmarked = not trained (weight 0)" in out
    assert "<|im_start|>assistant\n[[<think>\nAdd them.\n</think>\n\n4<|im_end|>]]\n" in out
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in out  # untrained, unmarked
    # the token table: index, id, weight, token
    assert "151667       1  '<think>'" in out
    assert "151644       0  '<|im_start|>'" in out
    _, weights = get_renderer("qwen3", qwen3_tokenizer).build_supervised_example(CONVERSATION["messages"])
    assert sum(weights) == 9  # "<think>", "\n", "Add", " them", ".\n", "</think>", "\n\n", "4", "<|im_end|>"
    assert out.rstrip().endswith(f"{len(weights)} tokens, 9 trained, weight sum 9")


def test_show_colours_trained_tokens_green_and_the_rest_dim(qwen3_tokenizer_path, project_root, tmp_path):
    no_thinking = [CONVERSATION["messages"][0], {"role": "assistant", "content": "4"}]  # a plain list works too
    out = _show(
        qwen3_tokenizer_path,
        project_root,
        tmp_path,
        "--renderer",
        "qwen3_disable_thinking",
        "--train-on",
        "all_messages",
        conversation=no_thinking,
    )

    assert "legend: \033[32mgreen\033[0m = trained (weight > 0), \033[2mdim\033[0m = not trained (weight 0)" in out
    assert "\033[32mWhat is 2+2?<|im_end|>\033[0m" in out
    assert "\033[2m\n<|im_start|>assistant\n<think>\n\n</think>\n\n\033[0m\033[32m4<|im_end|>\033[0m" in out


def test_show_reports_bad_input(qwen3_tokenizer_path, project_root, tmp_path):
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps([{"role": "narrator", "content": "x"}]))
    result = _run_show(qwen3_tokenizer_path, project_root, path)
    assert result.returncode != 0
    assert "does not know role 'narrator'" in result.stderr


def test_help_answers_without_loading_transformers(project_root):
    code = (
        "import sys\n"
        "from renderers.__main__ import main\n"
        "try:\n"
        "    main(['show', '--help'])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "assert 'transformers' not in sys.modules, 'show --help imported transformers'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project_root)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m renderers show" in result.stdout
    assert "--model MODEL" in result.stdout and "--train-on" in result.stdout
