"""``gpu_settings`` in the campaign file: axes that multiply configurations, validated without a
GPU, ordered so the GPUs' settings change as rarely as the order allows."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from llem_cli.campaign.load import load_campaign
from llem_cli.errors import CampaignInvalid
from llem_cli.runner.gpu_settings_run import settings_of
from llem_cli.runner.schedule import order_experiments


def load(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    (tmp_path / "compose.yml").write_text("services:\n  a:\n    image: x\n")
    path = tmp_path / "c.yaml"
    path.write_text("name: t\ncompose: compose.yml\n" + textwrap.dedent(body))
    return load_campaign(path)


BASE = """
backends:
  a: {command: [run, "{batch}", "{power_limit_w}"]}
grid: {batch: [1, 2]}
"""


def test_axes_multiply_every_configuration_and_become_params(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        BASE
        + "experiments: [{batch: 8}]\n"
        + "gpu_settings: {power_limit_w: [300, 500], sm_clock_mhz: [null, 1410]}\n",
    )
    assert len(loaded.configs) == 3 * 4
    first = loaded.configs[0]
    assert first.params == {"batch": 1, "power_limit_w": 300, "sm_clock_mhz": None}
    settings = settings_of(loaded.campaign, first)
    assert settings.power_limit_w == 300 and settings.sm_clock_mhz is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("gpu_settings: {power_limit_w: [-5]}", "power_limit_w[0]: input should be greater than 0"),
        ("gpu_settings: {sm_clock_mhz: [1410.5]}", "sm_clock_mhz[0]"),
        ("gpu_settings: {power_limit_w: []}", "power_limit_w"),
        ("gpu_settings: {fan_speed: [50]}", "fan_speed"),
    ],
)
def test_types_and_signs_are_checked_without_a_gpu(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(CampaignInvalid) as info:
        load(tmp_path, BASE + extra + "\n")
    assert message in "\n".join(info.value.problems)


def test_the_same_name_as_a_param_elsewhere_is_an_error(tmp_path: Path) -> None:
    body = """
    backends:
      a: {command: [run]}
    grid: {power_limit_w: [100]}
    per_backend: {a: {sm_clock_mhz: [1]}}
    gpu_settings: {power_limit_w: [300], sm_clock_mhz: [1410]}
    """
    with pytest.raises(CampaignInvalid) as info:
        load(tmp_path, body)
    text = "\n".join(info.value.problems)
    assert "grid.power_limit_w: power_limit_w is a gpu_settings axis" in text
    assert "per_backend.a.sm_clock_mhz: sm_clock_mhz is a gpu_settings axis" in text


@pytest.mark.parametrize("order", ["interleaved", "grouped"])
def test_equal_settings_run_together(tmp_path: Path, order: str) -> None:
    loaded = load(
        tmp_path,
        BASE
        + "gpu_settings: {power_limit_w: [300, 500]}\n"
        + f"execution: {{cycles: 2, order: {order}}}\n",
    )
    limits = [
        e.config.params["power_limit_w"] for e in order_experiments(loaded.configs, loaded.campaign)
    ]
    changes = sum(1 for a, b in zip(limits, limits[1:], strict=False) if a != b)
    # interleaved: 300,300,500,500 per cycle (3 changes over 2 cycles); grouped: one change
    assert changes == (3 if order == "interleaved" else 1), limits
