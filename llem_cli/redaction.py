"""Secrets never shown: values of token-like variables scrubbed from argvs and free text.

The one owner of "what is a secret" for logs, journals, records, errors and ``--dry-run``:
values of variables whose names look like TOKEN/SECRET/KEY/PASSWORD, in llem's environment
or a backend's ``env``, wherever they appear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

#: names of environment variables whose values are never shown
SECRET_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
#: llem's own variables (LLEM_EXPERIMENT_KEY is an experiment key, not a credential)
OWN_NAME = re.compile(r"^LLEM_")
REDACTED = "***"

# values shorter than this are not scrubbed from free text (a secret "1" would mangle everything)
_MIN_SECRET_LEN = 4


def _secret_values(env: Mapping[str, str] | None) -> list[str]:
    """Values of secret-looking variables in ``env`` and in llem's own environment."""
    values: set[str] = set()
    for source in (os.environ, env or {}):
        for name, value in source.items():
            secret = SECRET_NAME.search(name) and not OWN_NAME.match(name)
            if secret and len(value) >= _MIN_SECRET_LEN:
                values.add(value)
    # longest first, so a secret containing another is replaced whole
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret value (see :func:`redact_argv`) replaced by ``***``."""
    return _replace_secrets(text, _secret_values(env))


def _replace_secrets(text: str, secrets: Sequence[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_argv(argv: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The argv safe to print: secret values replaced by ``***``.

    Secret values are those of variables whose names look like TOKEN/SECRET/KEY/PASSWORD, from
    ``env`` and llem's own environment, wherever they appear; and the value of any
    ``-e NAME=value`` / ``--env NAME=value`` / ``--env=NAME=value`` whose NAME looks secret.
    """
    out: list[str] = []
    env_flag_pending = False
    for arg in argv:
        if env_flag_pending:
            out.append(_redact_assignment(arg))
            env_flag_pending = False
            continue
        if arg in ("-e", "--env"):
            env_flag_pending = True
            out.append(arg)
            continue
        if arg.startswith("--env="):
            out.append("--env=" + _redact_assignment(arg[len("--env=") :]))
            continue
        out.append(arg)
    secrets = _secret_values(env)  # once per argv: scanning the environment is the cost
    return tuple(_replace_secrets(arg, secrets) for arg in out)


def _redact_assignment(item: str) -> str:
    name, sep, _value = item.partition("=")
    if sep and SECRET_NAME.search(name):
        return f"{name}={REDACTED}"
    return item


