"""A folder that exercises every kind of skip the loaders record, interleaved with documents:
unsupported and hidden files, empty, binary and broken files, broken JSONL lines, ids seen
twice within and across files, the same file twice through a link, broken and looping links,
a named pipe, an undecodable file name, metadata and pages (HTML, PDF, Word)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from format_files import write_docx, write_pdf


def messy_tree(root: Path) -> list[Path]:
    """Write the tree under ``root``; returns the paths to load, in order (one does not exist)."""
    corpus = root / "corpus"
    (corpus / "sub" / "deeper").mkdir(parents=True)
    (corpus / "a.txt").write_text("Первая новость.\n\nТекст о Москве.", encoding="utf-8")
    (corpus / "b.md").write_text("# Заголовок\nТекст второй.", encoding="utf-8")
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02" * 50)
    (corpus / "notes.csv").write_text("ignored", encoding="utf-8")
    (corpus / ".hidden.txt").write_text("ignored", encoding="utf-8")
    lines = [json.dumps({"_id": "x", "title": "Икс", "text": "Первый икс.", "city": "Москва"}, ensure_ascii=False),
             "{broken", json.dumps({"_id": "y", "text": ""}), json.dumps({"_id": "x", "text": "Второй икс."}),
             json.dumps({"_id": "z", "text": "Зет.", "tags": ["a", 1, None]}, ensure_ascii=False)]
    (corpus / "sub" / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (corpus / "sub" / "d.jsonl").write_text(json.dumps({"_id": "z", "text": "Другой зет."}, ensure_ascii=False)
                                            + "\n", encoding="utf-8")
    (corpus / "sub" / "page.html").write_text(
        "<html lang='ru'><head><title>Страница</title><meta name='author' content='Автор'></head><body><article>"
        + "<p>Абзац страницы о городе и его жителях, довольно длинный для извлечения.</p>" * 5
        + "</article></body></html>", encoding="utf-8")
    write_pdf(corpus / "sub" / "deeper" / "report.pdf", [["Page one text."], [], ["Page three text."]], title="Отчёт")
    write_docx(corpus / "sub" / "deeper" / "memo.docx", ["Служебная записка.", "Второй абзац."], heading="Записка")
    (corpus / "sub" / "deeper" / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    os.symlink(corpus / "a.txt", corpus / "sub" / "link-to-a.txt")
    os.symlink(corpus / "nowhere.txt", corpus / "sub" / "dangling.txt")
    os.symlink(corpus, corpus / "sub" / "loop")
    os.mkfifo(corpus / "sub" / "pipe.txt")
    name = os.fsdecode(b"caf\xe9.txt")  # not UTF-8: kept as surrogates
    (corpus / "sub" / name).write_text("Кафе.", encoding="utf-8")
    extra = root / "extra.txt"
    extra.write_text("Отдельный файл.", encoding="utf-8")
    return [corpus, extra, root / "missing.txt", corpus / "a.txt", corpus / "notes.csv"]
