"""The ``ragkit`` command: a thin layer that parses options, calls the library and prints.

Heavy modules (the library, rich, numpy) are imported inside the commands, so ``ragkit --help``
stays fast. Every :class:`~ragkit.errors.RagkitError` becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from ragkit.cli.describe import languages_line, vectors_line
from ragkit.cli.engine import EngineOpt, RayAddressOpt, VerboseOpt, WorkersOpt, engine_for
from ragkit.errors import RagkitError

app = typer.Typer(
    name="ragkit",
    help="Index article collections and search them (dense embeddings + FAISS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

IndexOpt = Annotated[Optional[Path], typer.Option("--index", "-i", help="Index folder [default: ./index].")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="The index's model: sentence-transformers name or local path, or navec-ru [default: the index's own].")]
BuildModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="sentence-transformers model name or local path, or navec-ru [default: by the corpus language: navec-ru for Russian, else the packaged all-MiniLM-L6-v2].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def _errors() -> Iterator[None]:
    """Every error is one line on stderr and exit code 1 (130 for Ctrl-C), never a traceback.

    ragkit's own errors say what is wrong; errors that FAISS, SQLite or the system raise from a
    damaged file or a full disk are named by their source (see :func:`_one_line`). Set
    ``RAGKIT_DEBUG=1`` to get the traceback of anything that is not a RagkitError.
    """
    from ragkit.cli.console import first_line, one_line, print_error

    try:
        yield
    except RagkitError as exc:
        print_error(first_line(_message(exc)))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        print_error("interrupted")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the one-line promise
        import os

        if os.environ.get("RAGKIT_DEBUG"):
            raise
        print_error(one_line(exc))
        raise typer.Exit(1) from None


_FLAGS = {"index_type": "--index-type", "recall": "--recall", "max_tokens": "--max-tokens",
          "overlap_tokens": "--overlap", "since": "--since", "until": "--until", "source": "--source",
          "where": "--where"}


def _message(exc: RagkitError) -> str:
    """The library's one-line message in the command line's words."""
    import re

    from ragkit.errors import IndexNotFoundError

    text = str(exc)
    if exc.param in _FLAGS:
        for param, flag in _FLAGS.items():
            text = re.sub(rf"(?<![\w-]){param}(?![\w-])", flag, text)
    if isinstance(exc, IndexNotFoundError):
        text += "; build one with `ragkit index PATH`"
    return text


def _progress(enabled: bool = True):  # noqa: ANN202
    from ragkit.cli.console import RichProgress
    from ragkit.progress import NoProgress

    # Bars only for a person at a terminal: pipes, logs and tests get clean stderr.
    return RichProgress() if enabled and sys.stderr.isatty() else NoProgress()


NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Fail at once if another process is writing the index.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _on_wait() -> None:
    typer.echo("ragkit: another process is writing this index; waiting for it to finish...", err=True)


def _report(result, as_json: bool, verb: str) -> None:  # noqa: ANN001
    skipped = [{"location": loc, "reason": why} for loc, why in result.report.skipped]
    if as_json:
        typer.echo(json.dumps({"index": str(result.path), "documents": result.documents, "passages": result.passages,
                               "embedded": result.embedded, "added": result.added, "removed": result.removed,
                               "unchanged": result.unchanged,
                               "skipped": skipped}, ensure_ascii=False))
        return
    if result.unchanged:
        typer.echo(f"Unchanged {result.path}: {result.documents} documents, {result.passages} passages "
                   "(same files, same settings; --force rebuilds)")
        return
    cached = result.passages - result.embedded
    typer.echo(f"{verb} {result.path}: {result.documents} documents, {result.passages} passages "
               f"({result.embedded} embedded, {cached} from cache)")
    if skipped:
        typer.echo(f"Skipped {len(skipped)}:", err=True)
        for s in skipped[:50]:
            typer.echo(f"  {s['location']}: {s['reason']}", err=True)
        if len(skipped) > 50:
            typer.echo(f"  ... and {len(skipped) - 50} more (use --json for all)", err=True)


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.txt, .md, .jsonl, .jsonl.gz; with ragkit[formats]: .html, .htm, .warc, .warc.gz, .pdf, .docx).", show_default=False)],
    index_dir: IndexOpt = None,
    model: BuildModelOpt = None,
    index_type: Annotated[str, typer.Option(
        "--index-type", "--factory",
        help="auto, flat, hnsw, hnsw-sq8, ivf-sq8, ivfpq, or a FAISS factory string (auto: exact up to 100k "
             "passages, then 8-bit inverted lists).")] = "auto",
    recall: Annotated[float, typer.Option(help="recall@10 target an approximate index type is tuned to.")] = 0.95,
    max_tokens: Annotated[Optional[int], typer.Option(help="Passage size in model tokens [default: the model's window].")] = None,
    overlap: Annotated[int, typer.Option(help="Tokens of whole sentences repeated between passages.")] = 0,
    title_prefix: Annotated[bool, typer.Option(help="Embed a separate document title with each passage.")] = True,
    language_vectors: Annotated[bool, typer.Option(
        help="Embed a minority language the main model does not read (English in a Russian archive, or Russian in "
             "an English one; at least 10 documents and 1 %) with its own model too, for its queries.")] = True,
    no_wait: NoWaitOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the corpus and settings are unchanged.")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None, workers: WorkersOpt = 2, verbose: VerboseOpt = False,
) -> None:
    """Build an index from files and folders (replaces what the index held; unchanged passages are not re-embedded)."""
    with _errors():
        from ragkit import BuildOptions, build_index
        from ragkit.paths import default_index_dir

        options = BuildOptions(index_type=index_type, recall=recall, max_tokens=max_tokens, overlap_tokens=overlap,
                               title_prefix=title_prefix, language_vectors=language_vectors)
        with engine_for(engine, ray_address, workers, verbose) as executor:
            result = build_index(paths, index_dir or default_index_dir(), model=model, options=options,
                                 progress=_progress(not quiet), wait=not no_wait, on_wait=_on_wait, force=force,
                                 executor=executor)
        _report(result, as_json, "Indexed")


@app.command()
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to add; documents with a known id replace it.", show_default=False)],
    index_dir: IndexOpt = None, no_wait: NoWaitOpt = False, as_json: JsonOpt = False, quiet: QuietOpt = False,
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None, workers: WorkersOpt = 2, verbose: VerboseOpt = False,
) -> None:
    """Add or update documents in an existing index (only new or changed text is embedded)."""
    _update(index_dir, no_wait, as_json, quiet, (engine, ray_address, workers, verbose), add=paths)


@app.command()
def remove(
    doc_ids: Annotated[Optional[list[str]], typer.Argument(help="Ids of the documents to remove.", show_default=False)] = None,
    source: Annotated[Optional[str], typer.Option(help="Remove the documents whose source path matches this glob.")] = None,
    index_dir: IndexOpt = None, no_wait: NoWaitOpt = False, as_json: JsonOpt = False, quiet: QuietOpt = False,
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None, workers: WorkersOpt = 2, verbose: VerboseOpt = False,
) -> None:
    """Remove documents from an index by id or by source glob."""
    _update(index_dir, no_wait, as_json, quiet, (engine, ray_address, workers, verbose), remove=doc_ids or [],
            remove_source=source)


def _update(index_dir: Path | None, no_wait: bool, as_json: bool, quiet: bool, engine: tuple,
            **changes: object) -> None:
    """``ragkit add`` and ``ragkit remove``: one update of the index, reported."""
    with _errors():
        from ragkit import update_index
        from ragkit.cli.inputs import check_glob
        from ragkit.errors import InvalidArgumentError
        from ragkit.paths import default_index_dir

        if "remove" in changes and not changes["remove"] and changes.get("remove_source") is None:
            raise InvalidArgumentError("give document ids or --source GLOB")
        check_glob(changes.get("remove_source"))  # type: ignore[arg-type]
        with engine_for(*engine) as executor:
            result = update_index(index_dir or default_index_dir(), progress=_progress(not quiet), wait=not no_wait,
                                  on_wait=_on_wait, executor=executor, **changes)  # type: ignore[arg-type]
        _report(result, as_json, "Updated")


ModeOpt = Annotated[str, typer.Option("--mode", help="hybrid (BM25 + dense), lexical (BM25) or dense.")]
DenseWeightOpt = Annotated[Optional[float], typer.Option("--dense-weight", help="Dense share of the hybrid score for queries in a language the model reads [default: the model's measured weight, 0.5 for all-MiniLM-L6-v2, 0.3 for navec-ru].")]
FusionOpt = Annotated[str, typer.Option("--fusion", help="Hybrid fusion: convex (normalised scores) or rrf.")]


def _fusion(method: str, dense_weight: float | None):  # noqa: ANN202
    from ragkit.search.fusion import FusionConfig

    return FusionConfig(method=method, dense_weight=dense_weight)


@app.command()
def search(
    query: Annotated[Optional[str], typer.Argument(help="What to search for.", show_default=False)] = None,
    index_dir: IndexOpt = None,
    k: Annotated[int, typer.Option("-k", "--top-k", help="Number of passages.")] = 10,
    queries: Annotated[Optional[str], typer.Option("--queries", help="File with one query a line ('-' for stdin).")] = None,
    mode: ModeOpt = "hybrid",
    since: Annotated[Optional[str], typer.Option(help="Only documents dated on or after YYYY-MM-DD.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Only documents dated on or before YYYY-MM-DD.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Only documents whose source path matches this glob.")] = None,
    where: Annotated[Optional[list[str]], typer.Option(
        "--where", metavar="FIELD=VALUE",
        help="Only documents whose metadata FIELD equals VALUE (repeat: all fields must match; "
             "the same field twice: either value).")] = None,
    per_doc: Annotated[int, typer.Option("--per-doc", help="At most this many passages per document (0: no limit).")] = 3,
    dense_weight: DenseWeightOpt = None,
    fusion: FusionOpt = "convex",
    model: ModelOpt = None,
    no_collapse: Annotated[bool, typer.Option("--no-collapse", help="Keep every copy of duplicate documents (reprints) instead of one per group.")] = False,
    rerank: Annotated[Optional[str], typer.Option("--rerank", help="Re-rank with this sentence-transformers CrossEncoder (name in the local cache or a folder) [default: off].")] = None,
    rerank_depth: Annotated[int, typer.Option("--rerank-depth", help="How many of the best passages --rerank re-scores.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Search an index. Without --index, the default index is (re)built from seeds/ when needed."""
    with _errors():
        from ragkit import search_response
        from ragkit.errors import InvalidArgumentError
        from ragkit.cli.inputs import check_glob
        from ragkit.store.filters import Filters, parse_where

        if k < 1:
            raise InvalidArgumentError(f"-k must be at least 1, got {k}")
        if per_doc < 0:
            raise InvalidArgumentError(f"--per-doc must be >= 0, got {per_doc}")
        texts = _read_queries(query, queries)
        check_glob(source)
        filters = Filters(since=since, until=until, source=source, where=parse_where(where or []))
        config = _fusion(fusion, dense_weight)
        idx = _open_for_search(index_dir, model)
        results = idx.search_many(texts, k, mode=mode, filters=filters, per_doc=per_doc or None, fusion=config,
                                  collapse=not no_collapse, rerank=rerank, rerank_depth=rerank_depth)
        for q, res in zip(texts, results):
            if as_json:
                typer.echo(json.dumps(search_response(q, mode, res), ensure_ascii=False))
            else:
                from ragkit.cli.console import print_results

                print_results(q, res, idx.lexical.analyzer)


