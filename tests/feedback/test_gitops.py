from pathlib import Path

import pytest
from pydantic import SecretStr

from feedback.gitrepos import git, human_commit, log, make_remote, show
from feedback.manifests_data import SEED
from obsloop.core.manifests import parse_manifests
from obsloop.feedback.gitops import SKIP_CI, Author, Change, GitError, GitOpsRepo
from obsloop.feedback.manifest_edit import apply_edits

PATH = "apps/fraud.yaml"


def set_min_replicas(value: int):
    def edit(root: Path) -> list[str]:
        text = (root / PATH).read_text()
        [manifest], _ = parse_manifests(PATH, text)
        if manifest.min_replicas == value:
            return []
        (root / PATH).write_text(apply_edits(text, manifest, {"autoscaling.minReplicas": value}))
        return [PATH]

    return edit


def change(detection_id="det-1", value=3, edit=None):
    return Change(
        detection_id,
        "ai-production/fraud-detection-model-v2",
        f"obsloop: scale minReplicas 1 -> {value}\n\nDetection: cold starts",
        edit or set_min_replicas(value),
    )


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {PATH: SEED, "README.md": "gitops\n"})


def repo(remote: Path, tmp_path: Path, **kwargs) -> GitOpsRepo:
    return GitOpsRepo(
        str(remote),
        tmp_path / "obsloop-clone",
        author=Author("obsloop-bot", "bot@obsloop.dev"),
        **kwargs,
    )


def test_direct_push_with_structured_message_and_author(remote, tmp_path):
    result = repo(remote, tmp_path, skip_ci=True).commit(change())
    assert (result.status, result.branch, result.attempts) == ("committed", "main", 1)
    assert show(remote, "main", PATH) == SEED.replace("minReplicas: 1", "minReplicas: 3")
    message = git(remote, "log", "-1", "--format=%B", "main")
    assert message.splitlines()[0] == f"obsloop: scale minReplicas 1 -> 3 {SKIP_CI}"
    assert "Detection: cold starts" in message
    assert message.rstrip().endswith("Obsloop-Detection: det-1")
    assert git(remote, "log", "-1", "--format=%an <%ae>|%cn", "main") == (
        "obsloop-bot <bot@obsloop.dev>|obsloop-bot\n"
    )
    assert git(remote, "rev-parse", "main").strip() == result.sha


def test_one_detection_one_commit_and_no_empty_commits(remote, tmp_path):
    first = repo(remote, tmp_path).commit(change())
    again = repo(remote, tmp_path / "other-replica").commit(change())
    assert again.status == "duplicate" and again.sha == first.sha
    nothing = repo(remote, tmp_path).commit(change("det-2", value=3))
    assert nothing.status == "noop"
    assert log(remote) == ["obsloop: scale minReplicas 1 -> 3", "initial manifests"]


def test_remote_moved_meanwhile_fetch_rebase_retry(remote, tmp_path):
    gitops = repo(remote, tmp_path)
    gitops.sync()

    def edit_while_someone_pushes(root: Path) -> list[str]:
        if not (tmp_path / "human").exists():  # first attempt only
            human_commit(remote, tmp_path / "human", "README.md", "edited\n", "docs: readme")
        return set_min_replicas(3)(root)

    result = gitops.commit(change(edit=edit_while_someone_pushes))
    assert result.status == "committed"
    assert log(remote) == ["obsloop: scale minReplicas 1 -> 3", "docs: readme", "initial manifests"]
    assert show(remote, "main", "README.md") == "edited\n"
    assert "minReplicas: 3" in show(remote, "main", PATH)


def test_conflicting_concurrent_edit_reapplies_on_the_new_tip(remote, tmp_path):
    gitops = repo(remote, tmp_path)
    seen = []

    def edit(root: Path) -> list[str]:
        seen.append((root / PATH).read_text().count("minReplicas: 1"))
        if len(seen) == 1:
            human_commit(
                remote,
                tmp_path / "human",
                PATH,
                SEED.replace("minReplicas: 1", "minReplicas: 2"),
                "ops: minReplicas 2",
            )
        return set_min_replicas(4)(root)

    result = gitops.commit(change(value=4, edit=edit))
    assert result.status == "committed" and result.attempts == 2
    assert seen == [1, 0]  # the second attempt read the human's value
    assert log(remote)[:2] == ["obsloop: scale minReplicas 1 -> 4", "ops: minReplicas 2"]
    assert "minReplicas: 4" in show(remote, "main", PATH)


def test_pull_request_mode_pushes_a_branch_only(remote, tmp_path):
    gitops = repo(remote, tmp_path, mode="pull_request")
    result = gitops.commit(change())
    assert result.status == "committed"
    assert result.branch.startswith("obsloop/ai-production-fraud-detection-model-v2-")
    assert log(remote) == ["initial manifests"]
    assert "minReplicas: 3" in show(remote, result.branch, PATH)
    assert gitops.commit(change()).status == "duplicate"


def test_errors_do_not_leak_credentials(tmp_path):
    gitops = GitOpsRepo(
        "http://user:hunter2@127.0.0.1:9/repo.git", tmp_path / "c", token=SecretStr("tok-secret")
    )
    with pytest.raises(GitError) as info:
        gitops.sync()
    assert "hunter2" not in str(info.value) and "tok-secret" not in str(info.value)
    assert "git fetch failed" in str(info.value)
