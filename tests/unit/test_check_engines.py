"""scripts/check_engines.py (``make check-engines``), tested on small fixture texts.

The check itself reads the engines' wheels; these tests give it a few lines of argparse and click
code instead, so what it finds and what it calls MISSING is pinned without any download: option
declarations per function, the split of a command into its program and subcommand words,
``not checked`` (never a pass) when no release is reachable, the pip argv, the doc update, and
SGLang's data path run on a stand-in of ``bench_serving.py`` that downloads exactly when the
real one does. Where ``make check-engines`` has already cached the pinned SGLang wheel, the data
path is also run on the real source: the shipped command must pass, the old one (no
``--dataset-path``) must be caught downloading.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from llem_cli.templates import BACKENDS, SERVING
from llem_testkit.engine import skip_unless_possible
from llem_testkit.scripts import load_file

ROOT = Path(__file__).resolve().parents[2]


ce = load_file(ROOT / "scripts" / "check_engines.py")

ARGPARSE = textwrap.dedent(
    """
    import argparse

    class BenchArgs:
        @staticmethod
        def add_cli_args(parser):
            parser.add_argument("--num-prompts", type=int)
            group = parser.add_argument_group("data")
            group.add_argument(
                "--dataset-name", choices=["random"]
            )
            parser.add_argument("-o", "--out")
            parser.add_argument(f"--{'built'}-at-run-time")

    def add_cli_args(parser):
        parser.add_argument("--model")

    def unrelated(parser):
        parser.add_argument("--elsewhere")
    """
)

CLICK = textwrap.dedent(
    """
    import click
    from click_option_group import optgroup

    @click.group(name="bench")
    @click.option("--model", "-m", required=True)
    def main(model):
        pass

    @click.command(name="throughput")
    @optgroup.group("Engine")
    @optgroup.option("--max_batch_size", type=int)
    @click.option("--report_json")
    def throughput_command(**params):
        pass
    """
)


# --- option declarations --------------------------------------------------------------------------


def test_argparse_options_are_found_in_their_function_only() -> None:
    found = ce.declared_options(ARGPARSE, "bench.py", "BenchArgs.add_cli_args")
    assert set(found) == {"--num-prompts", "--dataset-name", "-o", "--out"}
    assert found["--dataset-name"].line == 10  # the line of the string, in a multi-line call
    assert found["--num-prompts"].render() == "bench.py:7 (BenchArgs.add_cli_args)"
    assert set(ce.declared_options(ARGPARSE, "bench.py", "add_cli_args")) == {"--model"}


def test_an_option_built_at_run_time_is_never_found() -> None:
    """Only literals count: what the text does not show cannot pass."""
    found = ce.declared_options(ARGPARSE, "bench.py", "BenchArgs.add_cli_args")
    assert not any("built" in option for option in found)


def test_click_options_are_found_in_the_decorators() -> None:
    assert set(ce.declared_options(CLICK, "cli.py", "main")) == {"--model", "-m"}
    found = ce.declared_options(CLICK, "cli.py", "throughput_command")
    assert set(found) == {"--max_batch_size", "--report_json"}
    assert found["--report_json"].line == 13


def test_a_function_that_moved_is_a_failure_not_an_empty_parser() -> None:
    with pytest.raises(ce.ScopeMissing):
        ce.declared_options(ARGPARSE, "bench.py", "ServerArgs.add_cli_args")
    with pytest.raises(ce.ScopeMissing):
        ce.declared_options(ARGPARSE, "bench.py", "BenchArgs.gone")


# --- a command, cut into its program and subcommand words -----------------------------------------

SCRIPT = ce.Stage("/llem/scripts/prep.py", own=True)
GROUP = ce.Stage("bench")
SUB = ce.Stage("throughput")


def test_options_belong_to_the_word_before_them() -> None:
    argv = ["python3", "/llem/scripts/prep.py", "--out", "{experiment_dir}/d.jsonl", "--",
            "bench", "--model", "{model}", "throughput", "--max_batch_size=8", "--report_json",
            "r.json", "--", "-x"]  # fmt: skip
    pairs = ce.options_by_stage(argv, [SCRIPT, GROUP, SUB])
    assert [(stage.word, option) for stage, option in pairs] == [
        ("/llem/scripts/prep.py", "--out"),
        ("bench", "--model"),
        ("throughput", "--max_batch_size"),  # --flag=value: the flag
        ("throughput", "--report_json"),
    ]  # "python3" before the first word and "-x" after a "--" are no stage's options


@pytest.mark.parametrize("item", ["-1", "-0.5", "-", "--", "{model}", "random"])
def test_values_are_not_options(item: str) -> None:
    assert ce.options_by_stage(["throughput", "--ratio", item], [SUB]) == [(SUB, "--ratio")]


def test_a_command_without_a_needed_word_is_reported() -> None:
    with pytest.raises(ce.StageNotFound, match="throughput"):
        ce.options_by_stage(["bench", "--model", "m"], [GROUP, SUB])


@pytest.mark.parametrize("label", list(ce.ENGINES))
def test_every_shipped_command_has_its_engines_words(label: str) -> None:
    """The stage lists in check_engines.py match the commands llem ships (no download)."""
    engine = ce.ENGINES[label]
    mine = ce.commands_of(engine, ce.shipped_commands())
    assert mine, label
    for command in mine:
        assert ce.options_by_stage(command.argv, engine.stages), command.origin


def test_shipped_commands_cover_the_templates_and_the_campaigns() -> None:
    origins = {(c.backend, c.origin, c.part) for c in ce.shipped_commands()}
    for backend in BACKENDS:
        assert (backend, "llem init template", "command") in origins
        assert (backend, "campaigns/engines-compare.yaml", "command") in origins
        assert (backend, "campaigns/smoke.yaml", "command") in origins
    for serving in SERVING.values():  # the server and its client, template and campaign
        for origin in ("llem init template", "campaigns/serving-sweep.yaml"):
            assert (serving.name, origin, "serve") in origins
            assert (serving.name, origin, "command") in origins


def test_every_serving_argv_has_an_engine_entry() -> None:
    """Each serving backend's serve and command is checked, labelled as in the campaign."""
    entries = {(e.backend, e.part) for e in ce.ENGINES.values()}
    for serving in SERVING.values():
        assert {(serving.name, "serve"), (serving.name, "command")} <= entries
        assert f"{serving.name}.serve" in ce.ENGINES and f"{serving.name}.command" in ce.ENGINES


