"""The HTTP API through the ASGI test client: every endpoint, every error, writes with and without a token.

Real parts: a navec-ru index of a small Russian corpus, real FAISS, the installed ``ragkit`` command
for the CLI comparison.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'ragkit[server]'")

from fastapi.testclient import TestClient  # noqa: E402

from ragkit.server import ServerOptions, create_app  # noqa: E402

RAGKIT = str(Path(sys.executable).parent / "ragkit")
TOKEN = "s3cret-token"
BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def client(news_index):
    with TestClient(create_app([news_index]), base_url=BASE) as c:
        yield c


@pytest.fixture()
def writable(news_index, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(news_index, path)
    app = create_app([path], ServerOptions(allow_writes=True, token=TOKEN, poll=0.1))
    with TestClient(app, base_url=BASE) as c:
        yield c


def cli_json(index: Path, *args: str) -> list[dict]:
    out = subprocess.run([RAGKIT, "search", "--json", "--index", str(index), *args],
                         capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "dense"])
def test_get_search_is_the_cli_json(client, news_index, mode):
    got = client.get("/search", params={"q": "технопарки Москвы", "k": 5, "mode": mode})
    assert got.status_code == 200
    expected = cli_json(news_index, "технопарки Москвы", "-k", "5", "--mode", mode)[0]
    assert got.json() == expected
    assert got.headers["server-timing"].startswith("search;dur=")
    assert got.json()["results"][0]["doc_id"] in {"tech-1", "school-1", "seed-technopolis"}


def test_filters_and_per_doc_match_the_cli(client, news_index):
    params = {"q": "Москва", "k": 10, "since": "2025-01-01", "until": "2025-12-31", "source": "mos/*", "per_doc": 1}
    got = client.get("/search", params=params).json()
    expected = cli_json(news_index, "Москва", "-k", "10", "--since", "2025-01-01", "--until", "2025-12-31",
                        "--source", "mos/*", "--per-doc", "1")[0]
    assert got == expected
    assert got["results"] and all(r["source"].startswith("mos/") and r["date"] >= "2025-01-01" for r in got["results"])
    assert len({r["doc_id"] for r in got["results"]}) == len(got["results"])


def test_post_search_answers_a_batch_in_order(client):
    queries = ["ключевая ставка", "урожай пшеницы", "хоккей плей-офф"]
    got = client.post("/search", json={"queries": queries, "k": 3, "mode": "hybrid"})
    assert got.status_code == 200
    body = got.json()
    assert [b["query"] for b in body] == queries
    for q, b in zip(queries, body):
        assert b == client.get("/search", params={"q": q, "k": 3}).json()
    assert [b["results"][0]["doc_id"] for b in body] == ["bank-1", "grain-1", "hockey-1"]


def test_document_whole_and_span(client):
    result = client.get("/search", params={"q": "льготный режим для инвесторов", "k": 1}).json()["results"][0]
    doc = client.get(f"/documents/{result['doc_id']}", params={"start": result["start"], "end": result["end"]})
    assert doc.status_code == 200
    body = doc.json()
    assert body["id"] == "tech-1" and body["title"] == "Технопарки Москвы расширяются" and body["date"] == "2025-10-22"
    assert body["span"]["text"] == body["text"][result["start"]:result["end"]] == result["text"]
    assert client.get("/documents/tech-1").json()["span"] is None


def test_info_and_health(client, news_index):
    info = client.get("/info").json()
    assert info["counts"]["documents"] == 9 and info["model"]["name"].startswith("navec-ru")
    assert info["name"] == news_index.name and info["indexes"] == [news_index.name]
    health = client.get("/health").json()
    assert health == {"status": "ok", "indexes": {news_index.name: {"generation": info["generation"]}}}


def test_openapi_and_docs_page(client):
    spec = client.get("/openapi.json").json()
    assert {"/search", "/documents/{doc_id}", "/documents", "/info", "/health"} <= set(spec["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/documents/{doc_id}" in docs.text
    assert "cdn" not in docs.text.lower() and "<script" not in docs.text


@pytest.mark.parametrize(("params", "needle"), [
    ({"q": "x", "k": 0}, "k must be"),
    ({"q": "x", "k": 1001}, "k must be"),
    ({"q": "x", "k": "много"}, "k"),
    ({"q": "x", "mode": "fuzzy"}, "mode"),
    ({"q": "   "}, "empty"),
    ({}, "q"),
    ({"q": "я" * 1001}, "longer than 1000"),
    ({"q": "x", "since": "2025-13-01"}, "since"),
    ({"q": "x", "since": "2025-05-01", "until": "2025-01-01"}, "after"),
    ({"q": "x", "per_doc": -1}, "per_doc"),
    ({"q": "x", "index": "nope"}, "no index named"),
])
def test_bad_search_input_is_a_4xx_json_error(client, params, needle):
    response = client.get("/search", params=params)
    body = assert_error(response, 404 if "index" in params else 400)
    assert needle in body["error"]


def test_bad_batch_and_body_errors(client):
    assert "at most 64" in assert_error(client.post("/search", json={"queries": ["a"] * 65}), 400)["error"]
    assert_error(client.post("/search", json={"queries": []}), 400)
    assert_error(client.post("/search", json={"queries": "технопарки"}), 400)
    assert_error(client.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert_error(client.post("/search", content=b"x" * (8 * 1024 * 1024 + 1)), 413)


def test_document_errors_and_unknown_routes(client):
    assert "no document" in assert_error(client.get("/documents/nope"), 404)["error"]
    assert_error(client.get("/documents/tech-1", params={"start": 5, "end": 2}), 400)
    assert_error(client.get("/documents/tech-1", params={"start": 0, "end": 10**6}), 400)
    assert_error(client.get("/documents/tech-1", params={"start": "a"}), 400)
    # ids are looked up in SQLite, never joined to a path
    assert_error(client.get("/documents/..%2F..%2F..%2Fetc%2Fpasswd"), 404)
    assert_error(client.get("/documents/../manifest.json"), 404)
    assert_error(client.get("/no/such/route"), 404)
    assert_error(client.put("/search"), 405)


def test_host_and_origin_guard(client):
    assert_error(client.get("/health", headers={"host": "evil.example"}), 403)  # DNS rebinding
    assert_error(client.get("/search", params={"q": "x"}, headers={"origin": "http://evil.example"}), 403)
    assert client.get("/health", headers={"origin": BASE}).status_code == 200
    assert client.get("/health", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/health", headers={"host": "192.168.1.5:8000"}).status_code == 200


def test_writes_are_off_by_default(client):
    doc = {"documents": [{"id": "new-1", "text": "Текст", "title": "Т"}]}
    assert "writes are off" in assert_error(client.post("/documents", json=doc, headers={"authorization": f"Bearer {TOKEN}"}), 403)["error"]
    assert_error(client.delete("/documents/tech-1", headers={"authorization": f"Bearer {TOKEN}"}), 403)
    assert client.get("/documents/tech-1").status_code == 200


def test_writes_need_the_token(writable):
    doc = {"documents": [{"id": "ice-1", "title": "Ледокол вышел в рейс", "date": "2025-11-05", "source": "sea/ice.txt",
                          "text": "Атомный ледокол «Арктика» вывел караван судов по Северному морскому пути."}]}
    assert_error(writable.post("/documents", json=doc), 401)
    assert_error(writable.post("/documents", json=doc, headers={"authorization": "Bearer wrong"}), 401)
    assert_error(writable.post("/documents", json=doc, headers={"authorization": TOKEN}), 401)
    assert writable.get("/search", params={"q": "ледокол", "mode": "lexical"}).json()["results"] == []
    before = writable.get("/health").json()

    ok = writable.post("/documents", json=doc, headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["documents"] == 10 and ok.json()["generation"] > next(iter(before["indexes"].values()))["generation"]
    hits = writable.get("/search", params={"q": "ледокол", "mode": "lexical"}).json()["results"]
    assert [h["doc_id"] for h in hits] == ["ice-1"]

    assert_error(writable.delete("/documents/ice-1"), 401)
    gone = writable.delete("/documents/ice-1", headers={"authorization": f"Bearer {TOKEN}"})
    assert gone.status_code == 200 and gone.json()["documents"] == 9
    assert writable.get("/search", params={"q": "ледокол", "mode": "lexical"}).json()["results"] == []
    assert_error(writable.delete("/documents/ice-1", headers={"authorization": f"Bearer {TOKEN}"}), 404)


@pytest.mark.parametrize("bad", [
    {"documents": []},
    {"documents": [{"id": "", "text": "x"}]},
    {"documents": [{"id": "a", "text": "  "}]},
    {"documents": [{"id": "a", "text": "x", "date": "вчера"}]},
    {"documents": [{"text": "x"}]},
])
def test_bad_documents_are_400(writable, bad):
    assert_error(writable.post("/documents", json=bad, headers={"authorization": f"Bearer {TOKEN}"}), 400)
    assert writable.get("/info").json()["counts"]["documents"] == 9


def test_token_can_guard_reads(news_index):
    app = create_app([news_index], ServerOptions(token=TOKEN, auth_reads=True))
    with TestClient(app, base_url=BASE) as c:
        assert_error(c.get("/search", params={"q": "метро"}), 401)
        assert_error(c.post("/mcp", json={}), 401)
        assert c.get("/search", params={"q": "метро"}, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/health").status_code == 200


def test_writes_without_a_token_refuse_to_start(news_index):
    import ragkit

    with pytest.raises(ragkit.InvalidArgumentError, match="needs a token"):
        create_app([news_index], ServerOptions(allow_writes=True))


def test_mcp_route_is_behind_the_same_guard(client):
    assert_error(client.post("/mcp", json={}, headers={"host": "evil.example"}), 403)
    assert_error(client.post("/mcp", json={}, headers={"origin": "http://evil.example"}), 403)
    assert_error(client.post("/mcp", content=b"x" * (8 * 1024 * 1024 + 1)), 413)
