"""`kaito data fetch`: http(s) only; internal addresses refused, also after DNS and after redirects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from kaito_core.artifacts.download import check_url, fetch
from kaito_core.artifacts.errors import ArtifactError

PUBLIC = {
    "data.example.com": ["93.184.215.14"],
    "cdn.example.com": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "sneaky.example.com": ["93.184.215.14", "10.0.0.7"],
    "rebind.example.com": ["169.254.169.254"],
}


def resolver(host: str) -> list[str]:
    return PUBLIC[host]


class Canned(BaseAdapter):
    """A transport answering from a table: url -> (status, headers, body); records what was asked."""

    def __init__(self, table: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__()
        self.table = table
        self.asked: list[str] = []

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        assert request.url is not None
        self.asked.append(request.url)
        status, headers, body = self.table[request.url]
        resp = requests.Response()
        resp.status_code, resp.url, resp.request = status, request.url, request
        resp.headers.update(headers)
        import io

        resp.raw = io.BytesIO(body)
        return resp

    def close(self) -> None:
        pass


def session(table: dict[str, tuple[int, dict[str, str], bytes]]) -> tuple[requests.Session, Canned]:
    http, adapter = requests.Session(), Canned(table)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http, adapter


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://data.example.com/x", "must use HTTP or HTTPS"),
        ("http://127.0.0.1/x", "non-public address"),
        ("http://localhost/x", "local, cluster-internal or metadata host"),
        ("http://169.254.169.254/latest/meta-data", "non-public address"),
        ("http://metadata.google.internal/x", "metadata host"),
        ("http://[::1]/x", "non-public address"),
        ("http://10.1.2.3/x", "non-public address"),
        ("https://sneaky.example.com/x", "resolves to a non-public address (10.0.0.7)"),
        ("https://rebind.example.com/x", "resolves to a non-public address (169.254.169.254)"),
    ],
)
def test_internal_targets_are_refused(url: str, message: str) -> None:
    with pytest.raises(ArtifactError) as info:
        check_url(url, resolver)
    assert message in str(info.value)


def test_a_public_file_is_fetched_following_a_public_redirect(tmp_path: Path) -> None:
    http, adapter = session(
        {
            "https://data.example.com/train.parquet?download=true": (
                302,
                {"Location": "https://cdn.example.com/blob/train.parquet"},
                b"",
            ),
            "https://cdn.example.com/blob/train.parquet": (200, {}, b"PAR1 rows"),
        }
    )
    files = fetch(
        ["https://data.example.com/train.parquet?download=true"], tmp_path, session=http, resolver=resolver
    )
    assert files == [tmp_path / "train.parquet"] and files[0].read_bytes() == b"PAR1 rows"
    assert len(adapter.asked) == 2


def test_a_redirect_to_the_metadata_service_is_refused_before_it_is_followed(tmp_path: Path) -> None:
    http, adapter = session(
        {"https://data.example.com/d.csv": (307, {"Location": "http://169.254.169.254/latest/"}, b"")}
    )
    with pytest.raises(ArtifactError, match="non-public address"):
        fetch(["https://data.example.com/d.csv"], tmp_path, session=http, resolver=resolver)
    assert adapter.asked == ["https://data.example.com/d.csv"]
    assert list(tmp_path.iterdir()) == []


def test_a_failing_download_is_retried_then_reported(tmp_path: Path) -> None:
    http, adapter = session({"https://data.example.com/d.csv": (503, {}, b"")})
    with pytest.raises(ArtifactError, match="download failed after 3 attempts"):
        fetch(["https://data.example.com/d.csv"], tmp_path, session=http, resolver=resolver, backoff=0)
    assert len(adapter.asked) == 3


def test_the_cli_refuses_a_private_url(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kaito_core.cli.main import cli

    result = CliRunner().invoke(cli, ["data", "fetch", "--dest", str(tmp_path), "http://192.168.1.1/x.csv"])
    assert result.exit_code != 0 and "non-public address" in result.output
