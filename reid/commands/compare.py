"""`reid compare A B`: is the change from revision A to B real, or noise of the test set?

For each dataset, backbone and stage (plain and re-ranked) both revisions evaluated, it reads
their per-query results (`metrics/<ds>/per_query*/<backbone>.csv`) straight from git (a git
revision, or a DVC experiment name, which is a git ref under refs/exps/) or from the working
tree, and gives the paired bootstrap interval and p-value of the change in mAP and rank-1 over
the same queries (`reid.metrics.bootstrap.paired_difference`: query identities resampled).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reid.errors import InputError
from reid.metrics.bootstrap import paired_difference, per_query_scores

WORKSPACE = "workspace"
PER_QUERY = re.compile(
    r"^metrics/(?P<ds>[^/]+)/(?P<folder>per_query(?:_rerank)?)/(?P<b>[^/]+)\.csv$"
)
STAGES = {"per_query": "plain", "per_query_rerank": "re-ranked"}


@dataclass(frozen=True)
class Revision:
    name: str  # as the user gave it
    ref: str | None  # the git object to read from; None: the working tree


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def resolve(rev: str, root: Path) -> Revision:
    """`workspace`, a DVC experiment name (refs/exps/.../<name>) or any git revision."""
    if rev == WORKSPACE:
        return Revision(rev, None)
    refs = _git(root, "for-each-ref", "--format=%(refname)", "refs/exps/").stdout.split()
    named = [r for r in refs if r.rsplit("/", 1)[-1] == rev and not r.startswith("refs/exps/exec")]
    if len(named) > 1:
        raise InputError(f"{rev}: several DVC experiments have this name ({', '.join(named)}); "
                         "give one of these refs")
    if named:
        return Revision(rev, named[0])
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode:
        raise InputError(f"{rev}: neither a git revision nor a DVC experiment name "
                         "(see `git log`, `dvc exp list`)")
    return Revision(rev, found.stdout.strip())


def per_query_files(revision: Revision, root: Path) -> dict[tuple[str, str, str], str]:
    """(dataset, folder, backbone) -> path of every per-query file the revision holds."""
    if revision.ref is None:
        paths = [str(p.relative_to(root)) for p in root.glob("metrics/*/per_query*/*.csv")]
    else:
        paths = _git(root, "ls-tree", "-r", "--name-only", revision.ref, "--",
                     "metrics").stdout.split()
    found = {}
    for path in paths:
        match = PER_QUERY.match(path)
        if match:
            found[(match["ds"], match["folder"], match["b"])] = path
    return found


COLUMNS = ("path", "pid", "ap", "first_match_rank")


def read_text(revision: Revision, path: str, root: Path) -> str | None:
    """A file's text at the revision, or None where it does not exist."""
    if revision.ref is None:
        return (root / path).read_text() if (root / path).is_file() else None
    shown = _git(root, "show", f"{revision.ref}:{path}")
    return None if shown.returncode else shown.stdout


