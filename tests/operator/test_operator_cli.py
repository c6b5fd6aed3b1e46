"""`kaito operator`'s image and volume settings: a bad value is refused before anything starts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kaito_core.cli.main import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "reg.example.com/kaito:1"], "--image 'reg.example.com/kaito:1': expected NAME=REF"),
        (["--weights-volume", "hostPath"], "'hostPath' is not one of 'emptyDir', 'pvc'"),
        (["--weights-storage-class", "premium"], "--weights-storage-class needs --weights-volume pvc"),
        (["--weights-volume-size", "lots"], "'lots' is not a Kubernetes quantity"),
    ],
)
def test_bad_settings_are_refused_naming_the_flag(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["operator", *args], env={"KAITO_IMAGES": None})
    assert result.exit_code != 0
    assert message in result.output, result.output
