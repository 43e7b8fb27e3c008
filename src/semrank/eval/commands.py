"""`semrank eval`: measure a first stage and its re-ranking against relevance judgments."""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from semrank._progress import progress
from semrank._words import count_of
from semrank.errors import InvalidInputError
from semrank.runtime.commands import BACKEND_HELP
from semrank.store.commands import (
    check_reranking_flags_used,
    folder_flag,
    piped_retriever,
    with_rerankers,
)

if TYPE_CHECKING:
    from rich.console import Console

    from semrank.eval.loaders import CandidateList, Qrels, Run
    from semrank.eval.metrics import Evaluation, PairedComparison
    from semrank.eval.reranking import RerankOutcome

FIRST_STAGE, RERANKED = "first_stage", "reranked"
DEFAULT_RETRIEVER = "bm25"


@dataclass(kw_only=True)
class _Results:
    """What one `semrank eval` invocation computed."""

    runs: dict[str, Run] = field(default_factory=dict)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    comparisons: list[PairedComparison] = field(default_factory=list)
    outcome: RerankOutcome | None = None
    model_name: str | None = None
    # Whether scores depend on the other documents re-ranked with them (pseudo-relevance
    # feedback): the depth curve, read from the full-depth scores, is then approximate.
    list_dependent: bool = False


def _path_value(value: str) -> Path:
    """An output flag's path, ``~`` expanded as --home and --from expand it (no shell expands
    it when quoted or in a unit file: "~/runs" made a folder named "~" in the current folder);
    blank (an unset shell variable) is refused, not read as the current folder."""
    if not value.strip():
        raise typer.BadParameter("is blank; give a path")
    return Path(value).expanduser()


def _output_option(flag: str, metavar: str, help_text: str) -> Any:
    return typer.Option(None, flag, metavar=metavar, parser=_path_value, help=help_text)


# Names a report or run folder is unlikely to have: `--report out/report.md` made a folder
# report.md and wrote out/report.md/report.md.
_FILE_SUFFIXES = frozenset({".md", ".trec", ".txt", ".tsv", ".json", ".html", ".png", ".csv"})


