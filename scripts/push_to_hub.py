#!/usr/bin/env python
"""Publish a saved model folder (ensemble, base model, VisE) or the Space to the Hub, keeping its model card.

Usage:
    python scripts/push_to_hub.py outputs/demo/ensemble --repo-id me/memotion-demo --dry-run
    python scripts/push_to_hub.py outputs/demo/ensemble --repo-id me/memotion-demo --private
    python scripts/push_to_hub.py space --repo-id me/memotion-space --repo-type space

Needs a token (`hf auth login` or HF_TOKEN) except with --dry-run, which lists the files a real run uploads.
"""

from __future__ import annotations

import argparse
import sys

from hf_memotion.hub.publishing import HubPublishError, push_folder


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder a training script saved, e.g. outputs/demo/ensemble")
    parser.add_argument("--repo-id", required=True, help="namespace/name on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to commit to (created when missing; default: main)")
    parser.add_argument("--commit-message", help="message of the upload commit")
    parser.add_argument("--repo-type", choices=["model", "space"], default="model")
    parser.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded; upload nothing")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        help="upload this file although it looks like a credential or key (repeatable)",
    )
    parser.add_argument("--allow-large", action="store_true", help="accept a file above 5 GB or an upload above 10 GB")
    args = parser.parse_args(argv)
    try:
        result = push_folder(
            args.folder,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            repo_type=args.repo_type,
            dry_run=args.dry_run,
            include=args.include,
            allow_large=args.allow_large,
        )
    except HubPublishError as err:
        sys.exit(f"error: {err}")
    for file in result.files:
        print(f"{file.path_in_repo}\t{_size(file.size)}")
    for name in result.left_out or []:
        print(f"left out: {name}", file=sys.stderr)
    total = _size(sum(f.size for f in result.files))
    if result.dry_run:
        print(f"dry run: {len(result.files)} files ({total}) would be uploaded to {result.repo_id}", file=sys.stderr)
    else:
        print(f"uploaded {len(result.files)} files ({total}) to {result.repo_id}: {result.url}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
