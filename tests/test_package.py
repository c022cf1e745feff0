"""The package as a user imports it."""

from __future__ import annotations

import subprocess
import sys


def test_import_gdla_does_not_load_matplotlib_until_plotting_is_used() -> None:
    code = (
        "import sys, gdla\n"
        "assert 'matplotlib' not in sys.modules, 'import gdla loaded matplotlib'\n"
        "gdla.plotting.new_figure\n"
        "assert 'matplotlib' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attributes_still_raise_attribute_error() -> None:
    import gdla

    try:
        gdla.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("gdla.no_such_name did not raise")
