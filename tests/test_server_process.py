"""A real uvicorn subprocess (``ragkit serve``) on a free loopback port, MCP over /mcp and over
stdio (``ragkit mcp``) with the SDK's own client, and the CLI's messages."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'ragkit[server]'")
pytest.importorskip("mcp", reason="the server extra is not installed: pip install 'ragkit[server]'")

import httpx  # noqa: E402
from serve_process import RAGKIT, serving  # noqa: E402

TOKEN = "tok-" + "x" * 20
QUERY = "ключевая ставка Банка России"


def cli_json(index, *args):
    out = subprocess.run([RAGKIT, "search", "--json", "--index", str(index), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def server(news_index, tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(news_index, path)
    with serving("--index", str(path), "--allow-writes", env={"RAGKIT_TOKEN": TOKEN}) as url:
        yield url, path


def test_uvicorn_serves_every_endpoint(server):
    url, path = server
    got = httpx.get(f"{url}/search", params={"q": QUERY, "k": 4}).json()
    assert got == cli_json(path, QUERY, "-k", "4")
    batch = httpx.post(f"{url}/search", json={"queries": [QUERY, "метро"], "k": 4}).json()
    assert batch[0] == got and batch[1]["query"] == "метро"
    doc = httpx.get(f"{url}/documents/bank-1", params={"start": 0, "end": 5}).json()
    assert doc["span"]["text"] == doc["text"][:5]
    assert httpx.get(f"{url}/info").json()["counts"]["documents"] == 9
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    page = httpx.get(f"{url}/", params={"q": QUERY})
    assert page.status_code == 200 and "<mark>ставку</mark>" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


def test_uvicorn_errors_are_json(server):
    url, _ = server
    for response, status in [
        (httpx.get(f"{url}/search", params={"q": "x", "k": 5000}), 400),
        (httpx.get(f"{url}/documents/nope"), 404),
        (httpx.post(f"{url}/search", content=b"[", headers={"content-type": "application/json"}), 400),
        (httpx.get(f"{url}/health", headers={"host": "rebind.example"}), 403),
        (httpx.post(f"{url}/documents", json={"documents": [{"id": "a", "text": "b"}]}), 401),
    ]:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}


def test_uvicorn_writes_with_the_token(server):
    url, _ = server
    auth = {"authorization": f"Bearer {TOKEN}"}
    doc = {"documents": [{"id": "fire-1", "text": "Пожарные потушили лесной пожар под Читой.", "title": "Пожар"}]}
    assert httpx.post(f"{url}/documents", json=doc, headers={"authorization": "Bearer nope"}).status_code == 401
    assert httpx.post(f"{url}/documents", json=doc, headers=auth, timeout=60).status_code == 200
    hits = httpx.get(f"{url}/search", params={"q": "пожарные Читы", "mode": "lexical"}).json()["results"]
    assert hits[0]["doc_id"] == "fire-1"
    assert httpx.delete(f"{url}/documents/fire-1", headers=auth, timeout=60).status_code == 200
    assert httpx.get(f"{url}/documents/fire-1").status_code == 404


async def _mcp_session(target):
    from mcp import Client

    async with Client(target) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        found = await client.call_tool("search", {"query": QUERY, "k": 4})
        filtered = await client.call_tool("search", {"query": "Москва", "k": 5, "mode": "lexical", "since": "2025-09-01",
                                                     "source": "mos/*"})
        doc = await client.call_tool("get_document", {"doc_id": "bank-1", "start": 0, "end": 5})
        info = await client.call_tool("info", {})
        bad = await client.call_tool("search", {"query": QUERY, "k": 0})
        missing = await client.call_tool("get_document", {"doc_id": "nope"})
    return tools, found, filtered, doc, info, bad, missing


def _check_mcp(results, index):
    tools, found, filtered, doc, info, bad, missing = results
    assert tools == ["get_document", "info", "search"]
    assert not found.is_error and found.structured_content == cli_json(index, QUERY, "-k", "4")
    assert filtered.structured_content == cli_json(index, "Москва", "-k", "5", "--mode", "lexical", "--since", "2025-09-01",
                                                   "--source", "mos/*")
    assert doc.structured_content["span"]["text"] == doc.structured_content["text"][:5]
    assert info.structured_content["counts"]["documents"] >= 9
    assert bad.is_error and "k must be between 1 and 1000" in bad.content[0].text
    assert missing.is_error and "no document with id 'nope'" in missing.content[0].text


def test_mcp_over_streamable_http(server):
    url, path = server
    _check_mcp(asyncio.run(_mcp_session(f"{url}/mcp")), path)


def test_mcp_over_stdio(news_index):
    from mcp import StdioServerParameters

    params = StdioServerParameters(command=RAGKIT, args=["mcp", "--index", str(news_index)], env={"HF_HUB_OFFLINE": "1"})
    _check_mcp(asyncio.run(_mcp_session(params)), news_index)


def test_serve_warns_when_not_on_loopback(news_index, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from ragkit.cli import app

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: calls.append(kw))
    result = CliRunner().invoke(app, ["serve", "--index", str(news_index), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert calls == [{"host": "0.0.0.0", "port": 8000, "log_level": "warning"}]
    assert "no auth for reads" in result.stderr
    quiet = CliRunner().invoke(app, ["serve", "--index", str(news_index)])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
    guarded = CliRunner().invoke(app, ["serve", "--index", str(news_index), "--host", "0.0.0.0", "--token", TOKEN, "--auth-reads"])
    assert guarded.exit_code == 0 and "warning" not in guarded.stderr


def test_serve_cli_errors_are_one_line(news_index, tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from ragkit.cli import app

    for args, needle in [(["serve", "--index", str(tmp_path / "none")], "no index at"),
                         (["serve", "--index", str(news_index), "--allow-writes"], "needs a token"),
                         (["serve", "--index", str(news_index), "--auth-reads"], "needs a token")]:
        result = CliRunner().invoke(app, args, env={"RAGKIT_TOKEN": ""})
        assert result.exit_code == 1 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "fastapi", None)
    for command in (["serve"], ["mcp"]):
        result = CliRunner().invoke(app, [*command, "--index", str(news_index)])
        assert result.exit_code == 1
        assert result.stderr.strip() == "ragkit: error: the server needs fastapi: pip install 'ragkit[server]'"


def test_help_does_not_import_the_server_packages():
    import sys

    code = (
        "import sys, ragkit; from ragkit.cli import app; from typer.testing import CliRunner; "
        "rs = [CliRunner().invoke(app, a) for a in (['--help'], ['serve', '--help'], ['mcp', '--help'])]; "
        "assert all(r.exit_code == 0 for r in rs), [r.output for r in rs]; "
        "print([m for m in ('fastapi', 'starlette', 'uvicorn', 'mcp', 'jinja2', 'pydantic') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
