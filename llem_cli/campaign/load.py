"""Load and fully check a campaign file: the one entry point every command uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from llem_cli.campaign.checks import check_campaign, check_raw
from llem_cli.campaign.expansion import Config
from llem_cli.campaign.model import Campaign
from llem_cli.campaign.problems import Problem
from llem_cli.campaign.pydantic_errors import problems_from_validation
from llem_cli.campaign.yaml_source import Position, SourceError, load_source, read_text
from llem_cli.errors import CampaignInvalid


@dataclass
class LoadedCampaign:
    """A campaign that passed every check, with its source text and configurations."""

    path: Path
    text: str
    campaign: Campaign
    configs: list[Config]
    warnings: list[Problem] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        """Paths in the campaign are relative to this folder."""
        return self.path.parent

    def compose_paths(self) -> list[Path]:
        """The user's compose files, resolved."""
        return [(self.base_dir / rel).resolve() for rel in self.campaign.compose_files]

    def results_dir(self, override: Path | None = None) -> Path:
        """``results`` resolved against the campaign file (or the command-line override)."""
        return (override or self.base_dir / self.campaign.results_path).resolve()


def check_file(path: Path) -> tuple[LoadedCampaign | None, list[Problem]]:
    """Every problem in a campaign file (errors and warnings), and the campaign if valid."""
    file = str(path)
    try:
        text = read_text(path)
        doc = load_source(text)
    except SourceError as exc:
        return None, [Problem(file, exc.position, exc.path, exc.message)]
    try:
        campaign = Campaign.model_validate(doc.data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, doc, file)
        seen = {p.path for p in problems}
        problems += [p for p in check_raw(doc, file, path.parent) if p.path not in seen]
        problems.sort(key=lambda p: (p.position.line, p.position.col))
        return None, problems
    expansion, problems = check_campaign(campaign, doc, file, path.parent)
    problems.sort(key=lambda p: (p.position.line, p.position.col))
    if expansion is None or any(not p.warning for p in problems):
        return None, problems
    loaded = LoadedCampaign(path, text, campaign, expansion.configs, warnings=problems)
    return loaded, problems


def load_campaign(path: Path) -> LoadedCampaign:
    """The valid campaign at ``path``, or CampaignInvalid carrying every problem line."""
    loaded, problems = check_file(path)
    if loaded is None:
        errors = [p for p in problems if not p.warning]
        lines = [p.render() for p in problems]
        first = errors[0].render() if errors else f"{path}:1:1: (file): invalid campaign"
        count = len(errors)
        suffix = f" (and {count - 1} more; run 'llem validate {path}')" if count > 1 else ""
        raise CampaignInvalid(first + suffix, lines)
    return loaded


__all__ = ["LoadedCampaign", "Position", "check_file", "load_campaign"]