def test_versions_come_from_the_image_tags() -> None:
    assert ce.pinned_version(ce.ENGINES["vllm"]) == "0.10.1.1"
    assert ce.pinned_version(ce.ENGINES["sglang"]) == "0.4.6.post4"
    assert ce.pinned_version(ce.ENGINES["tensorrt"]) == "1.0.0"
    assert ce.pinned_version(ce.ENGINES["pytorch"]) is None  # llem's own script
    # a serving backend runs on its engine's service, so its engine's image pins it
    assert ce.pinned_version(ce.ENGINES["vllm-serve.serve"]) == "0.10.1.1"
    assert ce.pinned_version(ce.ENGINES["sglang-serve.command"]) == "0.4.6.post4"
    assert ce.pinned_version(ce.ENGINES["tensorrt-serve.serve"]) == "1.0.0"


# --- the check, on a fixture release --------------------------------------------------------------


def _release(tmp_path: Path, files: dict[str, str]) -> Any:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return ce.FolderSource(tmp_path, "fixture")


ENGINE = ce.Engine(
    "fake",
    (
        ce.Stage(
            "bench", ("cli.py::main",), (ce.Evidence("cli.py", r'@click\.group\(name="bench"'),)
        ),
        ce.Stage("throughput", ("cli.py::throughput_command",)),
    ),
    distribution="fake",
)


def test_found_and_missing_options_each_get_a_line(tmp_path: Path) -> None:
    release = _release(tmp_path, {"cli.py": CLICK})
    command = ce.Command("fake", "campaigns/x.yaml", ("bench", "--model", "m", "throughput",
                                                       "--max_batch_size", "8", "--max-batch-size",
                                                       "8", "--model", "m"))  # fmt: skip
    report = ce.Report()
    ce.check_engine(ENGINE, [command, command], release, release, report)
    text = "\n".join(report.lines)
    assert (report.found, report.missing, report.failed) == (3, 2, 0)  # seen once per command
    assert "`bench`" in text and "cli.py:5" in text
    assert "--max_batch_size" in text and "cli.py:12 (throughput_command)" in text
    missing = [line for line in report.lines if "MISSING" in line]
    assert len(missing) == 2
    assert any(
        "--max-batch-size" in line for line in missing
    )  # click is literal: no dash/underscore
    assert any("--model" in line and "after `throughput`" in line for line in missing)