def eval_command(
    candidates: Path | None = typer.Option(
        None, "--candidates", help="Candidate lists JSON[.gz]: [{query, hits:[{qid, docid, ...}]}]."
    ),
    qrels: Path = typer.Option(..., "--qrels", help="Qrels: TREC (qid 0 docid rel) or BEIR TSV."),
    index: str | None = typer.Option(None, "--index", help="Retrieve from this semrank index."),
    queries: Path | None = typer.Option(
        None, "--queries", help="With --index: BEIR queries.jsonl, TREC topics or qid<TAB>text."
    ),
    retriever: str = typer.Option(
        DEFAULT_RETRIEVER,
        "--retriever",
        help="With --index: bm25, dense, hybrid or a retriever TREE.json (a pipe or - for stdin: "
        "its JSON); a comma-separated list "
        "(e.g. bm25,dense,hybrid,hybrid+rerank) compares several runs in one table, and a "
        "+rerank name re-ranks that first stage there.",
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Re-ranker (default: bundled)."),
    rerank: bool | None = typer.Option(
        None,
        "--rerank/--no-rerank",
        help="Re-rank? (default: yes with --candidates, no with --index).",
    ),
    backend: str | None = typer.Option(None, "--backend", help=BACKEND_HELP),
    feedback: bool = typer.Option(
        True,
        "--feedback/--no-feedback",
        help="The re-ranker's pseudo-relevance feedback (on where the model has it).",
    ),
    depth: int = typer.Option(
        100,
        "--depth",
        min=1,
        help="Re-rank the top N candidates. With --index, max(N, 100, the largest @cutoff of "
        "--measures) hits are retrieved per query.",
    ),
    measures: list[str] | None = typer.Option(
        None,
        "--measures",
        help="ir-measures names, comma-separated or repeated (nDCG@10,RR@10); binary measures "
        "count grade >= 1 as relevant, RR(rel=2)@10 counts >= 2 (TREC DL's convention).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object {run: {measure: value}}."
    ),
    run_out: Path | None = _output_option(
        "--run-out",
        "DIR",
        "Write TREC run files (RUN.trec) of the judged queries into this folder.",
    ),
    per_query: Path | None = _output_option(
        "--per-query", "FILE", "Write every query's value (TSV: run, measure, query, value) here."
    ),
    report: Path | None = _output_option(
        "--report", "DIR", "Write report.md here, with plots of what re-ranking changed."
    ),
    home: Path | None = typer.Option(
        None,
        "--home",
        parser=folder_flag,
        help="Where --index lives (default: $SEMRANK_HOME, else $XDG_DATA_HOME/semrank or "
        "~/.local/share/semrank).",
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        help="Where --index is kept: 'local' (the default, under --home) or a PostgreSQL DSN "
        "postgresql://user@host:port/db (default: $SEMRANK_STORE, unless --home is given).",
    ),
) -> None:
    """Evaluate first-stage results and their re-ranking (nDCG@10, RR@10, R@100, AP)."""
    from rich.console import Console

    from semrank.eval.loaders import load_qrels
    from semrank.eval.metrics import parse_measures, split_measure_names

    names = [str(m) for m in parse_measures(split_measure_names(measures))]
    retriever = piped_retriever(retriever, "eval --index NAME --queries Q --qrels R")
    _check_output_folders({"--run-out": run_out, "--report": report})
    if per_query is not None:  # checked before minutes of evaluation, not after
        if per_query.is_dir():
            raise InvalidInputError(f"--per-query {per_query} is a folder; name a file in it")
        _check_output_folders({"--per-query": per_query.parent})
    # Paths and names as written, and whole: hard-wrapped at 80 columns off a terminal, a path
    # or a tree's JSON could not be pasted back.
    stderr = Console(stderr=True, markup=False, soft_wrap=True)
    raw_judgments = load_qrels(qrels)
    judgments = _measured(raw_judgments, qrels, stderr)
    # Judged only below 0: said once by _measured, not again as unjudged or missing.
    left_out = frozenset(raw_judgments) - frozenset(judgments)
    do_rerank = rerank if rerank is not None else candidates is not None
    if index is not None:
        retriever, do_rerank = _single_rerank(retriever, rerank, do_rerank)
    if index is not None and _is_comparison(retriever, rerank, model, backend, feedback):
        if report is not None:
            raise InvalidInputError("--report takes one retriever; drop it or name one retriever")
        _compare_command(
            index,
            queries,
            judgments,
            retriever,
            names,
            depth,
            model,
            backend,
            stderr,
            feedback=feedback,
            as_json=as_json,
            run_out=run_out,
            per_query=per_query,
            home=home,
            store=store,
            left_out=left_out,
        )
        return
    if not do_rerank:
        tree_reranks = index is not None and _tree_reranks(retriever)
        _check_flags_without_rerank(model, backend, feedback, rerank, tree_reranks=tree_reranks)
    if candidates is not None and retriever != DEFAULT_RETRIEVER:
        raise InvalidInputError(
            "--retriever goes with --index; a candidates file holds its first stage already"
        )
    _resolve_first(model, backend)
    lists = _candidate_lists(
        candidates,
        index,
        queries,
        judgments,
        retriever,
        _retrieval_depth(depth, names, from_index=index is not None),
        stderr,
        home=home,
        store=store,
        left_out=left_out,
        backend=backend,
        feedback=feedback,
    )
    if run_out is not None:
        from semrank.eval.loaders import check_writable_as_runs

        check_writable_as_runs(lists)
    results = _evaluate(
        lists, judgments, names, depth, stderr, model, do_rerank, backend, feedback=feedback
    )
    if run_out is not None:
        _write_runs(results, run_out, stderr)
    if per_query is not None:
        _write_per_query(results.evaluations, per_query, stderr)
    if report is not None:
        _write_report(
            results,
            lists,
            judgments,
            names,
            report,
            stderr,
            source=str(candidates or f"index {index} ({' '.join(retriever.split())})"),
        )
    if as_json:
        typer.echo(json.dumps(_json_payload(results)))
        _print_throughput(results, stderr)
    else:
        _print_table(results, Console(markup=False))


def _check_flags_without_rerank(
    model: str | None,
    backend: str | None,
    feedback: bool,
    rerank: bool | None,
    *,
    tree_reranks: bool,
) -> None:
    """Where this command re-ranks nothing itself, --model would be ignored, and --backend and
    --no-feedback too unless the retriever tree holds a re-ranker (they reach that one)."""
    fix = (
        "with --index, re-ranking is off unless asked for: add --rerank (or use --retriever "
        "bm25+rerank)"
        if rerank is None
        else "drop --no-rerank, or drop the flag"
    )
    if model is not None:
        raise InvalidInputError(f"--model chooses the re-ranker; {fix}")
    check_reranking_flags_used(
        backend, feedback, reranks=tree_reranks, nothing=f"this evaluation re-ranks nothing; {fix}"
    )


def _tree_reranks(retriever: str) -> bool:
    """Whether a --retriever tree (a file or inline JSON) holds a text_similarity_reranker."""
    from semrank.eval._compare import RERANK_SUFFIX
    from semrank.pipeline import as_retriever, parse_shorthand, reranking_nodes

    base = retriever.removesuffix(RERANK_SUFFIX)
    return parse_shorthand(base) is None and bool(reranking_nodes(as_retriever(base)))


def _single_rerank(retriever: str, rerank: bool | None, do_rerank: bool) -> tuple[str, bool]:
    """A lone ``X+rerank`` is ``X`` re-ranked by this command (its flags, its first_stage /
    reranked runs and report), as ``--retriever X --rerank``."""
    from semrank.eval._compare import RERANK_SUFFIX, split_retrievers

    name = retriever.strip()
    if len(split_retrievers(name)) > 1 or not name.endswith(RERANK_SUFFIX):
        return retriever, do_rerank
    if rerank is False:
        raise InvalidInputError(
            f"--retriever {retriever!r} asks for re-ranking, which --no-rerank turns off; drop "
            "one of them"
        )
    return name.removesuffix(RERANK_SUFFIX), True


def _is_comparison(
    retriever: str, rerank: bool | None, model: str | None, backend: str | None, feedback: bool
) -> bool:
    """Whether ``--retriever`` names runs for the comparison table (a list, or a name with
    +rerank: that one is re-ranked there, with the flags every +rerank run takes), checked
    before anything is retrieved: a bad name last in the list used to fail after the others
    had been retrieved and re-ranked."""
    from semrank.eval._compare import RERANK_SUFFIX, split_retrievers

    names = split_retrievers(retriever)
    for name in names:
        _check_retriever_name(name)
    reranked = any(name.endswith(RERANK_SUFFIX) for name in names)
    if len(names) == 1 and not reranked:
        return False
    if rerank is not None:
        raise InvalidInputError(
            f"--rerank/--no-rerank go with one retriever; --retriever {retriever!r} says which "
            "runs are re-ranked by their +rerank suffix (e.g. bm25,bm25+rerank)"
        )
    if not reranked and model is not None:
        raise InvalidInputError(
            f"--model chooses the re-ranker, which no run of --retriever {retriever!r} uses; add "
            "+rerank to a name (e.g. bm25,bm25+rerank) or drop it"
        )
    check_reranking_flags_used(
        backend,
        feedback,
        reranks=reranked or any(_tree_reranks(name) for name in names),
        nothing=f"no run of --retriever {retriever!r} re-ranks; add +rerank to a name (e.g. "
        "bm25,bm25+rerank) or drop it",
    )
    return True


def _check_retriever_name(name: str) -> None:
    from semrank.eval._compare import RERANK_SUFFIX
    from semrank.pipeline import parse_shorthand

    base = name.removesuffix(RERANK_SUFFIX)
    inline = base.lstrip().startswith("{")  # a tree given as JSON text
    if parse_shorthand(base) is None and not inline and not Path(base).expanduser().is_file():
        raise InvalidInputError(
            f"--retriever {name!r} is neither bm25, dense, hybrid nor linear (each with an "
            "optional +rerank) nor a retriever JSON file that exists"
        )


def _retrieval_depth(depth: int, measures: list[str], *, from_index: bool = True) -> int:
    """Hits retrieved per query: the re-ranking depth, at least 100, and every measure's cutoff
    (R@1000 over 100 hits was silently R@100). Measures without a cutoff (AP) read what is
    retrieved, as trec_eval reads a run."""
    from semrank._checks import MAX_COUNT

    cutoffs = [int(match) for name in measures for match in re.findall(r"@(\d+)", name)]
    deepest = max([depth, 100, *cutoffs])
    if from_index and deepest > MAX_COUNT:  # an index search returns at most MAX_COUNT hits
        what = f"--depth {depth}" if deepest == depth else f"a --measures cutoff @{deepest}"
        raise InvalidInputError(
            f"{what} would retrieve {deepest:,} hits per query from the index, over the "
            f"{MAX_COUNT:,} a search returns; use a smaller one"
        )
    return deepest


def _check_output_folders(folders: dict[str, Path | None]) -> None:
    """Fail on a folder that cannot be made before the evaluation, not after. The writers make
    the folders, so an input refused later leaves no empty folder behind."""
    for option, folder in folders.items():
        if folder is not None and folder.suffix.lower() in _FILE_SUFFIXES and not folder.is_dir():
            raise InvalidInputError(
                f"{option} {folder} looks like a file name, and {option} takes a folder to write "
                f"into; give the folder ({folder.parent})"
            )
        problem = None if folder is None else _folder_problem(folder)
        if problem is not None:
            raise InvalidInputError(
                f"{option} {folder}: cannot create this folder ({problem}); "
                "pass a folder you can write to"
            )


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` could not be made and written into, judged by its nearest existing
    ancestor (None: it can)."""
    path = folder.absolute()
    for candidate in (path, *path.parents):
        try:
            is_dir = candidate.is_dir()
            exists = is_dir or os.path.lexists(candidate)  # a dangling link exists too
        except OSError as exc:  # a name too long
            return exc.strerror or str(exc)
        if not exists:
            continue
        if not is_dir:
            link = " (a link to no folder)" if candidate.is_symlink() else ""
            return f"{candidate} is not a folder{link}"
        if not os.access(candidate, os.W_OK | os.X_OK):
            return f"{candidate} is not writable"
        return None
    return None


def _resolve_first(model: str | None, backend: str | None) -> None:
    """A model folder or name that does not resolve, or a backend this machine cannot run,
    named before the retrieval: they were found only once every query had been retrieved."""
    if model is not None:
        from semrank.models import resolve

        resolve(model)
    if backend is not None:
        from semrank.runtime import require_device, resolve_backend

        require_device(resolve_backend(backend))


def _candidate_lists(
    candidates: Path | None,
    index: str | None,
    queries: Path | None,
    judgments: Qrels,
    retriever: str,
    k: int,
    console: Console,
    *,
    home: Path | None = None,
    store: str | None = None,
    left_out: frozenset[str] = frozenset(),
    backend: str | None = None,
    feedback: bool = True,
) -> list[CandidateList]:
    """The candidates of a file, or retrieved from ``index`` by ``retriever``, whose own
    re-rankers (a tree's text_similarity_reranker) run with ``backend`` and ``feedback``."""
    from semrank.eval.first_stage import retrieve_candidates
    from semrank.eval.loaders import check_query_text, load_candidates, load_queries
    from semrank.pipeline import as_retriever

    if (candidates is None) == (index is None):
        raise InvalidInputError("give exactly one of --candidates FILE or --index NAME")
    if candidates is not None:
        if queries is not None:
            raise InvalidInputError("--queries goes with --index; candidate files hold queries")
        lists = load_candidates(candidates)
        asked = {c.query_id for c in lists}
        _require_judged(asked, judgments, candidates, left_out)
        _note_coverage(lists, judgments, asked - left_out, "candidate query")
        # Unjudged queries cannot change any measure: don't spend re-ranking on them (TREC
        # DL 2019's official file: 200 queries, 43 judged, 4.6 times the scoring needed).
        return [c for c in lists if c.query_id in judgments]
    if queries is None:
        raise InvalidInputError("--index needs --queries FILE (queries.jsonl, topics or TSV)")
    all_topics = load_queries(queries)
    # Unjudged queries cannot change any measure: don't spend retrieval on them.
    topics = {qid: text for qid, text in all_topics.items() if qid in judgments}
    empty = sorted(qid for qid, text in topics.items() if not text.strip())
    if empty:  # the search would refuse it without naming the query or the file
        raise InvalidInputError(
            f"{queries}: judged query {empty[0]!r} has no text; give it its words (or drop its "
            "judgments)"
        )
    for qid, text in sorted(topics.items()):  # invisible characters only, a lone surrogate
        check_query_text(text, f"{queries}: judged query {qid!r}")
    _require_judged(set(all_topics), judgments, queries, left_out)
    _check_eval_window(retriever, k)
    tree = with_rerankers(as_retriever(retriever, size=k), backend=backend, feedback=feedback)
    with progress(console, "retrieving", len(topics)) as advance:
        lists = retrieve_candidates(
            topics,
            index=str(index),
            retriever=tree,
            k=k,
            on_query=lambda: advance(1),
            home=home,
            store=store,
        )
    asked = set(all_topics) - left_out
    _note_coverage(lists, judgments, asked, f"query of {queries.name}", retriever)
    return lists


def _check_eval_window(retriever: str, k: int) -> None:
    """A tree whose top window is below the ``k`` hits measured is refused: R@100 over its 20
    hits was silently R@20 (a text_similarity_reranker's default window is 10)."""
    from semrank.pipeline import as_retriever, check_window

    try:
        check_window(as_retriever(retriever, size=k), k, "the hits measured")
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"--retriever {retriever[:80]!r}: {exc}; `semrank eval` measures {k} hits per query "
            "(--depth, at least 100 and the largest @cutoff of --measures)"
        ) from None


def _require_judged(
    query_ids: set[str], judgments: Qrels, source: Path, left_out: frozenset[str]
) -> None:
    """Otherwise every measure would be a silent 0.0 over nothing that was judged."""
    if not query_ids:
        raise InvalidInputError(f"{source} holds no queries; give at least one")
    if not query_ids.isdisjoint(judgments):
        return
    if query_ids & left_out:
        raise InvalidInputError(
            f"every query of {source} that the qrels judge is judged only below 0 "
            f"({_some_ids(sorted(query_ids & left_out), 3)}), which nothing can be measured by; "
            "give them labels of 0 or above"
        )
    ours, judged = sorted(query_ids), sorted(judgments)
    fix = "check that the query ids and the qrels come from the same collection"
    if {qid.lstrip("0") for qid in ours} & {qid.lstrip("0") for qid in judged}:
        fix = "their ids differ in leading zeros (e.g. '1' and '01'): write them alike"
    raise InvalidInputError(
        f"no query id of {source} ({_some_ids(ours, 3)}) appears in the qrels "
        f"({_some_ids(judged, 3)}); {fix}"
    )


def _note_coverage(
    lists: list[CandidateList],
    judgments: Qrels,
    asked: set[str],
    kind: str,
    retriever: str | None = None,
) -> None:
    """One stderr note on the queries that make the means differ from what was ranked.

    Judged queries without results count as 0 (trec_eval -c, so skipping queries cannot help
    a run) and unjudged ones cannot be scored; both are right, but neither may pass unsaid.
    """
    unranked = sorted(set(judgments) - {c.query_id for c in lists if c.hits})
    unjudged = sorted(asked - set(judgments))
    parts = []
    if unranked:
        judged = count_of(len(judgments), "judged query", "judged queries")
        verb = "has" if len(unranked) == 1 else "have"
        parts.append(
            f"{len(unranked)} of {judged} ({_some_ids(unranked)}) {verb} no query text or "
            f"candidates and count{'s' if len(unranked) == 1 else ''} as 0"
        )
    if unjudged:
        plural = kind.replace("query", "queries", 1)
        verbs = "has no judgments and is" if len(unjudged) == 1 else "have no judgments and are"
        parts.append(
            f"{count_of(len(unjudged), kind, plural)} ({_some_ids(unjudged)}) {verbs} left out"
        )
    unmatched = _judged_ids_unmatched(lists, judgments)
    if unmatched:
        parts.append(unmatched)
    if parts:
        where = f" ({retriever})" if retriever else ""
        typer.echo(f"note{where}: {'; '.join(parts)}", err=True)


def _judged_ids_unmatched(lists: list[CandidateList], judgments: Qrels) -> str | None:
    """Said when no document judged relevant for the ranked queries is among any of their
    hits: qrels naming documents otherwise than the candidates or index do ("doc184" for
    "184") gave a table of zeros and nothing else."""
    ranked = [c for c in lists if c.hits]
    relevant = sorted(
        {doc for c in ranked for doc, grade in judgments.get(c.query_id, {}).items() if grade > 0}
    )
    hit_ids = {hit.doc_id for c in ranked for hit in c.hits}
    if not relevant or not hit_ids or not hit_ids.isdisjoint(relevant):
        return None
    return (
        f"none of the {len(relevant):,} documents judged relevant ({_some_ids(relevant, 3)}) is "
        f"among the ranked documents ({_some_ids(sorted(hit_ids), 3)}): if the qrels name "
        "documents by other ids than the candidates or the index, every measure is 0"
    )


def _measured(judgments: Qrels, path: Path, stderr: Console) -> Qrels:
    """The judged queries measures are taken over, once for every count and note: a query
    judged only below 0 has nothing to measure by (and crashed trec_eval) and is left out."""
    from semrank.eval.metrics import measured_qrels

    if not judgments:
        raise InvalidInputError(
            f"{path} holds no judgments; give lines 'qid 0 docid relevance' (TREC) or "
            "'query-id<TAB>corpus-id<TAB>score' (BEIR)"
        )
    measured = measured_qrels(judgments)
    dropped = sorted(set(judgments) - set(measured))
    if dropped:
        verbs = (
            "is judged only below 0 and is"
            if len(dropped) == 1
            else "are judged only below 0 and are"
        )
        stderr.print(
            f"note: {count_of(len(dropped), 'query', 'queries')} of the qrels "
            f"({_some_ids(dropped)}) {verbs} left out (no label of 0 or above to measure by)"
        )
    return measured


def _some_ids(ids: list[str], shown: int = 5) -> str:
    return ", ".join(ids[:shown]) + (", ..." if len(ids) > shown else "")


def _evaluate(
    lists: list[CandidateList],
    judgments: Qrels,
    names: list[str],
    depth: int,
    console: Console,
    model: str | None,
    do_rerank: bool,
    backend: str | None,
    *,
    feedback: bool = True,
) -> _Results:
    from semrank.eval.loaders import candidates_to_run
    from semrank.eval.metrics import compare, evaluate
    from semrank.eval.reranking import reranked_run, score_candidates

    results = _Results()
    results.runs[FIRST_STAGE] = candidates_to_run(lists, FIRST_STAGE)
    results.evaluations[FIRST_STAGE] = evaluate(judgments, results.runs[FIRST_STAGE], names)
    if not do_rerank:
        return results
    from semrank import Reranker

    reranker = Reranker(model, backend=backend, feedback=feedback)
    results.model_name = reranker.name
    results.list_dependent = reranker.feedback is not None
    pairs = sum(min(depth, len(c.hits)) for c in lists)
    with progress(console, f"re-ranking with {reranker.name}", pairs) as advance:
        results.outcome = score_candidates(
            lists, lambda q, docs: reranker.score(q, docs, raw=True), depth=depth, on_query=advance
        )
    results.runs[RERANKED] = reranked_run(lists, results.outcome.scores, name=RERANKED)
    results.evaluations[RERANKED] = evaluate(judgments, results.runs[RERANKED], names)
    first, second = results.evaluations[FIRST_STAGE], results.evaluations[RERANKED]
    results.comparisons = [compare(first, second, name) for name in names]
    return results


def _compare_command(
    index: str,
    queries: Path | None,
    judgments: Qrels,
    retriever: str,
    names: list[str],
    depth: int,
    model: str | None,
    backend: str | None,
    stderr: Console,
    *,
    feedback: bool,
    as_json: bool,
    run_out: Path | None,
    per_query: Path | None,
    home: Path | None,
    store: str | None,
    left_out: frozenset[str],
) -> None:
    """Several retrievers (some re-ranked) on one index, evaluated side by side."""
    from rich.console import Console

    from semrank.eval._compare import RERANK_SUFFIX, compare_retrievers, split_retrievers
    from semrank.eval.reranking import reranked_run, score_candidates

    runs = split_retrievers(retriever)
    _resolve_first(model, backend)
    reranker: Any = None
    k = _retrieval_depth(depth, names)

    def retrieve(base: str) -> list[CandidateList]:
        lists = _candidate_lists(
            None, index, queries, judgments, base, k, stderr, home=home, store=store,
            left_out=left_out, backend=backend, feedback=feedback,
        )  # fmt: skip
        if run_out is not None:
            from semrank.eval.loaders import check_writable_as_runs

            check_writable_as_runs(lists)
        return lists

    def rerank(lists: list[CandidateList]) -> Run:
        nonlocal reranker
        if reranker is None:
            from semrank import Reranker

            reranker = Reranker(model, backend=backend, feedback=feedback)
        pairs = sum(min(depth, len(c.hits)) for c in lists)
        with progress(stderr, f"re-ranking with {reranker.name}", pairs) as advance:
            outcome = score_candidates(
                lists, lambda q, d: reranker.score(q, d, raw=True), depth=depth, on_query=advance
            )
        return reranked_run(lists, outcome.scores, name=RERANK_SUFFIX)

    result = compare_retrievers(runs, judgments, names, retrieve=retrieve, rerank=rerank)
    short = _short_names(list(result.evaluations), stderr)
    if per_query is not None:
        named = {short[name]: evaluation for name, evaluation in result.evaluations.items()}
        _write_per_query(named, per_query, stderr)
    if run_out is not None:
        from semrank.eval.loaders import write_trec_run

        files = _file_names([short[name] for name in result.runs])
        for name, run in result.runs.items():
            safe = files[short[name]]
            path = write_trec_run(run, run_out / f"{safe}.trec", tag=safe)
            renamed = safe != _file_safe(short[name])  # another run's file took its name
            stderr.print(f"wrote {path}" + (f" (run {short[name]})" if renamed else ""))
    if as_json:
        payload = {
            run: {m: _finite(v) for m, v in evaluation.aggregate.items()}
            for run, evaluation in result.evaluations.items()
        }
        typer.echo(json.dumps(payload))
        return
    _print_comparison(result, Console(markup=False), short)


def _print_comparison(result: Any, console: Console, short: dict[str, str]) -> None:
    from rich.table import Table

    from semrank.eval.report import format_p_value

    names = list(result.evaluations)
    first = result.evaluations[names[0]]
    vs = short[names[0]]
    judged = count_of(first.query_count, "judged query", "judged queries")
    table = Table(title=f"{judged} (p: paired t-test vs {vs})")
    # Folded, never cut: two runs or measures cut to one prefix read as the same.
    table.add_column("measure", overflow="fold")
    for name in names:
        table.add_column(short[name], justify="right", overflow="fold")
    for measure in first.aggregate:
        row = [measure, f"{first.aggregate[measure]:.4f}"]
        for name in names[1:]:
            value = result.evaluations[name].aggregate[measure]
            test = next(c for c in result.comparisons[name] if c.measure == measure)
            row.append(f"{value:.4f} (p {format_p_value(test.p_value)})")
        table.add_row(*row)
    console.print(table)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def _short_names(names: list[str], console: Console) -> dict[str, str]:
    """Names for files and TSV rows: an inline JSON tree is ``tree1``, ``tree2``... (its text
    made file names too long, and its newlines broke the TSV); the mapping goes to stderr."""
    short = {name: name for name in names if not name.lstrip().startswith("{")}
    taken = {_file_safe(name) for name in short.values()}
    number = 0
    for name in names:
        if name in short:
            continue
        number += 1
        while f"tree{number}" in taken:  # a retriever file named tree1 keeps its name
            number += 1
        short[name] = f"tree{number}"
        console.print(f"{short[name]} = {' '.join(name.split())}")
    return {name: short[name] for name in names}


def _file_safe(name: str) -> str:
    return name.replace("+", "_").replace("/", "_")


def _file_names(names: list[str]) -> dict[str, str]:
    """A file name for each run: two runs made file-safe alike ("a_b/t.json", "a/b_t.json")
    wrote one file, the second over the first; a later one takes a number."""
    files: dict[str, str] = {}
    for name in names:
        safe = candidate = _file_safe(name)
        number = 1
        while candidate in files.values():
            number += 1
            candidate = f"{safe}-{number}"
        files[name] = candidate
    return files


def _write_per_query(evaluations: dict[str, Evaluation], path: Path, console: Console) -> None:
    """Every query's value of every measure of every run: which queries a re-ranker helped or
    hurt (the report's plot shows the changes, not the queries)."""
    rows = ["run\tmeasure\tquery\tvalue"]
    for run, evaluation in evaluations.items():
        for measure, values in evaluation.per_query.items():
            rows += [f"{run}\t{measure}\t{query}\t{value:.6f}" for query, value in values.items()]
    from semrank._files import written_whole

    path.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(path) as partial:  # stopped halfway: no cut file that reads as whole
        partial.write_text("\n".join(rows) + "\n", encoding="utf-8")
    console.print(f"wrote {path}")


def _json_payload(results: _Results) -> dict[str, dict[str, float | None]]:
    return {
        run: {measure: _finite(value) for measure, value in evaluation.aggregate.items()}
        for run, evaluation in results.evaluations.items()
    }


def _throughput_line(results: _Results) -> str | None:
    outcome = results.outcome
    if outcome is None:
        return None
    return (
        f"re-ranked {outcome.pairs} pairs (depth {outcome.depth}) with {results.model_name} in "
        f"{outcome.seconds:.1f} s: {outcome.pairs_per_second:.1f} pairs/s"
    )


def _print_throughput(results: _Results, console: Console) -> None:
    line = _throughput_line(results)
    if line:
        console.print(line)


def _print_table(results: _Results, console: Console) -> None:
    from rich.table import Table

    from semrank.eval.report import format_p_value

    first = results.evaluations[FIRST_STAGE]
    second = results.evaluations.get(RERANKED)
    table = Table(title=count_of(first.query_count, "judged query", "judged queries"))
    table.add_column("measure", overflow="fold")
    table.add_column(FIRST_STAGE, justify="right")
    if second is not None:
        for column in (RERANKED, "Δ", "p (paired t)", "W / T / L"):
            table.add_column(column, justify="right")
    by_measure = {c.measure: c for c in results.comparisons}
    for measure, value in first.aggregate.items():
        row = [measure, f"{value:.4f}"]
        comparison = by_measure.get(measure)
        if second is not None and comparison is not None:
            new = second.aggregate[measure]
            row += [
                f"{new:.4f}",
                f"{new - value:+.4f}",
                format_p_value(comparison.p_value),
                f"{comparison.wins} / {comparison.ties} / {comparison.losses}",
            ]
        table.add_row(*row)
    console.print(table)
    _print_throughput(results, console)


def _write_runs(results: _Results, directory: Path, console: Console) -> None:
    from semrank.eval.loaders import write_trec_run

    for name, run in results.runs.items():
        path = write_trec_run(run, directory / f"{name}.trec", tag=f"semrank-{name}")
        console.print(f"wrote {path}")


def _write_report(
    results: _Results,
    lists: list[CandidateList],
    judgments: Qrels,
    names: list[str],
    directory: Path,
    console: Console,
    *,
    source: str,
) -> None:
    from semrank.eval.report import ReportData, write_report
    from semrank.eval.reranking import depth_curve

    details: dict[str, Any] = {"first stage": source}
    ranked = {c.query_id for c in lists if c.hits}
    unranked = sum(1 for query in judgments if query not in ranked)
    if unranked:  # said on stderr only: the report's counts and test statistics include them
        details["judged queries without candidates"] = (
            f"{unranked}: each counts as 0 for both runs (as trec_eval -c), so they are in the "
            "query count, the ties and the paired test"
        )
    curve: dict[int, dict[str, float]] = {}
    if results.outcome is None:
        console.print(
            "note: the report has no plots: they show what re-ranking changed; add --rerank"
        )
    else:
        details["re-ranker"] = results.model_name
        details["throughput"] = _throughput_line(results)
        curve = depth_curve(lists, results.outcome, judgments, names)
        if results.list_dependent:
            details["depth curve"] = (
                "from the full-depth scores; with the model's pseudo-relevance feedback a "
                "score depends on the documents re-ranked with it, so `--depth d` gives "
                "slightly different values (or use --no-feedback)"
            )
    data = ReportData(
        title="semrank evaluation",
        first_stage=results.evaluations[FIRST_STAGE],
        reranked=results.evaluations.get(RERANKED),
        comparisons=results.comparisons,
        depth_curve=curve,
        details=details,
    )
    console.print(f"wrote {write_report(data, directory)}")


def register(app: typer.Typer) -> None:
    """Add `semrank eval`."""
    from semrank.store.commands import home_beats_env_store

    with_store = home_beats_env_store(eval_command)

    @functools.wraps(eval_command)
    def chosen(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("candidates") is None or kwargs.get("index") is not None:
            return with_store(*args, **kwargs)
        # A candidates file reads no index: where indexes live is not asked (a bad
        # $SEMRANK_STORE failed the command), and a flag naming it would be ignored.
        for flag in ("home", "store"):
            if kwargs.get(flag) is not None:
                raise InvalidInputError(
                    f"--{flag} says where --index lives, and --candidates reads no index; "
                    f"drop --{flag}"
                )
        return eval_command(*args, **kwargs)

    app.command("eval")(chosen)
