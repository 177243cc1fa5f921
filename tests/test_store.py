"""The run store: identity, read-back, checkpoints, φ fingerprints, locks and provenance."""

import threading

import pytest
import torch
from safetensors.torch import save_file

from trainattn.config import CKLConfig, MetaConfig
from trainattn.core.train_attention import TrainAttention
from trainattn.protocols.store import (
    RECORDS_ONLY_ENV,
    Checkpoint,
    RecordMissingError,
    Run,
    RunMismatchError,
    data_fingerprint,
    latest_checkpoint,
    phi_fingerprint,
    provenance,
    require_records,
    run_identity,
    run_lock,
)
from trainattn.testing import tiny_llama


def test_second_holder_waits_for_the_first_and_sees_its_result(tmp_path):
    folder = tmp_path / "seed-0" / "taalm"
    holding, release = threading.Event(), threading.Event()
    events = []

    def first():
        with run_lock(folder):
            holding.set()
            release.wait(10)
            (folder / "result.json").write_text("{}")
            events.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(10)
    waiter = threading.Thread(target=lambda: _second(folder, events))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "the second holder must block while the first holds the lock"
    release.set()
    thread.join(10)
    waiter.join(10)
    assert events == ["first done", "second saw result: True"]


def _second(folder, events):
    with run_lock(folder):
        events.append(f"second saw result: {(folder / 'result.json').is_file()}")


def test_lock_is_released_on_error_and_names_are_independent(tmp_path):
    with pytest.raises(RuntimeError), run_lock(tmp_path):
        raise RuntimeError("boom")
    with run_lock(tmp_path), run_lock(tmp_path, ".measure.lock"):  # different files: no deadlock
        pass
    with run_lock(tmp_path):  # released after the error above
        pass
    assert (tmp_path / ".lock").is_file() and (tmp_path / ".measure.lock").is_file()


# ---------------------------------------------------------------- identity and read-back


def test_identity_is_json_normalised_and_drops_absent_parts():
    identity = run_identity(CKLConfig(method="finetune"), method="finetune", data="d" * 64, periods=("a", "b"))
    assert identity["periods"] == ["a", "b"] and "phi_sha256" not in identity
    assert identity["config"]["method"] == "finetune" and identity["data_sha256"] == "d" * 64


def test_data_fingerprint_depends_on_order_and_grouping():
    a, b, c = {"uuid": "a"}, {"uuid": "b"}, {"uuid": "c"}
    assert data_fingerprint([a, b], [c]) == data_fingerprint([a, b], [c])
    assert data_fingerprint([a, b], [c]) != data_fingerprint([b, a], [c])
    assert data_fingerprint([a, b], [c]) != data_fingerprint([a], [b, c])


def test_result_reads_back_only_under_the_same_identity(tmp_path):
    run = Run(tmp_path, run_identity(CKLConfig(lr=1e-3), method="finetune"))
    assert run.read_result() is None
    run.write_result({"score": 0.5})
    assert Run(tmp_path, run_identity(CKLConfig(lr=1e-3), method="finetune")).read_result() == {"score": 0.5}
    with pytest.raises(RunMismatchError, match=r"result.json was written by a run with a different config.lr"):
        Run(tmp_path, run_identity(CKLConfig(lr=3e-3), method="finetune")).read_result()


def test_records_only_mode_refuses_to_compute_a_run_without_a_record(tmp_path, monkeypatch):
    run = Run(tmp_path / "seed-0", run_identity(CKLConfig(lr=1e-3), method="finetune"))
    monkeypatch.setenv(RECORDS_ONLY_ENV, "1")
    with pytest.raises(RecordMissingError, match=r"seed-0/row.json: no finished run to read back, and "
                                                  r"TRAINATTN_RECORDS_ONLY is set") as err:
        run.read_result("row.json")
    assert err.value.folder == tmp_path / "seed-0"
    run.write_result({"score": 0.5})
    assert run.read_result() == {"score": 0.5}  # a record reads back as ever
    assert Run(None, {"a": 1}).read_result() is None  # a run that stores nothing has nothing to read
    monkeypatch.setenv(RECORDS_ONLY_ENV, "0")
    assert run.read_result("row.json") is None