def test_no_release_means_not_checked_never_found(tmp_path: Path) -> None:
    command = ce.Command("fake", "t", ("bench", "--model", "m", "throughput", "--report_json", "r"))
    report = ce.Report()
    ce.check_engine(ENGINE, [command], None, ce.FolderSource(tmp_path, "x"), report)
    assert (report.found, report.missing, report.failed) == (0, 0, 0)
    assert len(report.lines) == 3 and all(
        "not checked: no source reachable" in line for line in report.lines
    )


DATACLASS_CLI = textwrap.dedent(
    """
    import argparse

    class FrontendArgs:
        port: int = 8000

        @staticmethod
        def add_cli_args(parser):
            for key, value in get_kwargs(FrontendArgs).items():
                parser.add_argument(f"--{key.replace('_', '-')}", **value)
    """
)
DERIVED = ce.Engine(
    "fake",
    (
        ce.Stage(
            "serve",
            ("cli.py::FrontendArgs.add_cli_args",),
            derived=(
                (
                    "--port",
                    (
                        ce.Evidence("cli.py", r"^\s+port: int = 8000$"),
                        ce.Evidence("cli.py", r"add_argument\(f\"--\{key"),
                    ),
                ),
                ("--host", (ce.Evidence("cli.py", r"^\s+host: str"),)),
            ),
        ),
    ),
    distribution="fake",
)


def test_an_option_built_at_run_time_counts_only_with_every_line_that_builds_it(
    tmp_path: Path,
) -> None:
    """vLLM's `--port` (a dataclass field) and `--no-...` (BooleanOptionalAction) are no
    literals: `derived` names the lines that build them; one line gone is MISSING, not found."""
    release = _release(tmp_path, {"cli.py": DATACLASS_CLI})
    report = ce.Report()
    command = ce.Command("fake", "t", ("serve", "--port", "8000", "--host", "h", "--other", "x"))
    ce.check_engine(DERIVED, [command], release, release, report)
    assert (report.found, report.missing) == (1, 2), report.lines
    (derived,) = [line for line in report.lines if " derived " in line]
    assert "--port" in derived and "cli.py:5, cli.py:10" in derived
    missing = [line for line in report.lines if "MISSING" in line]
    assert any("--host" in line for line in missing)  # its building line is not there
    assert any("--other" in line for line in missing)  # neither literal nor derived


def test_a_parser_function_gone_from_the_release_fails(tmp_path: Path) -> None:
    release = _release(tmp_path, {"cli.py": "def main():\n    pass\n"})
    report = ce.Report()
    command = ce.Command("fake", "t", ("bench", "throughput"))
    ce.check_engine(ENGINE, [command], release, release, report)
    assert report.failed == 1 and "function not in the file" in "\n".join(report.lines)
    assert report.missing == 1  # the group's evidence line is gone too


@pytest.mark.parametrize("label", list(ce.ENGINES))
def test_llems_own_scripts_declare_every_option_the_shipped_commands_give_them(
    label: str,
) -> None:
    """The part of the check that needs no release: llem's mounted scripts' parse_args."""
    report = ce.Report()
    engine = ce.ENGINES[label]
    commands = ce.commands_of(engine, ce.shipped_commands())
    ce.check_engine(engine, commands, None, ce.FolderSource(ROOT, "checkout"), report)
    assert report.missing == 0 and report.failed == 0, "\n".join(report.lines)
    assert report.found == sum(" found " in line for line in report.lines)


# --- fetching -------------------------------------------------------------------------------------


