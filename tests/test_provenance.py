from trainattn.report.provenance import provenance_note, recompute_command, runs_provenance


def _run(hardware, date=None, commit=None):
    result = {"versions": {"hardware": hardware}}
    if date is not None:
        result["provenance"] = {"date": date, "commit": commit}
    return result


def test_runs_provenance_counts_hardware_dates_and_commits():
    a = _run("cpu (2 cores)", "2026-11-30T06:00:00+00:00", "abc")
    runs = [a, a, _run("NVIDIA H200", "2026-11-28T01:00:00+00:00", "def"), _run("cpu (2 cores)")]
    info = runs_provenance(runs)
    assert info == {"runs": 3, "hardware": {"NVIDIA H200": 1, "cpu (2 cores)": 2},
                    "first": "2026-11-28T01:00:00+00:00", "last": "2026-11-30T06:00:00+00:00",
                    "commits": ["abc", "def"], "undated": 1}
    note = provenance_note(info, "04_lama_ckl", "cpu")
    assert "3 run(s): 1 on NVIDIA H200, 2 on cpu (2 cores)." in note
    assert "Finished 2026-11-28 to 2026-11-30 (UTC) (2 dated)." in note
    assert "Commit(s) `abc`, `def`." in note
    assert note.endswith(f"`{recompute_command('04_lama_ckl', 'cpu')}`.")
    assert recompute_command("04_lama_ckl", "cpu") == "trainattn book --profile cpu --notebooks 04_lama_ckl --recompute"


def test_provenance_note_without_dates_or_runs():
    info = runs_provenance([{"versions": {}}])
    assert info["hardware"] == {"not recorded": 1} and info["first"] is None
    assert "Finishing dates not recorded" in provenance_note(info, "02_x", "cpu")
    assert provenance_note(runs_provenance([]), "02_x", "cpu") == (
        "**Computed** while this book was built (no run records kept).")
