"""Detection ids (which embed function and model names) reach ``git log --grep`` and commit
trailers: they are matched as fixed, whole trailers and refused when unfit, on a real repo."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedback.gitrepos import log, make_remote
from feedback.manifests_data import SEED
from feedback.test_gitops import PATH, change, repo
from obsloop.feedback.gitops import GitError


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {PATH: SEED, "README.md": "gitops\n"})


def test_an_id_is_found_only_as_a_whole_trailer(remote, tmp_path) -> None:
    gitops = repo(remote, tmp_path)
    assert gitops.commit(change("det-10", value=3)).status == "committed"
    # "det-1" is a prefix of "det-10": a substring search took it for already committed
    assert gitops.commit(change("det-1", value=4)).status == "committed"
    assert gitops.commit(change("det-1", value=5)).status == "duplicate"


def test_regex_metacharacters_match_only_themselves(remote, tmp_path) -> None:
    gitops = repo(remote, tmp_path)
    assert gitops.commit(change("det-a", value=3)).status == "committed"
    for number, pattern in enumerate([".*", "det-.", "[a-z]+", "^", "det-a|x"], 4):
        assert gitops.commit(change(pattern, value=number)).status == "committed", pattern
        assert gitops.commit(change(pattern, value=number + 10)).status == "duplicate", pattern


@pytest.mark.parametrize("bad_id", ["", "--output=OUT", "-n", " det-2", "det-2\nObsloop-Detection: det-3",
                                    "det\x00", "x" * 300])
def test_unfit_ids_are_refused_before_git_runs(remote, tmp_path, bad_id) -> None:
    gitops = repo(remote, tmp_path)
    assert gitops.commit(change("det-3", value=3)).status == "committed"
    before = log(remote)
    with pytest.raises(GitError, match="cannot be used in git"):
        gitops.commit(change(bad_id, value=4))
    assert log(remote) == before
    assert not list(tmp_path.rglob("OUT")) and not list(Path.cwd().glob("OUT"))
    # a forged trailer in an id never marks another detection as done
    assert gitops.commit(change("det-4", value=5)).status == "committed"