def test_require_records_names_the_first_run_without_a_record_in_records_only_mode(tmp_path, monkeypatch):
    done, missing = tmp_path / "finetune", tmp_path / "rho1"
    Run(done, {"method": "finetune"}).write_result({"score": 0.5})
    require_records([done, missing, tmp_path / "taalm"])  # outside records-only mode: nothing to check
    monkeypatch.setenv(RECORDS_ONLY_ENV, "1")
    require_records([done])
    with pytest.raises(RecordMissingError, match=r"rho1/result.json: no finished run to read back") as err:
        require_records(iter([done, missing, tmp_path / "taalm"]))
    assert err.value.folder == missing
    with pytest.raises(RecordMissingError, match=r"finetune/row.json"):
        require_records([done], name="row.json")


def test_ignored_keys_may_differ_on_resume(tmp_path):
    Run(tmp_path, run_identity(MetaConfig(checkpoint_every=4))).write_result({"x": 1})
    again = Run(tmp_path, run_identity(MetaConfig(checkpoint_every=8)), ignore=("checkpoint_every",))
    assert again.read_result() == {"x": 1}
    with pytest.raises(RunMismatchError, match="checkpoint_every"):
        Run(tmp_path, run_identity(MetaConfig(checkpoint_every=8))).read_result()


def test_a_run_without_a_folder_stores_nothing(tmp_path):
    run = Run(None, {"a": 1})
    assert run.write_result({"x": 1}) == {"x": 1} and run.read_result() is None
    assert run.save_checkpoint("step-1", {}) is None and run.load_checkpoint() is None


# ---------------------------------------------------------------- checkpoints


