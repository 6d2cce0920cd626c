"""``llem report``: the HTML page and figure files from run directories with known records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import create_run_dir
from llem_cli.runs.record import Record


def record(config: str, cycle: int, backend: str, status: str = "ok", **values: object) -> Record:
    return Record(
        key=f"{config}-c{cycle}",
        config_id=config,
        cycle=cycle,
        backend=backend,
        service=backend,
        params={"batch_size": 8 if config.startswith("a") else 32},
        status=status,
        **values,  # type: ignore[arg-type]
    )


def make_run(results: Path, records: list[Record], name: str = "demo") -> Path:
    run = create_run_dir(results, name)
    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id, campaign=name)
        journal.append("telemetry", gpus=[0], note="measuring host GPUs [0] with NVML")
        for rec in records:
            journal.append("experiment_finished", key=rec.key, record=rec)
        journal.append("run_finished", run_id=run.run_id, counts={})
    return run.root


def measured(config: str, backend: str, energies: list[float], rate: float, **extra: object):
    return [
        record(
            config,
            cycle,
            backend,
            energy_j=energy,
            duration_s=10.0,
            metrics={"output_tokens": 1000, "output_tokens_per_s": rate + cycle},
            measurement={"method": "counter", "flags": [], "reasons": {}, **extra},
        )
        for cycle, energy in enumerate(energies, start=1)
    ]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    records = (
        measured("aaa", "pytorch", [100, 110, 120], 50)
        + measured("bbb", "vllm", [60, 62, 64], 400)
        + measured("ccc", "vllm", [300, 310, 320], 300)
        + [record("ddd", 1, "vllm", status="gpu_oom")]
    )
    return make_run(tmp_path / "results", records)


def invoke(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "@font-face" not in page
    assert not re.search(r"url\((?!#)", page)  # url(#clip-id) only: the page's own ids
    assert "<link" not in page.lower()


def test_single_run_report_is_self_contained_and_draws_each_configuration_once(
    run_dir: Path,
) -> None:
    output = invoke("report", str(run_dir))
    target = run_dir / "report.html"
    assert f"wrote {target}" in output
    page = target.read_text()
    self_contained(page)
    assert page.startswith("<!DOCTYPE html>")
    assert run_dir.name in page and "llem report: demo" in page
    scatter = page[page.index('id="fig-energy-vs-throughput"') :]
    scatter = scatter[: scatter.index("</figure>")]
    for config in ("aaa", "bbb", "ccc"):
        assert len(re.findall(rf'id="pt-{run_dir.name}-{config}"', page)) == 1
        assert len(re.findall(rf'id="bar-{run_dir.name}-{config}"', page)) == 1
    assert len(re.findall(r'id="pt-', scatter)) == 3
    assert 'id="pt-' not in page.replace(scatter, "")
    assert "ddd" in page  # in the table and in the caption, with why it is not drawn
    assert "Not drawn: #4 vllm batch_size=32 (no ok experiment)." in page
    # the front: bbb (0.062 J/token, 402 tokens/s) dominates both others
    front = page[page.index('id="pareto"') : page.index('id="configurations"')]
    assert f'data-config="{run_dir.name}/bbb"' in front
    assert "/aaa" not in front and "/ccc" not in front
    assert 'id="pareto-front"' in page
    assert "simulated GPU" not in page
    assert '<section class="run"' in page and "counter (NVML total energy) ×9" in page


def test_same_runs_same_bytes(run_dir: Path, tmp_path: Path) -> None:
    invoke("report", str(run_dir), "-o", str(tmp_path / "one.html"))
    invoke("report", str(run_dir), "-o", str(tmp_path / "two.html"))
    assert (tmp_path / "one.html").read_bytes() == (tmp_path / "two.html").read_bytes()


def test_figures_are_written_as_svg_png_and_pdf(run_dir: Path, tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    invoke("report", str(run_dir), "-o", str(tmp_path / "r.html"), "--figures", str(figures))
    names = sorted(p.name for p in figures.iterdir())
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in ("energy-vs-throughput", "energy-per-configuration")
        for ext in ("svg", "png", "pdf")
    )
    assert (figures / "energy-vs-throughput.png").read_bytes().startswith(b"\x89PNG")
    assert (figures / "energy-vs-throughput.pdf").read_bytes().startswith(b"%PDF")
    svg = (figures / "energy-vs-throughput.svg").read_text()
    assert "<svg" in svg and len(re.findall(r'id="pt-', svg)) == 3


def test_several_runs_in_one_report(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    other = make_run(
        tmp_path / "results", measured("aaa", "pytorch", [90, 95, 97], 55), name="again"
    )
    monkeypatch.chdir(tmp_path)
    output = invoke("report", str(run_dir), str(other))
    assert "wrote report.html" in output
    page = (tmp_path / "report.html").read_text()
    self_contained(page)
    assert "llem report: demo, again" in page
    assert len(re.findall(r'id="pt-', page)) == 4
    for run in (run_dir, other):
        assert f'id="pt-{run.name}-aaa"' in page
        assert f'data-run="{run.name}"' in page


def test_run_without_ok_experiment_says_so(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "results",
        [record("aaa", 1, "pytorch", status="failed"), record("bbb", 1, "vllm", status="timeout")],
    )
    invoke("report", str(run))
    page = (run / "report.html").read_text()
    self_contained(page)
    assert 'id="no-ok"' in page and "No experiment finished ok" in page
    assert "<svg" not in page


def test_a_folder_that_is_no_run_directory_exits_2_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "report.html").exists()


def test_missing_path_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_simulated_records_carry_the_banner(tmp_path: Path) -> None:
    run = make_run(tmp_path / "results", measured("aaa", "pytorch", [1, 2, 3], 9, simulated=True))
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0
    page = (run / "report.html").read_text()
    assert 'class="banner"' in page
    assert "simulated GPU: these numbers are not measurements" in page


def test_energy_per_experiment_fallback_is_said_in_the_caption(tmp_path: Path) -> None:
    records = [
        record("aaa", c, "pytorch", energy_j=10.0 * c, duration_s=2.0, measurement={})
        for c in (1, 2, 3)
    ]
    run = make_run(tmp_path / "results", records)
    invoke("report", str(run))
    page = (run / "report.html").read_text()
    assert "Falls back: no ok experiment reports output_tokens" in page
    assert "energy per experiment (J)" in page
