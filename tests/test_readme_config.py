"""The README's configuration table is the contract for operators: every setting in
config.Settings is documented there, with the default the code really has."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from config import INSTANCE_DIR, Settings

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `([A-Z_]+)` \| (.*?) \|(.*)\|$")
# Defaults the code computes rather than states.
COMPUTED = {"SECRET_KEY": "generated into `instance/secret_key`"}


def documented_defaults() -> dict[str, str]:
    text = README.read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {match[1]: match[2] for match in map(ROW.match, section.splitlines()) if match}


def as_documented(field: dataclasses.Field) -> str:
    """The code's default written the way the README writes it."""
    value = field.default
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value == "":
        return "(unset)"
    text = str(value).replace(str(INSTANCE_DIR), "instance")
    return f"`{text}`"


def test_every_setting_is_documented_with_its_real_default():
    documented = documented_defaults()
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    assert sorted(documented) == sorted(fields), "README and config.Settings list other names"
    for name, field in fields.items():
        expected = COMPUTED.get(name, as_documented(field))
        written = documented[name]
        # "(unset; … under gunicorn.conf.py)" documents an unset default with a note, and
        # "`0` (three monitor intervals)" a default that stands for something computed.
        assert written == expected or written.startswith(f"{expected} (") \
            or (expected == "(unset)" and written.startswith("(unset")), \
            f"{name}: README says {written}, the code {expected}"