def test_checkpoints_keep_only_the_latest_and_restore_tensors_and_objects(tmp_path):
    run = Run(tmp_path, {"a": 1})
    weight = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    weight.grad = torch.ones_like(weight)
    optimizer.step()
    run.save_checkpoint("epoch-0001", {"epoch": 1}, tensors={"theta": {"w": weight}})
    run.save_checkpoint("epoch-0002", {"epoch": 2}, tensors={"theta": {"w": weight * 2}},
                        objects={"optimizer": optimizer.state_dict()})
    assert latest_checkpoint(tmp_path).name == "epoch-0002"
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["epoch-0002", "latest"]
    checkpoint = run.load_checkpoint()
    assert checkpoint.state == {"epoch": 2}
    torch.testing.assert_close(checkpoint.tensors("theta")["w"], weight.detach() * 2, rtol=0, atol=0)
    restored = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2, 3))], lr=0.1)
    restored.load_state_dict(checkpoint.object("optimizer"))
    torch.testing.assert_close(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(RunMismatchError, match="state.json was written by a run with a different a"):
        Run(tmp_path, {"a": 2}).load_checkpoint()


def test_a_checkpoint_without_its_tensor_files_starts_the_run_afresh_with_a_warning(tmp_path):
    # what a git checkout leaves of a run: state.json kept, *.safetensors ignored
    run = Run(tmp_path, {"a": 1})
    folder = run.save_checkpoint("epoch-0003", {"epoch": 3}, tensors={"theta": {"w": torch.ones(2)}})
    assert run.load_checkpoint().state == {"epoch": 3}
    (folder / "theta.safetensors").unlink()
    with pytest.warns(UserWarning, match=r"epoch-0003 lacks theta.safetensors: the run starts afresh"):
        assert run.load_checkpoint() is None


def test_a_checkpoint_read_for_some_files_needs_only_those(tmp_path):
    # a finished run shipped without its optimizer still gives back its tensors
    run = Run(tmp_path, {"a": 1})
    folder = run.save_checkpoint("step-2", {"step": 2}, tensors={"phi": {"w": torch.ones(2)}},
                                 objects={"phi_optimizer": {"state": {}}})
    (folder / "phi_optimizer.pt").unlink()
    assert run.load_checkpoint(needs=["phi.safetensors"]).state == {"step": 2}
    with pytest.warns(UserWarning, match="lacks phi_optimizer.pt"):
        assert run.load_checkpoint() is None
    with pytest.warns(UserWarning, match="lacks best.safetensors"):
        assert run.load_checkpoint(needs=["best.safetensors"]) is None


def test_reading_a_missing_checkpoint_file_names_the_checkpoint(tmp_path):
    folder = Run(tmp_path, {"a": 1}).save_checkpoint("epoch-0001", {"epoch": 1})
    with pytest.raises(FileNotFoundError, match=r"epoch-0001 has no theta.safetensors .*delete .*checkpoint"):
        Checkpoint(folder, {}).tensors("theta")


# ---------------------------------------------------------------- φ fingerprint


def test_phi_fingerprint_of_a_module_equals_that_of_its_saved_file(tmp_path):
    vocab = 64
    phi = TrainAttention(tiny_llama(vocab, seed=0), num_layers=1, lora_rank=2, seed=3)
    folder = tmp_path / "phi-run" / "checkpoint" / "step-000001"
    folder.mkdir(parents=True)
    save_file({n: t.detach().contiguous() for n, t in phi.trained_tensors().items()},
              str(folder / "phi.safetensors"))
    (tmp_path / "phi-run" / "checkpoint" / "latest").write_text("step-000001")
    assert phi_fingerprint(phi) == phi_fingerprint(tmp_path / "phi-run") == phi_fingerprint(
        folder / "phi.safetensors")
    other = TrainAttention(tiny_llama(vocab, seed=0), num_layers=1, lora_rank=2, seed=4)
    assert phi_fingerprint(other) != phi_fingerprint(phi)
    assert set(phi.trained_tensors()) == {n for n, p in phi.named_parameters() if p.requires_grad}
    assert phi_fingerprint(None) is None
    with pytest.raises(FileNotFoundError, match="no trained φ"):
        phi_fingerprint(tmp_path / "missing")


def test_provenance_names_hardware_date_and_versions():
    record = provenance()
    assert record["hardware"] and record["torch"] == torch.__version__
    assert record["date"].endswith("+00:00") and "commit" in record


def test_a_config_counts_by_content_not_by_paths_or_spelled_out_defaults():
    plain = run_identity(CKLConfig(method="rho1+mixreview", phi_checkpoint="runs/a"))
    spelled = run_identity(CKLConfig(method="rho1+mixreview", phi_checkpoint="elsewhere/b",
                                     method_settings={"rho1": {"keep": 0.4}, "recadam": {"coef": 1.0}}))
    assert plain == spelled  # the defaults, a path, and settings of a method the run does not use
    assert plain["config"]["method_settings"] == {"rho1": {"keep": 0.4},
                                                  "mixreview": {"ratio": 1.0, "decay": 1.0, "pool": "disjoint"}}
    assert run_identity(CKLConfig(method="rho1", method_settings={"rho1": {"keep": 0.6}})) != run_identity(
        CKLConfig(method="rho1"))


def test_a_method_counts_by_its_canonical_name():
    assert run_identity(CKLConfig(method="kadapter")) == run_identity(CKLConfig(method="finetune+kadapter"))


def test_git_commit_names_the_commit_and_marks_changed_tracked_files(tmp_path):
    import shutil
    import subprocess

    from trainattn.protocols.store import git_commit

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    assert git_commit(tmp_path) is None  # not a checkout
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("1")
    subprocess.run(["git", "-C", str(tmp_path), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), *env, "commit", "-qm", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "untracked.txt").write_text("ignored")
    assert git_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path) == f"{head}+dirty"