def _read_queries(query: str | None, queries: str | None) -> list[str]:
    from ragkit.errors import InvalidArgumentError

    if query is not None and queries is not None:
        raise InvalidArgumentError("give a QUERY or --queries FILE, not both")
    if queries is None:
        if query is None or not query.strip():
            raise InvalidArgumentError("the query is empty")
        return [query]
    from ragkit.cli.inputs import query_lines

    lines = query_lines(queries)
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise InvalidArgumentError("the queries file holds no query")
    return texts


def _open_for_search(index_dir: Path | None, model: str | None):  # noqa: ANN202
    from ragkit.search.index import Index

    if index_dir is None:
        from ragkit.build.pipeline import ensure_index
        from ragkit.paths import default_index_dir, default_seeds_dir

        index_dir, seeds = default_index_dir(), default_seeds_dir()
        if seeds.is_dir():
            if ensure_index(index_dir, seeds, progress=_progress()):
                typer.echo(f"Built the default index from {seeds} into {index_dir}", err=True)
    return Index.open(index_dir, model=model)


@app.command()
def info(
    index_dir: IndexOpt = None,
    verify: Annotated[bool, typer.Option("--verify", help="Check full checksums and FAISS/SQLite/BM25 consistency.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Describe an index: model, chunking, counts, files."""
    with _errors():
        from ragkit.search.index import Index
        from ragkit.paths import default_index_dir

        idx = Index.open(index_dir or default_index_dir())
        data = idx.info()
        if verify:
            data["verified"] = idx.verify()
        if as_json:
            typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
            return
        m, c, ch, lex = data["model"], data["counts"], data.get("chunker") or {}, data.get("lexical") or {}
        lines = [
            f"index:     {data['path']} (format {data['format_version']}, ragkit {data.get('ragkit_version')}, created {data.get('created')})",
            f"model:     {m['name']} ({m['dimension']} dimensions, {m.get('metric', 'inner_product')}, normalised)",
            f"prompts:   query {m.get('query_prompt', '')!r}, passage {m.get('passage_prompt', '')!r}",
            f"chunking:  up to {ch.get('max_tokens')} tokens, overlap {ch.get('overlap_tokens')}, title prefix {ch.get('title_prefix')}",
            f"vectors:   {vectors_line(data['vectors'])}",
            *[f"           {languages_line(e)}" for e in (data.get("language_vectors") or {}).get("indexes") or []],
            f"lexical:   BM25 {lex.get('method')} (k1 {lex.get('k1')}, b {lex.get('b')}), analyzer "
            f"{(lex.get('analyzer') or {}).get('name')} in {lex.get('dir')}",
            f"contents:  {c['documents']} documents, {c['passages']} passages",
        ]
        sources = (data.get("sources") or {}).get("paths") or []
        if sources:
            lines.append(f"sources:   {', '.join(sources)}")
        if verify:
            lines.append(f"verified:  {data['verified']['files']} files match their checksums; FAISS, SQLite and BM25 agree")
        typer.echo("\n".join(lines))


@app.command("eval")
def eval_(
    dataset: Annotated[Path, typer.Argument(help="BEIR-layout folder (corpus.jsonl[.gz], queries.jsonl, qrels/).", show_default=False)],
    index_dir: IndexOpt = None,
    model: BuildModelOpt = None,
    split: Annotated[str, typer.Option(help="qrels split.")] = "test",
    mode: ModeOpt = "hybrid",
    compare: Annotated[bool, typer.Option("--compare", help="Run lexical, dense and hybrid side by side.")] = False,
    dense_weight: DenseWeightOpt = None,
    fusion: FusionOpt = "convex",
    as_json: JsonOpt = False,
) -> None:
    """Evaluate retrieval on a BEIR data set: nDCG@10, Recall@10/100, MRR@10."""
    with _errors():
        import tempfile

        from ragkit.eval.beir import load_beir
        from ragkit import build_index
        from ragkit.eval.metrics import evaluate
        from ragkit.search.index import Index
        from ragkit.format.manifest import MANIFEST_NAME

        data = load_beir(dataset, split)
        config = _fusion(fusion, dense_weight)
        modes = ["lexical", "dense", "hybrid"] if compare else [mode]
        with tempfile.TemporaryDirectory(prefix="ragkit-eval-") as tmp:
            target = index_dir or Path(tmp)
            if not (target / MANIFEST_NAME).is_file():
                build_index([data.corpus], target, model=model, progress=_progress())
            with Index.open(target, model=model) as idx:
                scores = {m: evaluate(idx, data, mode=m, fusion=config).to_dict() for m in modes}
                model_name = idx.manifest["model"]["name"]
        head = {"dataset": str(dataset), "split": split, "model": model_name}
        if as_json:
            body = {"modes": scores} if compare else {"mode": mode, **scores[mode]}
            typer.echo(json.dumps({**head, **body}, ensure_ascii=False))
            return
        queries = next(iter(scores.values()))["queries"]
        typer.echo(f"{dataset} ({split}, {queries} queries, model {model_name})")
        typer.echo(f"  {'mode':<9}" + "".join(f"{key:>12}" for key in ("ndcg@10", "recall@10", "recall@100", "mrr@10")))
        for m, res in scores.items():
            typer.echo(f"  {m:<9}" + "".join(f"{res[key]:>12.4f}" for key in ("ndcg@10", "recall@10", "recall@100", "mrr@10")))


def main() -> None:
    app()
