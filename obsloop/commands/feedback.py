"""``obsloop feedback check|audit``: validate a GitOps repository's manifests and policy the
way the feedback loop reads them, and list the loop's recorded decisions."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("feedback", help="check GitOps manifests and policy; list decisions")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate manifests and the policy file (file:line: reason)")
    check.add_argument("--repo", type=Path, help="repository folder (default: the configured feedback.git.remote)")
    check.set_defaults(func=run_check)
    audit = actions.add_parser("audit", help="list the loop's decisions, newest first")
    audit.add_argument("--deployment", help="only this namespace/name")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(func=run_audit)


def run_check(args: argparse.Namespace) -> int:
    from obsloop.commands._common import config_from
    from obsloop.core.manifests import DEFAULT_GLOBS, DEFAULT_POLICY_FILE, load_manifests
    from obsloop.feedback.policy import parse_policy

    config = config_from(args)
    git = config.feedback.git
    repo = args.repo or (Path(git.remote) if git and Path(git.remote).is_dir() else None)
    if repo is None:
        raise SystemExit("obsloop feedback check: pass --repo (feedback.git.remote is not a local folder)")
    globs = git.manifest_globs if git else list(DEFAULT_GLOBS)
    policy_name = git.policy_file if git else DEFAULT_POLICY_FILE
    found = load_manifests(repo, globs, exclude=[policy_name])
    errors = list(found.errors)
    policy_path = repo / policy_name
    policy = None
    if policy_path.exists():
        policy, error = parse_policy(policy_name, policy_path.read_text(encoding="utf-8"))
        if error is not None:
            errors.append(error)
    if policy is not None:
        errors.extend(e for m in found.manifests if (e := policy.check_references(m)) is not None)
    for error in sorted(errors, key=lambda e: (e.path, e.line)):
        print(error)
    policy_state = "valid" if policy else ("missing: only alerts allowed" if not policy_path.exists() else "invalid")
    print(f"{len(found.manifests)} manifests read, {len(errors)} problems; policy {policy_name}: {policy_state}")
    return 1 if errors else 0


def run_audit(args: argparse.Namespace) -> int:
    from obsloop.commands.query import run as run_query
    from obsloop.feedback.audit import AUDIT_TABLE

    deployment = (args.deployment or "").replace("\\", "\\\\").replace("'", "\\'")
    where = f"WHERE deployment = '{deployment}'" if args.deployment else ""
    args.sql = f"SELECT * FROM {AUDIT_TABLE} {where} ORDER BY time DESC LIMIT {int(args.limit)}"
    args.format, args.write = "table", False
    return run_query(args)