def read_table(revision: Revision, path: str, root: Path) -> pd.DataFrame:
    text = read_text(revision, path, root)
    if text is None:
        raise InputError(f"{revision.name}:{path}: cannot be read")
    table = pd.read_csv(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{revision.name}:{path}: not a per-query file (no {', '.join(missing)})")
    return table


def check_same_gallery(a: Revision, b: Revision, folder: str, root: Path, where: str) -> None:
    """Refuse results scored against different galleries (the bootstrap holds it fixed)."""
    texts = [read_text(r, f"{folder}/gallery.json", root) for r in (a, b)]
    if None in texts:
        print(f"warning: {where}: no gallery record in "
              f"{' and '.join(r.name for r, t in zip((a, b), texts, strict=True) if t is None)}"
              "; cannot check both used the same gallery", file=sys.stderr)
        return
    ga, gb = (json.loads(t) for t in texts)
    if ga != gb:
        raise InputError(f"{where}: the two revisions scored against different galleries "
                         f"({ga['num_gallery']} vs {gb['num_gallery']} images; {ga['protocol']!r} "
                         f"vs {gb['protocol']!r}); a paired comparison needs the same gallery")


def compare_tables(
    a: pd.DataFrame, b: pd.DataFrame, *, where: str, resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per metric: both values, the paired change b - a, its interval and p-value."""
    if len(a) != len(b) or set(a["path"]) != set(b["path"]):
        only_a = sorted(set(a["path"]) - set(b["path"]))[:3]
        only_b = sorted(set(b["path"]) - set(a["path"]))[:3]
        raise InputError(
            f"{where}: the two revisions evaluated different query sets ({len(a)} and {len(b)} "
            f"valid queries; e.g. only in the first {only_a}, only in the second {only_b}); "
            "a paired comparison needs the same queries"
        )
    b = b.set_index("path").loc[a["path"]].reset_index()
    if not (a["pid"].to_numpy() == b["pid"].to_numpy()).all():
        raise InputError(f"{where}: the same query files carry other identities in the two "
                         "revisions (another split of the data)")
    sa = per_query_scores(a["ap"].to_numpy(), a["first_match_rank"].to_numpy())
    sb = per_query_scores(b["ap"].to_numpy(), b["first_match_rank"].to_numpy())
    groups = a["pid"].to_numpy()
    return {
        metric: {"a": round(float(sa[metric].mean()), 2), "b": round(float(sb[metric].mean()), 2),
                 **paired_difference(sa[metric], sb[metric], groups, resamples=resamples,
                                     seed=seed)}
        for metric in sa
    }


def verdict(change: dict[str, Any]) -> str:
    if not change["significant"]:
        return "no significant difference"
    return "higher in B (significant)" if change["delta"] > 0 else "lower in B (significant)"


def compare(rev_a: str, rev_b: str, root: Path, *, resamples: int, seed: int) -> dict:
    """{dataset: {backbone: {stage: {metric: change}}}} for every result both revisions hold."""
    a, b = resolve(rev_a, root), resolve(rev_b, root)
    files_a, files_b = per_query_files(a, root), per_query_files(b, root)
    for revision, files in ((a, files_a), (b, files_b)):
        if not files:
            raise InputError(f"{revision.name}: no per-query results (metrics/<dataset>/"
                             "per_query/<backbone>.csv); evaluate it with this version first")
    common = sorted(set(files_a) & set(files_b))
    if not common:
        raise InputError(f"{a.name} and {b.name} share no dataset and backbone to compare")
    out: dict[str, Any] = {}
    for ds, folder, backbone in common:
        where = f"{ds}/{backbone} ({STAGES[folder]})"
        check_same_gallery(a, b, f"metrics/{ds}/{folder}", root, where)
        change = compare_tables(
            read_table(a, files_a[ds, folder, backbone], root),
            read_table(b, files_b[ds, folder, backbone], root),
            where=where, resamples=resamples, seed=seed,
        )
        out.setdefault(ds, {}).setdefault(backbone, {})[STAGES[folder]] = change
    return out


def format_report(result: dict, name_a: str, name_b: str, resamples: int) -> str:
    lines = [f"A = {name_a}, B = {name_b}; change B - A with its paired 95% bootstrap interval "
             "(query identities resampled) and p-value"]
    header = f"{'dataset':<12} {'backbone':<16} {'stage':<10} {'metric':<6} " \
             f"{'A':>7} {'B':>7} {'B - A':>7} {'95% interval':>17} {'p':>7}  verdict"
    lines += [header, "-" * len(header)]
    for ds, backbones in result.items():
        for backbone, stages in backbones.items():
            for stage, metrics in stages.items():
                for metric, c in metrics.items():
                    interval = f"[{c['interval'][0]:+.2f}, {c['interval'][1]:+.2f}]"
                    p = (f"<{1 / resamples:.0e}" if c["p_value"] <= 1 / resamples
                         else f"{c['p_value']:.3f}")
                    lines.append(
                        f"{ds:<12} {backbone:<16} {stage:<10} {metric:<6} {c['a']:>7.2f} "
                        f"{c['b']:>7.2f} {c['delta']:>+7.2f} {interval:>17} "
                        f"{p:>7}  {verdict(c)}"
                    )
    count = len(lines) - 3
    lines += ["", f"Test-set noise only: each line holds two fixed models; training runs vary "
              f"too (see benchmarks/README.md). With {count} comparisons at 95%, about "
              f"{count / 20:.1f} would be flagged by chance alone."]
    return "\n".join(lines)


def _at_least_100(text: str) -> int:
    value = int(text)
    if value < 100:
        raise argparse.ArgumentTypeError(f"at least 100 resamples, got {value}")
    return value


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="is the change in mAP / rank-1 between two revisions significant?",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("rev_a", nargs="?", default="HEAD",
                        help="git revision or DVC experiment name (default: HEAD)")
    parser.add_argument("rev_b", nargs="?", default=WORKSPACE,
                        help=f"another one, or '{WORKSPACE}' for the working tree (default)")
    parser.add_argument("--resamples", type=_at_least_100, default=10000,
                        help="bootstrap resamples (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode:
        raise InputError("reid compare runs inside the project's git repository")
    root = Path(top.stdout.strip())
    result = compare(args.rev_a, args.rev_b, root, resamples=args.resamples, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_report(result, args.rev_a, args.rev_b, args.resamples))
    return 0
