"""``llem schema``: the campaign model's JSON Schema, for editors."""

from __future__ import annotations

import json

import click

from llem_cli.campaign.model import Campaign


def campaign_schema() -> dict[str, object]:
    """The JSON Schema (draft 2020-12) generated from the pydantic model."""
    schema = Campaign.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "llem campaign",
        **schema,
    }


def print_schema() -> None:
    """Print the schema as indented JSON on stdout."""
    click.echo(json.dumps(campaign_schema(), indent=2))
