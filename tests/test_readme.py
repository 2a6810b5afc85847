"""The README documents every setting: the app's (``Settings``) and the simulator's."""
from __future__ import annotations

import dataclasses

from core.config import ROOT, Settings
from wecom.simulator import settings as sim_settings

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_app_setting_is_in_the_readme():
    names = [f.name for f in dataclasses.fields(Settings) if f.name.isupper()]
    missing = [n for n in names if f"`{n}`" not in README]
    assert not missing, f"README.md lacks {missing}"


def test_every_simulator_setting_is_in_the_readme():
    names = list(sim_settings.ENV_NAMES.values())
    missing = [n for n in names if f"`{n}`" not in README]
    assert not missing, f"README.md lacks {missing}"


def test_the_two_commands_lead_the_quick_start():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quick and "make test" in quick