def test_the_wheel_is_downloaded_without_dependencies(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        (tmp_path / "sglang-0.4.6.post4-py3-none-any.whl").write_bytes(_empty_zip())
        return subprocess.CompletedProcess(argv, 0, "", "")

    fetched = ce.fetch_wheel("sglang", "0.4.6.post4", tmp_path, False, runner)
    assert fetched.source is not None and "sglang-0.4.6.post4" in fetched.source.label
    (argv,) = calls
    assert argv[1:4] == ["-m", "pip", "download"] and "--no-deps" in argv
    assert "--only-binary=:all:" in argv and argv[-1] == "sglang==0.4.6.post4"
    assert argv[argv.index("--dest") + 1] == str(tmp_path)
    again = ce.fetch_wheel("sglang", "0.4.6.post4", tmp_path, False, runner)
    assert again.source is not None and len(calls) == 1  # the cache is used, pip is not run


def test_no_wheel_is_a_reason_not_a_pass(tmp_path: Path) -> None:
    def runner(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "ERROR: No matching distribution found\n")

    fetched = ce.fetch_wheel("tensorrt_llm", "1.0.0", tmp_path, False, runner)
    assert fetched.source is None
    assert fetched.tried == [
        "PyPI: no wheel of tensorrt_llm==1.0.0 (ERROR: No matching distribution found)"
    ]
    offline = ce.fetch_wheel("tensorrt_llm", "1.0.0", tmp_path, True, runner)
    assert offline.source is None and "--offline" in offline.tried[0]


def test_release_files_fetched_from_a_tag_are_the_checked_ones() -> None:
    assert ce.release_paths(ce.ENGINES["tensorrt"]) == [
        "tensorrt_llm/commands/bench.py",
        "tensorrt_llm/bench/benchmark/throughput.py",
    ]


def test_a_tag_folder_serves_an_entry_only_when_all_its_files_are_there(tmp_path: Path) -> None:
    """`tensorrt` and `tensorrt-serve.*` share the tag's folder but read different files: one
    entry's files being there must not pass another's as fetched (no network: --offline)."""
    folder = tmp_path / "NVIDIA+TensorRT-LLM@v1.0.0" / "tensorrt_llm" / "commands"
    folder.mkdir(parents=True)
    (folder / "bench.py").write_text("# bench\n")
    repo, tag = "NVIDIA/TensorRT-LLM", "v1.0.0"
    ready = ce.fetch_github(repo, tag, ["tensorrt_llm/commands/bench.py"], tmp_path, True)
    assert ready.source is not None
    assert ready.source.read("tensorrt_llm/commands/bench.py") == "# bench\n"
    paths = ce.release_paths(ce.ENGINES["tensorrt-serve.serve"])
    assert paths == ["tensorrt_llm/commands/serve.py"]
    other = ce.fetch_github(repo, tag, paths, tmp_path, True)
    assert other.source is None and "not in the cache (--offline)" in other.tried[0]


def _empty_zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sglang/__init__.py", "")
    return buffer.getvalue()


def test_update_doc_replaces_only_the_marked_block(tmp_path: Path) -> None:
    doc = tmp_path / "engines.md"
    doc.write_text(f"# head\n{ce.DOC_BEGIN}\nold\n{ce.DOC_END}\ntail\n")
    ce.update_doc(doc, ["line 1", "line 2"])
    ce.update_doc(doc, ["line 1", "line 2"])  # idempotent
    assert (
        doc.read_text()
        == f"# head\n{ce.DOC_BEGIN}\n```text\nline 1\nline 2\n```\n{ce.DOC_END}\ntail\n"
    )


# --- SGLang's data path ---------------------------------------------------------------------------

SERVING_SOURCE = textwrap.dedent(
    """
    import os
    from typing import List, Tuple

    def download_and_cache_file(url, filename=None):
        raise AssertionError("the check replaces this")

    def get_dataset(args, tokenizer):
        if args.dataset_name.startswith("random"):
            return sample_random_requests(
                input_len=args.random_input_len,
                output_len=args.random_output_len,
                num_prompts=args.num_prompts,
                range_ratio=args.random_range_ratio,
                tokenizer=tokenizer,
                dataset_path=args.dataset_path,
            )
        raise ValueError(args.dataset_name)

    def sample_random_requests(input_len: int, output_len: int, num_prompts: int,
                               range_ratio: float, tokenizer: "Tok", dataset_path: str,
                               ) -> List[Tuple[str, int, int]]:
        low_in, low_out = max(int(input_len * range_ratio), 1), int(output_len * range_ratio)
        input_lens = np.random.randint(low_in, input_len + 1, size=num_prompts)
        output_lens = np.random.randint(low_out, output_len + 1, size=num_prompts)
        if not os.path.isfile(dataset_path):
            dataset_path = download_and_cache_file(SHAREGPT_URL)
        with open(dataset_path) as f:
            dataset = json.load(f)
        random.shuffle(dataset)
        out = []
        for i, data in enumerate(dataset[:num_prompts]):
            ids = tokenizer.encode(data["conversations"][0]["value"])
            ids = (ids * input_lens[i])[: input_lens[i]]
            out.append((tokenizer.decode(ids), int(input_lens[i]), int(output_lens[i])))
        print(np.sum(input_lens))
        return out
    """
)

OFFLINE = textwrap.dedent(
    """
    import dataclasses

    @dataclasses.dataclass
    class BenchArgs:
        dataset_name: str = "sharegpt"
        dataset_path: str = ""
        num_prompts: int = 1000
        random_range_ratio: float = 0.0
        seed: int = 1

    def throughput_test(server_args, bench_args):
        warmup_requests = sample_random_requests(
            input_len=256,
            output_len=16,
            num_prompts=min(bench_args.num_prompts, 16),
            range_ratio=1.0,
            tokenizer=tokenizer,
            dataset_path=bench_args.dataset_path,
        )
    """
)

SHIPPED_SGLANG = ce.Command("sglang", "llem init template", BACKENDS["sglang"].command)
#: the command as shipped before issue 12: no prompts file, so SGLang would fetch ShareGPT
WITHOUT_FILE = ce.Command("sglang", "old", (
    "python3", "-m", "sglang.bench_offline_throughput", "--model-path", "{model}",
    "--dataset-name", "random", "--num-prompts", "{num_prompts}", "--random-input-len",
    "{input_len}", "--random-output-len", "{output_len}", "--random-range-ratio", "1.0",
))  # fmt: skip
WORKLOAD = ce.Workload("campaigns/x.yaml", 20, 32, 8)


def test_shipped_sglang_command_samples_from_its_own_file(tmp_path: Path) -> None:
    release = _release(tmp_path, {ce.BENCH_SERVING: SERVING_SOURCE, ce.OFFLINE: OFFLINE})
    report = ce.Report()
    ce.check_sglang_data(release, SHIPPED_SGLANG, WORKLOAD, report)
    assert (report.found, report.failed) == (1, 0), report.lines
    (line,) = report.lines
    assert "20 requests of 32 -> 8 tokens" in line
    assert "warm-up (sglang/bench_offline_throughput.py:13) 16 of 256 -> 16" in line
    assert "(sampled, not run: --skip-warmup)" in line  # the shipped command skips it
    assert "no download" in line


def test_a_sglang_command_without_a_file_is_caught_downloading(tmp_path: Path) -> None:
    release = _release(tmp_path, {ce.BENCH_SERVING: SERVING_SOURCE, ce.OFFLINE: OFFLINE})
    report = ce.Report()
    ce.check_sglang_data(release, WITHOUT_FILE, WORKLOAD, report)
    assert report.failed == 1 and "tried a download" in report.lines[0]


def test_lifted_code_that_opens_a_socket_fails_the_check(tmp_path: Path) -> None:
    sneaky = SERVING_SOURCE.replace(
        "    with open(dataset_path) as f:",
        "    import urllib.request\n    urllib.request.urlopen('http://example.invalid/x')\n"
        "    with open(dataset_path) as f:",
    )
    release = _release(tmp_path, {ce.BENCH_SERVING: sneaky, ce.OFFLINE: OFFLINE})
    report = ce.Report()
    ce.check_sglang_data(release, SHIPPED_SGLANG, WORKLOAD, report)
    assert report.failed == 1 and "FAILED" in report.lines[0]


def _sglang_wheel() -> Path:
    """The pinned sglang wheel: make check-engines' cache, else downloaded into it (1.3 MB from
    PyPI, the one registry these machines reach); a test never skips for want of it in CI."""
    fetched = ce.fetch_wheel("sglang", "0.4.6.post4", ROOT / ".cache" / "engines", offline=False)
    if fetched.source is None:
        skip_unless_possible(f"no sglang 0.4.6.post4 wheel: {'; '.join(fetched.tried)}")
    assert isinstance(fetched.source, ce.WheelSource)
    return fetched.source.path


def test_the_pinned_sglang_sampler_on_the_shipped_and_the_old_command() -> None:
    release = ce.WheelSource(_sglang_wheel())
    shipped, old = ce.Report(), ce.Report()
    ce.check_sglang_data(
        release, SHIPPED_SGLANG, ce.Workload("campaigns/x.yaml", 64, 256, 128), shipped
    )
    ce.check_sglang_data(release, WITHOUT_FILE, ce.Workload("campaigns/x.yaml", 8, 32, 16), old)
    assert shipped.failed == 0 and "64 requests of 256 -> 128 tokens" in shipped.lines[0]
    assert "warm-up (sglang/bench_offline_throughput.py:333) 16 of 256 -> 16" in shipped.lines[0]
    assert old.failed == 1 and "ShareGPT" in old.lines[0]  # the download issue 12 found


SHIPPED_SGLANG_CLIENT = ce.Command("sglang-serve", "llem init template", SERVING["sglang"].command)


def test_the_sglang_serving_client_samples_from_its_own_file(tmp_path: Path) -> None:
    """The serving client's measured requests come from the same `get_dataset`; it has no
    warm-up sampling of its own (its warm-up resends the first request; none at 0)."""
    release = _release(tmp_path, {ce.BENCH_SERVING: SERVING_SOURCE, ce.OFFLINE: OFFLINE})
    report = ce.Report()
    ce.check_sglang_data(release, SHIPPED_SGLANG_CLIENT, WORKLOAD, report, label="sglang-serve")
    assert (report.found, report.failed) == (1, 0), report.lines
    (line,) = report.lines
    assert line.startswith("sglang-serve ")
    assert "20 requests of 32 -> 8 tokens" in line and "warm-up" not in line
    assert "no download" in line


def test_the_pinned_sglang_sampler_on_the_serving_client() -> None:
    release = ce.WheelSource(_sglang_wheel())
    report = ce.Report()
    workload = ce.Workload("campaigns/x.yaml", 128, 256, 128)
    ce.check_sglang_data(release, SHIPPED_SGLANG_CLIENT, workload, report, label="sglang-serve")
    assert report.failed == 0 and "128 requests of 256 -> 128 tokens" in report.lines[0]


def test_fake_numpy_randint_is_high_exclusive() -> None:
    draws = ce.FakeNumpy(0).random.randint(5, 6, size=50)
    assert draws == [5] * 50
    assert ce.FakeNumpy(0).sum([1, 2, 3]) == 6


def test_the_committed_output_has_nothing_missing() -> None:
    """docs/engines.md keeps the last `make check-engines` output: it must be a passing one."""
    text = (ROOT / "docs" / "engines.md").read_text()
    block = text[text.index(ce.DOC_BEGIN) : text.index(ce.DOC_END)]
    (result,) = [line for line in block.splitlines() if line.startswith("result: ")]
    assert " 0 missing, 0 failed" in result
    assert "MISSING" not in block and "FAILED" not in block


def test_images_are_read_only_when_already_pulled(monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker image inspect` decides; nothing is pulled, and a missing image is `not checked`."""
    monkeypatch.setattr(ce.shutil, "which", lambda name: "/usr/bin/docker")
    calls: list[list[str]] = []

    def pulled(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        if argv[1] == "image":
            out = '["python3","-m","vllm.entrypoints.openai.api_server"] null\n'
            return subprocess.CompletedProcess(argv, 0, out, "")
        return subprocess.CompletedProcess(argv, 0, "3.12.11\n", "")

    report = ce.Report()
    ce.check_image("vllm", report, pulled)
    (line,) = report.lines
    assert 'ENTRYPOINT ["python3","-m","vllm.entrypoints.openai.api_server"]' in line
    assert line.endswith("python3 3.12.11")
    assert calls[1][:4] == ["docker", "run", "--rm", "--network"] and "pull" not in calls[1]

    def absent(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "No such image")

    report = ce.Report()
    ce.check_image("sglang", report, absent)
    assert "not checked: not pulled here (lmsysorg/sglang:v0.4.6.post4-cu124)" in report.lines[0]
