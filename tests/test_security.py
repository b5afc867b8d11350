"""Nothing leaks: API keys, prompt text; the exporter listens on loopback; reports escape text."""

import json

from llmcap.rundir import read_samples
from tests.conftest import run_locust

KEY = "sk-llmcap-test-7f3a9c1e55d2b8"


def all_bytes(run_dir) -> bytes:
    return b"".join(p.read_bytes() for p in run_dir.rglob("*") if p.is_file())


def test_api_key_is_used_but_never_written(stub, tmp_path):
    stub.configure(api_key=KEY, chunks=5)
    run_dir = tmp_path / "run"
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--rps",
        "10",
        "--duration",
        "3",
        "--run-dir",
        str(run_dir),
        "--api-key-env",
        "LLMCAP_TEST_KEY",
        env={"LLMCAP_TEST_KEY": KEY},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    samples, _ = read_samples(run_dir)
    assert len(samples) > 20 and (samples["status"] == 200).all()  # the key reached the server
    assert (run_dir / "report.html").exists()
    assert KEY.encode() not in all_bytes(run_dir)
    assert KEY not in run.stdout + run.stderr
    # and without the key the server refuses: the test above is not vacuous
    run = run_locust(
        "loadtest/text2sql.py", stub.url, "--rps", "5", "--duration", "1", "--run-dir", str(tmp_path / "nokey")
    )
    samples, _ = read_samples(tmp_path / "nokey")
    assert (samples["status"] == 401).all()


def test_prompt_text_is_not_stored_unless_asked(stub, tmp_path):
    stub.configure(chunks=3)
    question_fragment = b"How many books were published before 1950"  # in the shipped example data
    plain = tmp_path / "plain"
    assert (
        run_locust(
            "loadtest/text2sql.py", stub.url, "--rps", "10", "--duration", "2", "--run-dir", str(plain)
        ).returncode
        == 0
    )
    assert question_fragment not in all_bytes(plain)
    assert not (plain / "texts.jsonl").exists() and not (plain / "prompts.jsonl").exists()
    samples, _ = read_samples(plain)
    assert (samples["prompt_hash"] != 0).all() and len(set(samples["prompt_hash"])) > 1

    stored = tmp_path / "stored"
    assert (
        run_locust(
            "loadtest/text2sql.py", stub.url, "--rps", "10", "--duration", "2", "--store-text", "--run-dir", str(stored)
        ).returncode
        == 0
    )
    prompts = {json.loads(line)["prompt_hash"] for line in (stored / "prompts.jsonl").read_text().splitlines()}
    texts = [json.loads(line) for line in (stored / "texts.jsonl").read_text().splitlines()]
    samples, _ = read_samples(stored)
    assert question_fragment in (stored / "prompts.jsonl").read_bytes()
    assert set(int(h) for h in samples["prompt_hash"]) <= prompts
    assert texts and texts[0]["completion"] == "t0 t1 t2 "


def test_gpu_exporter_binds_to_loopback_by_default():
    import argparse

    from serving.gpu_exporter import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["gpu-exporter"])
    assert args.bind == "127.0.0.1"
