"""What ``ragkit info`` says of an index's vector index (kept apart from the command module)."""

from __future__ import annotations


def vectors_line(v: dict) -> str:
    """The ``vectors:`` line of ``ragkit info``: type, search parameters, recall, tuning and its cost."""
    line = f"FAISS {v['factory']!r} (--index-type {v.get('index_type', v['factory'])}) in {v['file']}"
    t = v.get("tuning") or {}
    if not t.get("queries"):
        return line + "; exact search, recall@10 1.0" + _tuning_cost(t)
    params = ", ".join(f"{k} {val:g}" for k, val in (v.get("search") or {}).items())
    met = "" if t.get("reached") else f", target {t['target']:g} NOT reached"
    kind = "snippet" if t.get("query_kind") == "snippets" else "sample"
    line = (f"{line}; {params}: recall@10 {t['recall@10']:.3f} on {t['queries']} {kind} queries, "
            f"{t['held_out_recall@10']:.3f} on {t['queries']} held-out (target {t['target']:g}{met})" + _tuning_cost(t))
    r = v.get("retrain") or {}
    if r.get("passages"):
        line += (f"; trained and tuned at {r['passages']:,} passages, {r.get('changed', 0):,} changed since "
                 f"(retrained past {100 * float(r.get('share', 0.1)):g} %)")
    if v.get("tombstones"):
        line += f"; {v['tombstones']:,} removed passages' vectors skipped until then"
    return line


def languages_line(entry: dict) -> str:
    """A ``ragkit info`` line for a minority language's second vector index."""
    return (f"{entry['language']} queries: {entry['model']['name']} over {entry['passages']:,} passages of "
            f"{entry['documents']:,} {entry['language']} documents, FAISS {entry['factory']!r} in {entry['file']}")


def _tuning_cost(t: dict) -> str:
    """What tuning (and auto's type trials) cost, and what the chosen type costs against exact search."""
    out = ""
    if "tuning_seconds" in t:
        share = f", {100 * t['share']:.1f} % of the build" if "share" in t else ""
        out += f"; tuning {t['tuning_seconds']:g} s{share}"
    final = (t.get("selection") or {}).get("final")
    if final:
        verdict = "kept" if final["kept"] else "exact search kept instead"
        out += f"; {final['factory']} {final['ms']:g} ms/query vs exact {final['exact_ms']:g} ms ({verdict})"
    return out
