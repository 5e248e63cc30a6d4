"""Precision on a real corpus: run generate -> curate -> answer, draw 30 kept pairs with a fixed seed and
write a review sheet to read by hand, with the automatic proxies beside it.

    .venv/bin/python bench/bench_precision.py --corpus debian-reference [--pairs 30] [override ...]
    .venv/bin/python bench/bench_precision.py --corpus sample

Corpora: ``sample`` (the bundled manual), a folder name under ``../shared/corpora/`` (skipped, with the
reason, when absent: a user's clone has no shared/), or a path to your own file or folder.
``--attribution-only`` runs ingest alone and reports the attribution check: the share of
option and argument records whose owner is the command of the nearest usage line above them. The sheet (``bench/review_<corpus>.md``) lists,
for each drawn pair: question, answer, the fact it came from, page, heading, the pair's kind (template,
model-written, record) and an empty verdict column; the rule for a verdict is the one of
``bench/quality_review.md``: *the question asks about a fact of its own chunk in words a reader
understands, and the answer states that fact with no false statement*. The proxies (logged to MLflow on
every run by the answer stage) are repeated in the sheet's header: kept pairs, pages with a kept pair,
answer-type match share, debris share, template questions per kind.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner.core.artifacts import Answer, Generate, Ingest  # noqa: E402
from runner.documents.structure import attribution_checks  # noqa: E402
from runner.cli.compose import compose_config  # noqa: E402
from runner.core.jsonl import read_jsonl  # noqa: E402
from runner.engine.pipeline import run_pipeline  # noqa: E402
from runner.core.schema import validate  # noqa: E402

log = logging.getLogger("bench.precision")
CORPORA = ROOT.parent / "shared" / "corpora"


def corpus_documents(name: str) -> list[str]:
    if name == "sample":
        return [str(ROOT / "data" / "sample" / "manual.pdf")]
    if Path(name).exists():  # a file or folder of your own (every supported format)
        return [str(Path(name).resolve())]
    folder = CORPORA / name
    if not folder.is_dir():
        raise SystemExit(f"skipped: corpus {name!r} not found at {folder} (only the development machines have ../shared/corpora)")
    return [str(p) for p in sorted(folder.rglob("*.pdf"))]


def attribution_share(pages: list[dict[str, Any]], topic: str) -> dict[str, Any]:
    """The attribution check over a corpus's source text (its pages): option and argument records whose
    owner is the command of the nearest usage line above them, with the wrong ones listed."""
    heading = lambda page: (page.get("heading_path") or [""])[-1]  # noqa: E731
    checks = [(r, usage) for p in pages for r, usage in attribution_checks(p["text"], heading(p), topic)]
    wrong = [f"{r.name} given to {r.owner!r}, usage line above: {usage!r}" for r, usage in checks if r.owner != usage]
    return {"checked": len(checks), "right": len(checks) - len(wrong), "share": (len(checks) - len(wrong)) / len(checks) if checks else None, "wrong": wrong[:20]}


def run_corpus(name: str, workdir: Path, extra: list[str]) -> dict[str, Any]:
    documents = ",".join(corpus_documents(name))
    overrides = [
        f"paths.output_dir={workdir / 'outputs'}",
        f"paths.mlruns_dir={workdir / 'mlruns'}",
        "tracking.experiment=bench-precision",
        f"ingest.documents=[{documents}]",
        "until=dataset",
        *extra,  # a later until= wins
    ]
    cfg = compose_config(overrides, root=ROOT)
    validate(cfg)
    return run_pipeline(cfg)


def review_sheet(name: str, summary: dict[str, Any], pairs: int, seed: int) -> tuple[str, dict[str, Any]]:
    stage = {n: Path(s["path"]) for n, s in summary["stages"].items()}
    answers = read_jsonl(stage["answer"] / Answer.ANSWERS)
    pages = read_jsonl(stage["ingest"] / Ingest.PAGES)
    facts = {f["fact_id"]: f for f in read_jsonl(stage["generate"] / Generate.FACTS)}
    m = summary["metrics"]
    with_pair = {(a["source"], a["page"]) for a in answers}
    with_text = {(p["source"], p["page"]) for p in pages if p["text"].strip()}
    proxies = {
        "attribution": attribution_share(pages, ""),
        "kept_pairs": len(answers),
        "pages_with_text": len(with_text),
        "pages_with_a_kept_pair": len(with_pair & with_text),
        "pages_with_a_kept_pair_share": len(with_pair & with_text) / max(1, len(with_text)),
        "type_match_share": m.get("answer/check/type_match_share"),
        "debris_share": m.get("answer/debris_share"),
        "template_questions": dict(Counter(a.get("template") for a in answers if a.get("strategy") == "template")),
        "facts": m.get("generate/facts"),
        "facts_by_kind": {k.split("/")[-1]: v for k, v in m.items() if k.startswith("generate/facts/")},
    }
    drawn = random.Random(seed).sample(answers, min(pairs, len(answers)))
    lines = [
        f"# Review sheet: {len(drawn)} random kept pairs, corpus `{name}`",
        "",
        f"Drawn with `random.Random({seed}).sample(answers, {pairs})` over the {len(answers)} kept pairs of `answers.jsonl`.",
        "Rule: the question asks about a fact of its own chunk in words a reader understands, and the answer",
        "states that fact with no false statement. Verdict column: yes / no (+ why), filled in by hand.",
        "",
        "Automatic proxies: " + json.dumps(proxies, default=str),
        "",
        "| # | kind | page | heading | question | answer | fact (when it differs) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, pair in enumerate(drawn, start=1):
        fact = facts.get(pair.get("fact_id") or "", {})
        kind = pair.get("template") or ("record" if fact.get("kind") == "record" else pair.get("strategy"))
        fact_text = (pair.get("fact") or "") if (pair.get("fact") or "") != pair["answer"] else ""
        cells = [str(i), kind or "", str(pair["page"]), pair.get("heading") or fact.get("heading") or "", pair["question"], pair["answer"], fact_text, ""]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n", proxies


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="sample")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "bench-precision"))
    parser.add_argument("--attribution-only", action="store_true", help="ingest and chunk only, then the attribution check")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.attribution_only:
        summary = run_corpus(args.corpus, Path(args.workdir) / args.corpus, [*args.overrides, "until=ingest"])
        result = attribution_share(read_jsonl(Path(summary["stages"]["ingest"]["path"]) / Ingest.PAGES), "")
        log.info("attribution check on %s: %s", args.corpus, json.dumps(result, indent=1))
        return result
    summary = run_corpus(args.corpus, Path(args.workdir) / args.corpus, args.overrides)
    sheet, proxies = review_sheet(args.corpus, summary, args.pairs, args.seed)
    target = ROOT / "bench" / f"review_{args.corpus}.md"
    if target.exists() and "| yes" in target.read_text():
        target = target.with_name(f"review_{args.corpus}.new.md")  # never overwrite a sheet already read by hand
    target.write_text(sheet)
    out = ROOT / "bench" / "results" / f"precision_{args.corpus}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"corpus": args.corpus, "overrides": args.overrides, **proxies}, indent=2, default=str))
    log.info("review sheet: %s; proxies: %s", target, proxies)
    return proxies


if __name__ == "__main__":
    main()
