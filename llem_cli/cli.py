"""The Click command tree. Only declarations live here; each command's work is in
``llem_cli.commands.<verb>``, imported when that command runs so start-up stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from llem_cli import __version__
from llem_cli.error_handler import error_handler
from llem_cli.output import Output, get_output


class LlemGroup(click.Group):
    """Routes every command through the error handler and lists commands in file order."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the command inside the one error handler."""
        with error_handler(ctx):
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Commands in the order they are declared (the workflow order), not sorted."""
        return list(self.commands)


CONTEXT = {
    "help_option_names": ["-h", "--help"],
    "auto_envvar_prefix": "LLEM",
    "max_content_width": 100,
}
campaign_file = click.Path(exists=False, dir_okay=False, path_type=Path)


@click.group(cls=LlemGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="llem")
@click.option("-v", "--verbose", count=True, help="More detail (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors.")
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, no_color: bool) -> None:
    """Run campaigns of LLM inference energy experiments in Docker containers.

    Every option can also be set from the environment as LLEM_<OPTION>, or
    LLEM_<COMMAND>_<OPTION> for a command's own options (e.g. LLEM_PLAN_JSON=1).

    \b
    Examples:
      llem validate campaigns/demo.yaml
      llem plan campaigns/demo.yaml --json > plan.json
      llem schema > llem-campaign.schema.json
    """
    ctx.obj = Output.from_flags(verbose, quiet, no_color)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=campaign_file)
def validate(files: tuple[Path, ...]) -> None:
    """Check campaign files and print every problem as FILE:LINE:COL: field.path: message.

    Exit 0 when all files are valid (warnings allowed), 2 otherwise.

    \b
    Examples:
      llem validate campaigns/demo.yaml
      llem validate campaigns/*.yaml
    """
    from llem_cli.commands.validate import validate_files

    click.get_current_context().exit(validate_files(list(files), get_output()))


@cli.command()
@click.argument("file", type=campaign_file)
@click.option("--json", "as_json", is_flag=True, help="Print the experiments as a JSON list.")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows shown in the table (0: all).",
)
def plan(file: Path, as_json: bool, limit: int) -> None:
    """Show the expanded experiments in execution order, with totals.

    \b
    Examples:
      llem plan campaigns/demo.yaml
      llem plan campaigns/demo.yaml --json | jq length
    """
    from llem_cli.commands.plan import show_plan

    show_plan(file, as_json=as_json, limit=limit, out=get_output())


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the campaign file (for editors' YAML language servers).

    \b
    Example:
      llem schema > .llem-schema.json
      # then, first line of a campaign file:
      # yaml-language-server: $schema=.llem-schema.json
    """
    from llem_cli.commands.schema import print_schema

    print_schema()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="llem")
